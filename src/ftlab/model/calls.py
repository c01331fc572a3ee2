"""Call semantics: what runs, in order, when a hooked kernel function is called (x86_64).

Kernel source: arch/x86/kernel/ftrace_64.S (ftrace_caller, ftrace_regs_caller and the return
through regs->ip / orig_ax), kernel/trace/ftrace.c (__ftrace_ops_list_func, ftrace_ops_test),
arch/x86/kernel/ftrace.c (per-ops trampolines), arch/x86/net/bpf_jit_comp.c
(arch_prepare_bpf_trampoline). See the facts sheet §7.

Clients plug their behaviour in through two registries, so that this module never imports a
client:

* :func:`register_callback` -- what an ``ftrace_ops->func`` does when called
  (``klp_ftrace_handler`` sets regs->ip, ``call_direct_funcs`` sets orig_ax, ...);
* :func:`register_code` -- what runs at a code address that is not an ftrace entry point
  (a BPF trampoline image, a live patch's new function, a direct-call sample trampoline).

Events are plain tuples ``(kind, detail)`` collected in :class:`CallContext.trace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .kernel import Kernel
from .ops import Addr, ftrace_ops


@dataclass
class Regs:
    """The parts of struct pt_regs the call path uses: the resume address and orig_ax."""

    ip: Addr
    orig_ax: Addr = 0


@dataclass
class CallContext:
    """One call of a traced function: its record ip and name, the regs, and the event trace."""

    ip: int
    name: str
    regs: Regs
    trace: list[tuple[str, str]] = field(default_factory=list)
    retval: int | None = None

    def emit(self, kind: str, detail: str = "") -> None:
        self.trace.append((kind, detail))


#: ftrace_ops->func name -> behaviour(k, ops, ctx)
Callback = Callable[[Kernel, ftrace_ops, CallContext], None]
#: code address predicate/name -> behaviour(k, ctx, addr) returning the function's return value
Code = Callable[[Kernel, CallContext, Addr], int]

CALLBACKS: dict[str, Callback] = {}
CODE: dict[str, Code] = {}
CODE_PREFIXES: list[tuple[str, Code]] = []


def register_callback(func_name: str, fn: Callback) -> None:
    """Declare what the ftrace_ops callback ``func_name`` does when ftrace calls it."""
    CALLBACKS[func_name] = fn


def register_code(addr: str, fn: Code, prefix: bool = False) -> None:
    """Declare what runs at code address ``addr`` (or every address starting with it)."""
    if prefix:
        CODE_PREFIXES.append((addr, fn))
    else:
        CODE[addr] = fn


def lookup_code(addr: Addr) -> Code | None:
    """The behaviour registered for code address ``addr``, if any."""
    if isinstance(addr, str):
        fn = CODE.get(addr)
        if fn is not None:
            return fn
        for p, fn in CODE_PREFIXES:
            if addr.startswith(p):
                return fn
    return None
