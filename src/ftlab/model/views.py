"""Text views in the kernel's own formats: tracefs enabled_functions, touched_functions,
set_ftrace_filter, ops list.

Kernel source: kernel/trace/ftrace.c (t_show with FTRACE_ITER_ENABLED / FTRACE_ITER_TOUCHED,
print_rec, add_trampoline_func, the "#### all functions enabled ####" lines) and
arch/x86/kernel/ftrace.c (arch_ftrace_trampoline_func, static_tramp_func). Addresses are printed
as %pS does: ``symbol+0x0/0x<size>`` for kernel symbols, with the sizes of the policy's kernel
(``k.policy.symbol_sizes``; a BPF image's own size), the raw address for an allocated ftrace
trampoline (kallsyms cannot resolve those, as observed on Debian's 6.1 and 6.12).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .bpf_trampoline import IMAGE_PREFIX, find_image
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
from .policies import SYMBOL_SIZES_6_1

R = RECF
F = OPSF

#: Symbol sizes as kallsyms reports them on Debian's 6.1.0-56-amd64 where observed
#: (real-kernel-oracle.md): the default table of the policies (each policy's own is
#: ``symbol_sizes``); other symbols get a nominal size, marked in SYNTHETIC_SIZES.
SYMBOL_SIZES: Mapping[str, int] = SYMBOL_SIZES_6_1
SYNTHETIC_SIZES: dict[str, int] = {"bpf_trampoline_": 0x1000}
DEFAULT_SIZE = 0x100

_ADDR_RE = re.compile(r"0x[0-9a-f]{16}")


def pS(k: Kernel, addr: Addr | None) -> str:
    """%pS: ``symbol+0x0/0xsize`` for a symbol, the raw address for run-time allocated memory.

    The size is the policy's kernel's (``k.policy.symbol_sizes``), a live BPF image's own
    (im->size: one page before 6.8, the JIT's size from then on), else a nominal one.
    """
    if addr is None or addr == 0:
        return "0x0"
    if isinstance(addr, int):
        return f"0x{addr:016x}"
    name = addr.split("#", 1)[0]  # "#n" tells images of one symbol apart in the model only
    size = k.policy.symbol_sizes.get(name)
    if size is None and name.startswith(IMAGE_PREFIX):
        im = find_image(k, addr)
        size = im.size if im is not None else None
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
    """One enabled_functions / touched_functions entry (t_show with FTRACE_ITER_ENABLED or
    FTRACE_ITER_TOUCHED), without the final newline.

    The head is ``" (%ld)%s%s%s"`` (count, R, I, D) up to 6.2; the version's table adds the ``O``
    slot of CALL_OPS (v6.3: " O" or two spaces) and the ``M`` slot of MODIFIED (v6.4: " M " or
    three spaces), as 6.12's ``" (%ld)%s%s%s%s%s"``.
    """
    out = [k.cat.sym_of_ip(ip)]
    out.append(f" ({ftrace_rec_count(flags, k.ref_max)})" + (" R" if flags & R.REGS else "  ")
               + (" I" if flags & R.IPMODIFY else "  ") + (" D" if flags & R.DIRECT else "  "))
    if k.policy.rec_call_ops:
        out.append(" O" if flags & R.CALL_OPS else "  ")
    if k.policy.rec_touched_modified:
        out.append(" M " if flags & R.MODIFIED else "   ")
    if flags & R.TRAMP_EN:
        ops = ftrace_find_tramp_ops_any(k, ip)
        if ops is None:
            out.append("\ttramp: ERROR!")
        while ops is not None:
            out.append(f"\ttramp: {pS(k, ops.trampoline)} ({pS(k, ops.func)})")
            fn = arch_ftrace_trampoline_func(k, ops, flags)
            if fn:
                out.append(f" ->{pS(k, fn)}")
            ops = ftrace_find_tramp_ops_next(k, ip, ops)
    else:
        fn = arch_ftrace_trampoline_func(k, None, flags)
        if fn:
            out.append(f" ->{pS(k, fn)}")
    if flags & R.DIRECT:
        direct = ftrace_find_rec_direct(k, ip)
        if direct:
            out.append(f"\n\tdirect-->{pS(k, direct)}")
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


def touched_functions(k: Kernel, names: set[str] | None = None) -> str | None:
    """/sys/kernel/tracing/touched_functions (v6.4+; the policy's ``rec_touched_modified``): every
    record ever enabled since boot (FTRACE_FL_TOUCHED), in enabled_functions' format; a record of
    count 0 shows only its ``M`` and, as its ``->``, what the static caller calls now
    (ftrace_stub when no ops is registered). ``names`` as in :func:`enabled_functions`; empty
    once ftrace is dead (t_start). A version without it has no such file: None.
    """
    if not k.policy.rec_touched_modified:
        return None
    if k.ftrace_disabled:
        return ""
    lines = []
    for r in k.touched_records():
        if not r.flags & R.TOUCHED:
            continue
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
        lines.append(f"{op.name}: flags={ops_flag_names(op.flags)} func={pS(k, op.func)} "
                     f"trampoline={pS(k, op.trampoline)} filter={filt}{notr}{ops_func}\n")
    return "".join(lines)


def direct_functions(k: Kernel) -> str:
    """The direct_functions hash: ``name ip -> trampoline`` per entry, in record order."""
    return "".join(f"{k.cat.qualified_name_of_ip(ip)} -> {pS(k, addr)}\n"
                   for ip, addr in sorted(k.direct_functions.items()))


def held_locks(k: Kernel) -> str:
    """Locks held right now and by whom (empty between top-level calls)."""
    return "".join(f"{name} held by {holder}\n" for name, holder in sorted(k.locks.items()))
