"""Builders shared by the BPF and call-path tests (no kernel behaviour lives here).

The stand-in live patch is a bare IPMODIFY ftrace_ops (what klp_patch_func registers, minus the
livepatch bookkeeping): its callback sets regs->ip to ``standin_new_<name>``, a replacement
body that returns STANDIN_RET.
"""

from __future__ import annotations

from ftlab.model import calls, ftrace
from ftlab.model.calltable import CallTable, install
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import bpf
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.kernel import Kernel
from ftlab.model.ops import ftrace_ops

NAMES = ["fa", "fb", "security_task_getsid", "cmdline_proc_show", "dup", "dup", "migrate_disable"]
STANDIN_HANDLER = "standin_klp_handler"
STANDIN_PREFIX = "standin_new_"
STANDIN_RET = 7


def _standin_handler(k: Kernel, ops: ftrace_ops, ctx: calls.CallContext) -> None:
    ctx.regs.ip = STANDIN_PREFIX + ctx.name


def _standin_body(k: Kernel, ctx: calls.CallContext, addr: object) -> int:
    return STANDIN_RET


#: The stand-in's entries in a kernel's call table (installed by :func:`standin_live_patch`).
STANDIN_CALLS = CallTable(callbacks={STANDIN_HANDLER: _standin_handler}, prefixes=((STANDIN_PREFIX, _standin_body),))


def small_kernel() -> Kernel:
    return Kernel(Catalogue.synthetic(NAMES), policy="seed-v2")


def standin_live_patch(k: Kernel, name: str, ops_name: str = "standin_klp") -> tuple[ftrace_ops, int]:
    """Register a live-patch-like ops (IPMODIFY|PERMANENT, dynamic) on ``name``; (ops, result)."""
    install(k, STANDIN_CALLS)
    ops = ftrace_ops(ops_name, STANDIN_HANDLER, F.IPMODIFY | F.PERMANENT)
    assert ftrace.ftrace_set_filter_ip(k, ops, k.cat.lookup(name)) == 0
    return ops, ftrace.register_ftrace_function(k, ops)


def prog(name: str, kind: str, target: str = "security_task_getsid", **kw: object) -> bpf.BpfProgram:
    return bpf.BpfProgram(name, kind, target, **kw)  # type: ignore[arg-type]


def tr_of(k: Kernel, name: str) -> bpf.bpf_trampoline:
    tr = bpf.bpf_trampoline_of(k, name)
    assert tr is not None
    return tr


def state(k: Kernel) -> tuple:
    """Kernel-side and BPF-side canonical state together."""
    return (k.key(), bpf.bpf_key(k))
