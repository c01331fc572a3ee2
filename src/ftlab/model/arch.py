"""Architecture profiles: what Linux 6.1 supports per architecture (facts §11).

Kernel source: arch/*/Kconfig (HAVE_DYNAMIC_FTRACE_WITH_REGS / _ARGS / _DIRECT_CALLS,
HAVE_LIVEPATCH, HAVE_KPROBES_ON_FTRACE), kernel/trace/Kconfig, the BPF JITs
(arch_prepare_bpf_trampoline), arch/x86/kernel/ftrace.c (per-ops trampolines, x86_64 only).
A profile is a frozen value held by the kernel; the model consults it where the kernel's
behaviour depends on the configuration, and an unsupported action fails with the errno the
kernel gives there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class ArchProfile:
    """One architecture's ftrace-related features in Linux 6.1."""

    name: str
    with_regs: bool            # DYNAMIC_FTRACE_WITH_REGS
    with_args: bool            # DYNAMIC_FTRACE_WITH_ARGS (live patch fops then needs no SAVE_REGS)
    direct_calls: bool         # DYNAMIC_FTRACE_WITH_DIRECT_CALLS (else the direct API is -ENODEV)
    per_ops_trampolines: bool  # arch_ftrace_update_trampoline allocates private trampolines
    bpf_trampoline: bool       # BPF trampolines on kernel functions (else -ENOTSUPP)
    livepatch: bool            # HAVE_LIVEPATCH
    kprobes_on_ftrace: bool    # KPROBES_ON_FTRACE (else a kprobe uses a breakpoint, not ftrace)
    mcount_insn_size: int      # MCOUNT_INSN_SIZE

    def __deepcopy__(self, memo: dict[int, Any]) -> ArchProfile:
        return self


ARCHES: dict[str, ArchProfile] = {
    "x86_64": ArchProfile("x86_64", True, True, True, True, True, True, True, 5),
    "arm64": ArchProfile("arm64", True, False, False, False, False, False, False, 4),
    "ppc64le": ArchProfile("ppc64le", True, True, False, False, False, True, True, 4),
    "s390x": ArchProfile("s390x", True, True, True, False, False, True, True, 6),
}


def get_arch(name: str | ArchProfile) -> ArchProfile:
    """The profile called ``name``; :class:`InputError` for an unknown one."""
    if isinstance(name, ArchProfile):
        return name
    try:
        return ARCHES[name]
    except KeyError:
        raise InputError(f"unknown arch {name!r} (known: {', '.join(ARCHES)})") from None
