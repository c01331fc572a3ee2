"""Text views in the kernel's own formats: tracefs enabled_functions, set_ftrace_filter, ops list.

Kernel source: kernel/trace/ftrace.c (t_show with FTRACE_ITER_ENABLED, print_rec,
add_trampoline_func, the "#### all functions enabled ####" lines) and arch/x86/kernel/ftrace.c
(arch_ftrace_trampoline_func, static_tramp_func). Addresses are printed as %pS does:
``symbol+0x0/0x<size>`` for kernel symbols, the raw address for an allocated ftrace trampoline
(kallsyms cannot resolve those, as observed on Debian's 6.1).
"""

from __future__ import annotations

import re

from .flags import OPSF, RECF, ftrace_rec_count, ops_flag_names
from .ftrace import (
    FTRACE_STUB,
    ftrace_find_rec_direct,
    ftrace_find_tramp_ops_any,
    ftrace_find_tramp_ops_next,
    ftrace_ops_get_func,
)
from .hash import ftrace_hash_empty
from .kernel import Kernel
from .ops import Addr, ftrace_ops

R = RECF
F = OPSF

#: Symbol sizes as kallsyms reports them on Debian's 6.1.0-56-amd64 where observed
#: (real-kernel-oracle.md); other symbols get a nominal size, marked in SYNTHETIC_SIZES.
SYMBOL_SIZES: dict[str, int] = {
    "ftrace_regs_caller": 0x58,
    "call_direct_funcs": 0x30,
    "arch_ftrace_ops_list_func": 0x1D0,
    "klp_ftrace_handler": 0x110,
    "kprobe_ftrace_handler": 0x1B0,
    "function_trace_call": 0x120,
    "ftrace_graph_func": 0x10,
}
SYNTHETIC_SIZES: dict[str, int] = {"bpf_trampoline_": 0x1000}
DEFAULT_SIZE = 0x100

_ADDR_RE = re.compile(r"0x[0-9a-f]{16}")


def pS(addr: Addr | None) -> str:
    """%pS: ``symbol+0x0/0xsize`` for a symbol, the raw address for run-time allocated memory."""
    if addr is None or addr == 0:
        return "0x0"
    if isinstance(addr, int):
        return f"0x{addr:016x}"
    name = addr.split("#", 1)[0]  # "#n" tells images of one symbol apart in the model only
    size = SYMBOL_SIZES.get(name)
    if size is None:
        size = next((v for p, v in SYNTHETIC_SIZES.items() if name.startswith(p)), DEFAULT_SIZE)
    return f"{name}+0x0/0x{size:x}"


def normalize_addresses(text: str) -> str:
    """Replace raw 64-bit addresses by ``ADDR`` so model and kernel output compare line by line."""
    return _ADDR_RE.sub("ADDR", text)


def arch_ftrace_trampoline_func(k: Kernel, ops: ftrace_ops | None, flags: int) -> Addr | None:
    """arch_ftrace_trampoline_func() (x86 ftrace.c): the function a trampoline calls, if knowable."""
    if ops is None or not ops.flags & F.ALLOC_TRAMP:
        # static_tramp_func(): an ops-owned static trampoline -> nothing; no ops -> the call
        # patched into ftrace_caller / ftrace_regs_caller.
        if ops is not None and ops.trampoline:
            return None
        call: Addr | None = k.statics.get("ftrace_call", FTRACE_STUB)
        return call
    return ftrace_ops_get_func(ops)


def print_enabled_record(k: Kernel, ip: int, flags: int) -> str:
    """One enabled_functions entry (t_show with FTRACE_ITER_ENABLED), without the final newline."""
    out = [k.cat.sym_of_ip(ip)]
    out.append(f" ({ftrace_rec_count(flags, k.ref_max)})" + (" R" if flags & R.REGS else "  ")
               + (" I" if flags & R.IPMODIFY else "  ") + (" D" if flags & R.DIRECT else "  "))
    if flags & R.TRAMP_EN:
        ops = ftrace_find_tramp_ops_any(k, ip)
        if ops is None:
            out.append("\ttramp: ERROR!")
        while ops is not None:
            out.append(f"\ttramp: {pS(ops.trampoline)} ({pS(ops.func)})")
            fn = arch_ftrace_trampoline_func(k, ops, flags)
            if fn:
                out.append(f" ->{pS(fn)}")
            ops = ftrace_find_tramp_ops_next(k, ip, ops)
    else:
        fn = arch_ftrace_trampoline_func(k, None, flags)
        if fn:
            out.append(f" ->{pS(fn)}")
    if flags & R.DIRECT:
        direct = ftrace_find_rec_direct(k, ip)
        if direct:
            out.append(f"\n\tdirect-->{pS(direct)}")
    return "".join(out)


def enabled_functions(k: Kernel, names: set[str] | None = None) -> str:
    """/sys/kernel/tracing/enabled_functions; ``names`` limits it to those functions, named as
    the records' heads read (%ps: ``name``, or ``name [module]`` for a module's).

    Once ftrace is dead the file reads empty, as on the real kernel.
    """
    if k.ftrace_disabled:
        return ""
    lines = []
    for r in k.enabled_records():
        if names is not None and k.cat.sym_of_ip(r.ip) not in names:
            continue
        lines.append(print_enabled_record(k, r.ip, r.flags) + "\n")
    return "".join(lines)


def set_ftrace_filter(k: Kernel, ops: ftrace_ops, notrace: bool = False) -> str:
    """set_ftrace_filter / set_ftrace_notrace text of ``ops`` (names in record order)."""
    h = ops.hash.notrace_hash if notrace else ops.hash.filter_hash
    if ftrace_hash_empty(h):
        return "#### no functions disabled ####\n" if notrace else "#### all functions enabled ####\n"
    assert h is not None
    return "".join(k.cat.sym_of_ip(ip) + "\n" for ip in h)


def ops_list(k: Kernel) -> str:
    """The registered ops, head of ftrace_ops_list first, flags in kernel names."""
    lines = []
    for op in k.ftrace_ops_list:
        h = op.hash
        filt = "all" if ftrace_hash_empty(h.filter_hash) else f"{h.filter_hash.count} ip"  # type: ignore[union-attr]
        notr = "" if ftrace_hash_empty(h.notrace_hash) else f" notrace={h.notrace_hash.count}"  # type: ignore[union-attr]
        ops_func = " ops_func" if op.ops_func is not None else ""
        lines.append(f"{op.name}: flags={ops_flag_names(op.flags)} func={pS(op.func)} "
                     f"trampoline={pS(op.trampoline)} filter={filt}{notr}{ops_func}\n")
    return "".join(lines)


def direct_functions(k: Kernel) -> str:
    """The direct_functions hash: ``name ip -> trampoline`` per entry, in record order."""
    return "".join(f"{k.cat.qualified_name_of_ip(ip)} -> {pS(addr)}\n"
                   for ip, addr in sorted(k.direct_functions.items()))


def held_locks(k: Kernel) -> str:
    """Locks held right now and by whom (empty between top-level calls)."""
    return "".join(f"{name} held by {holder}\n" for name, holder in sorted(k.locks.items()))
