"""The kernel functions the oracle can reach from user space, and how.

A scenario that the oracle replays may only *call* these functions: each is reached by one
user-space action in the guest that calls it exactly once and nothing else in the idle guest calls
it. Live patches may only patch these too, because the oracle generates their replacement bodies
and so needs each one's prototype. BPF programs, kprobes and the direct client can target any
traceable function with BTF, but the bundled oracle scenarios use only these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Callable:
    """A function user space reaches: ``how`` is a /proc path to read, ``getsid`` or ``statfs``.

    ``proto`` names the C prototype of the replacement body a live patch gets:
    ``seq_show`` is ``int (struct seq_file *, void *)`` (the body appends its marker line to the
    file's text), ``task_getsid`` is ``int (struct task_struct *)`` and ``statfs`` is
    ``int (struct dentry *, struct kstatfs *)`` (these bodies count and return 0).
    """

    name: str
    how: str
    proto: str


CALLABLE: dict[str, Callable] = {c.name: c for c in (
    Callable("cmdline_proc_show", "/proc/cmdline", "seq_show"),
    Callable("version_proc_show", "/proc/version", "seq_show"),
    Callable("loadavg_proc_show", "/proc/loadavg", "seq_show"),
    Callable("uptime_proc_show", "/proc/uptime", "seq_show"),
    Callable("meminfo_proc_show", "/proc/meminfo", "seq_show"),
    # getsid(getpid()) calls it; getsid(0) does not. An fmod_ret program may attach here
    # (security_*; Debian's 6.1 has no CONFIG_FUNCTION_ERROR_INJECTION).
    Callable("security_task_getsid", "getsid", "task_getsid"),
    # A function of a module (the guest's 9p, catalogue ``oracle-guest``): the agent runs in
    # the host's root mounted over 9p (9p2000.L), so statvfs("/") calls the superblock's statfs.
    Callable("9p:v9fs_statfs", "statfs", "statfs"),
)}

#: The line a replacement body appends to a /proc file: ``ftlab-oracle body=<patch> func=<f>``.
MARKER = "ftlab-oracle body="

#: Trampolines of the direct-call module (``direct modify`` flips between them).
DIRECT_TRAMPS = ("my_tramp1", "my_tramp2")
