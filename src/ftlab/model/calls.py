"""Call semantics: what runs, in order, when a hooked kernel function is called (x86_64).

Kernel source: arch/x86/kernel/ftrace_64.S (ftrace_caller, ftrace_regs_caller and the return
through regs->ip / orig_ax), kernel/trace/ftrace.c (__ftrace_ops_list_func, ftrace_ops_test,
call_direct_funcs, ftrace_ops_assist_func), arch/x86/kernel/ftrace.c (per-ops trampolines),
arch/x86/net/bpf_jit_comp.c (arch_prepare_bpf_trampoline). See the facts sheet §7.

Clients plug their behaviour in through the kernel's call table (``k.calls``, a
:class:`~ftlab.model.calltable.CallTable` each client adds its entries to when it first sets up
its state), so that this module never imports a client:

* callbacks -- what an ``ftrace_ops->func`` does when called (``klp_ftrace_handler`` sets
  regs->ip, ...); the core's own (``call_direct_funcs`` sets orig_ax) are in :data:`CORE_CALLS`;
* code -- what runs at a code address that is not an ftrace entry point (a BPF trampoline
  image, a live patch's new function, a direct-call sample trampoline).

Events are plain tuples ``(kind, detail)`` collected in :class:`CallContext.trace`.

Theory of operation (:func:`call`). The call site of the function (``ftrace_get_addr_curr``)
decides the first step, in the kernel's priority order:

1. ``nop`` -- the body runs alone.
2. A direct trampoline (FTRACE_FL_DIRECT_EN; the address comes from direct_functions) -- its
   code runs with return address func+5, i.e. the original body.
3. An ops' own trampoline (FTRACE_FL_TRAMP_EN with an allocated trampoline; the ops is found by
   ftrace_find_tramp_ops_curr) -- a private copy of ftrace_caller / ftrace_regs_caller that
   calls ``ftrace_ops_get_func(ops)`` for that one ops, with its direct-call test NOPed out.
4. ``ftrace_caller`` / ``ftrace_regs_caller`` -- they call what is patched at ``ftrace_call``
   (``k.statics["ftrace_call"]``): ``ftrace_stub`` (nothing), ``arch_ftrace_ops_list_func``
   (:func:`__ftrace_ops_list_func`), or the func of the single registered ops.

Then the return path (ftrace_64.S): every caller copies regs->ip (which an IPMODIFY callback
may have changed, e.g. to a live patch's new_func) into its return slot. Only
``ftrace_regs_caller`` tests orig_ax: non-zero means "jump to that direct trampoline with
regs->ip as its return address"; otherwise execution resumes at regs->ip.

Code addresses and bodies. A function's original body (func+5, the code after the fentry call)
has the address ``<name>``, the function's own name, and returns ``orig_ret`` (0 unless the
caller of :func:`call` says otherwise). Any other address is looked up in the code registry.
Registered code is called as ``fn(k, ctx, addr)`` and returns the value that finally reaches
the caller of the traced function. ``ctx.ret_addr`` holds the return address the code was
entered with: a *body* simply returns its value; a *trampoline* that returns into the traced
function (a sample direct trampoline, a fentry-only BPF trampoline) must continue there with
``return run_body(k, ctx, ctx.ret_addr)``; a trampoline that skips the frame (a BPF trampoline
with fexit/fmod_ret) returns its own value.

A kernel WARN during a call is an event (in the trace and in ``k.events``), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import KernelOops
from .calltable import Callback, CallTable, Code
from .flags import OPSF, RECF
from .ftrace import (
    FTRACE_ADDR,
    FTRACE_OPS_ASSIST_FUNC,
    FTRACE_OPS_LIST_FUNC,
    FTRACE_REGS_ADDR,
    FTRACE_STUB,
    FTRACE_WARN_ON,
    ftrace_find_rec_direct,
    ftrace_find_tramp_ops_curr,
    ftrace_get_addr_curr,
    ftrace_ops_get_func,
    ftrace_ops_test,
)
from .kernel import Event, Kernel
from .ops import Addr, ftrace_ops

R = RECF  # plain ints: hot paths
F = OPSF  # plain ints: hot paths

#: What the call site holds when the record is not enabled (see ftrace_get_addr_curr).
NOP = "nop"


@dataclass
class Regs:
    """The parts of struct pt_regs the call path uses: the resume address and orig_ax."""

    ip: Addr
    orig_ax: Addr = 0


@dataclass
class CallContext:
    """One call of a traced function: its record ip and name, the regs, and the event trace.

    ``has_regs``: the callbacks got a full pt_regs (entered through ftrace_regs_caller or a
    copy of it), which ftrace_ops_test requires for SAVE_REGS ops. ``ret_addr``: the return
    address on the stack of the code running now (a trampoline's [rbp+8]). ``orig_ret``: what
    the original body returns. ``body``: the body that ran (None if none did). ``programs``:
    the BPF programs that fired, in order.
    """

    ip: int
    name: str
    regs: Regs
    trace: list[tuple[str, str]] = field(default_factory=list)
    retval: int | None = None
    has_regs: bool = False
    ret_addr: Addr = 0
    orig_ret: int = 0
    body: Addr | None = None
    programs: list[str] = field(default_factory=list)

    def emit(self, kind: str, detail: str = "") -> None:
        self.trace.append((kind, detail))


def lookup_code(k: Kernel, addr: Addr) -> Code | None:
    """The behaviour ``k``'s call table has for code address ``addr``, if any."""
    return k.calls.code_at(addr)


def addr_str(addr: Addr | None) -> str:
    """A code address for traces: the symbol, or the raw allocated address in hex."""
    if addr is None:
        return "NULL"
    if isinstance(addr, int):
        return f"0x{addr:016x}" if addr else "0"
    return addr


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------
class CallTrace:
    """What one call of a traced function did.

    ``events``: ``(kind, detail)`` in order. Kinds: ``call``, ``site`` (what the call site
    calls), ``ftrace_call`` (what ftrace_caller / ftrace_regs_caller call), ``callback``,
    ``regs.ip``, ``orig_ax``, ``warn``, ``return`` (how the ftrace caller leaves), ``tramp``
    (a BPF image starts), ``bpf_prog``, ``orig_call``, ``body``, ``unmodelled`` (code the model
    has no behaviour for), ``ret``. Also: ``body`` (which body ran, None if none), ``programs``
    (BPF programs fired, in order), ``retval``, ``warnings`` (kernel WARN events of this call).
    """

    __slots__ = ("name", "ip", "events", "body", "programs", "retval", "warnings")

    def __init__(self, ctx: CallContext, warnings: list[Event]) -> None:
        self.name = ctx.name
        self.ip = ctx.ip
        self.events: list[tuple[str, str]] = list(ctx.trace)
        self.body: Addr | None = ctx.body
        self.programs: list[str] = list(ctx.programs)
        self.retval: int = ctx.retval if ctx.retval is not None else 0
        self.warnings: list[Event] = warnings

    def kinds(self) -> list[str]:
        """The event kinds, in order."""
        return [kind for kind, _ in self.events]

    def details(self, kind: str) -> list[str]:
        """The details of every event of ``kind``, in order."""
        return [d for kd, d in self.events if kd == kind]

    def __str__(self) -> str:
        return "\n".join(f"{kind}: {detail}" if detail else kind for kind, detail in self.events)

    def __repr__(self) -> str:
        return f"<CallTrace {self.name} body={self.body} retval={self.retval} programs={self.programs}>"


# ---------------------------------------------------------------------------------------------
# Running code
# ---------------------------------------------------------------------------------------------
def run_body(k: Kernel, ctx: CallContext, addr: Addr) -> int:
    """Execute the function body at ``addr``: the original (``<name>``) or registered code."""
    if addr == ctx.name:
        ctx.body = addr
        ctx.emit("body", f"{addr} (original) returns {ctx.orig_ret}")
        return ctx.orig_ret
    fn = lookup_code(k, addr)
    ctx.body = addr
    if fn is None:
        ctx.emit("unmodelled", f"no code registered at {addr_str(addr)}; returns 0")
        return 0
    ret = fn(k, ctx, addr)
    ctx.emit("body", f"{addr_str(addr)} returns {ret}")
    return ret


def run_code(k: Kernel, ctx: CallContext, addr: Addr, ret_addr: Addr) -> int:
    """Jump to the (trampoline) code at ``addr`` with ``ret_addr`` as its return address.

    Unknown code is treated as a transparent trampoline: it returns into ``ret_addr``.
    """
    ctx.ret_addr = ret_addr
    fn = lookup_code(k, addr)
    if fn is None:
        ctx.emit("unmodelled", f"no code registered at {addr_str(addr)}; returns to {addr_str(ret_addr)}")
        return run_body(k, ctx, ret_addr)
    return fn(k, ctx, addr)


def call_ops_func(k: Kernel, ops: ftrace_ops, func: Addr | None, ctx: CallContext) -> None:
    """op->func(ip, parent_ip, op, fregs), all policies; ftrace_ops_assist_func (ftrace.c) wraps ops->func."""
    if func == FTRACE_OPS_ASSIST_FUNC:
        # ftrace_ops_assist_func() (ftrace.c): recursion / RCU checks, then op->func.
        ctx.emit("callback", f"{ops.name}: {FTRACE_OPS_ASSIST_FUNC}")
        func = ops.func
    if func is None:
        return
    ip_before = ctx.regs.ip
    ctx.emit("callback", f"{ops.name}: {addr_str(func)}")
    if func == FTRACE_STUB:
        return
    fn = CORE_CALLS.callback(func) or k.calls.callback(func)
    if fn is None:
        ctx.emit("unmodelled", f"callback {addr_str(func)} has no behaviour registered")
        return
    fn(k, ops, ctx)
    if ctx.regs.ip != ip_before:
        ctx.emit("regs.ip", f"{addr_str(ip_before)} -> {addr_str(ctx.regs.ip)} (by {ops.name})")


def __ftrace_ops_list_func(k: Kernel, ctx: CallContext) -> None:
    """__ftrace_ops_list_func() (ftrace.c), all policies: call every listed ops that traces ip.

    Head of ftrace_ops_list first; STUB ops are skipped; an ops is called when ftrace_ops_test
    passes (SAVE_REGS ops need full regs); an ops that passes with a NULL func trips
    FTRACE_WARN_ON (ftrace is killed) and ends the walk. RCU-watching is always true here.
    """
    for op in list(k.ftrace_ops_list):
        if op.flags & F.STUB:
            continue
        if not ftrace_ops_test(k, op, ctx.ip, ctx.has_regs):
            continue
        if FTRACE_WARN_ON(k, op.func is None, "__ftrace_ops_list_func", f"op={op.name} has a NULL func"):
            ctx.emit("warn", f"__ftrace_ops_list_func: op={op.name} has a NULL func; ftrace killed")
            return
        call_ops_func(k, op, op.func, ctx)


def call_direct_funcs(k: Kernel, ops: ftrace_ops, ctx: CallContext) -> None:
    """call_direct_funcs() (ftrace.c): the func of every direct ops, as the kernel version has it
    (``k.policy.call_direct_funcs``: the trampoline of the ip, or the ops' direct_call)."""
    k.policy.call_direct_funcs(k, ops, ctx)


def arch_ftrace_set_direct_caller(k: Kernel, ctx: CallContext, addr: Addr) -> None:
    """arch_ftrace_set_direct_caller() (x86 asm/ftrace.h): regs->orig_ax = addr; without full regs
    that is a NULL pointer dereference (unreachable: direct ops carry SAVE_REGS)."""
    if not ctx.has_regs:
        k.log("BUG", "call_direct_funcs", "kernel NULL pointer dereference (regs is NULL)")
        raise KernelOops("call_direct_funcs called without pt_regs")
    ctx.regs.orig_ax = addr
    ctx.emit("orig_ax", addr_str(addr))


#: The callbacks of the ftrace core itself.
CORE_CALLS = CallTable(callbacks={"call_direct_funcs": call_direct_funcs})


def ftrace_caller(k: Kernel, ctx: CallContext, regs_caller: bool) -> int:
    """ftrace_caller / ftrace_regs_caller (ftrace_64.S), all policies: global callback, then return.

    Calls what is patched at ftrace_call / ftrace_regs_call; then resumes at regs->ip, or, from
    ftrace_regs_caller with a non-zero orig_ax, jumps to that direct trampoline with regs->ip as
    its return address.
    """
    ctx.has_regs = regs_caller
    ctx.regs.orig_ax = 0
    fn = k.statics.get("ftrace_call", FTRACE_STUB)
    ctx.emit("ftrace_call", addr_str(fn))
    if fn == FTRACE_OPS_LIST_FUNC:
        __ftrace_ops_list_func(k, ctx)
    elif fn != FTRACE_STUB:
        # update_ftrace_function(): a single ops is called directly, with function_trace_op.
        lst = k.ftrace_ops_list
        op = lst[0] if len(lst) == 1 else None
        if op is None or ftrace_ops_get_func(op) != fn:
            ctx.emit("unmodelled", f"ftrace_call {addr_str(fn)} does not match a single ops")
        else:
            call_ops_func(k, op, fn, ctx)
    if regs_caller and ctx.regs.orig_ax:
        ctx.emit("return", f"to orig_ax {addr_str(ctx.regs.orig_ax)}, return address "
                           f"{addr_str(ctx.regs.ip)}")
        return run_code(k, ctx, ctx.regs.orig_ax, ctx.regs.ip)
    ctx.emit("return", f"resume at regs->ip {addr_str(ctx.regs.ip)}")
    return run_body(k, ctx, ctx.regs.ip)


def ops_trampoline(k: Kernel, ctx: CallContext, ops: ftrace_ops) -> int:
    """An ops' allocated trampoline (x86 ftrace.c: create_trampoline), all policies.

    A copy of ftrace_regs_caller (SAVE_REGS ops) or ftrace_caller that calls
    ftrace_ops_get_func(ops) for this ops only; the orig_ax test is NOPed out, so it always
    resumes at regs->ip.
    """
    ctx.has_regs = bool(ops.flags & F.SAVE_REGS)
    ctx.regs.orig_ax = 0
    call_ops_func(k, ops, ftrace_ops_get_func(ops), ctx)
    ctx.emit("return", f"resume at regs->ip {addr_str(ctx.regs.ip)}")
    return run_body(k, ctx, ctx.regs.ip)


def call(k: Kernel, name: str, sympos: int = 0, *, orig_ret: int = 0) -> CallTrace:
    """A call of kernel function ``name`` on x86_64 (fentry call site, ftrace_64.S), all policies: trace it.

    ``sympos`` picks a duplicated name (1-based); ``orig_ret`` is what the original body
    returns. Unknown names raise :class:`~ftlab.errors.InputError`.
    """
    ip = k.cat.lookup(name, sympos)
    i = k.rec_index(ip)
    first_event = len(k.events)
    # regs->ip is the return address of the fentry call, func+5: the original body.
    ctx = CallContext(ip=ip, name=name, regs=Regs(ip=name), orig_ret=orig_ret)
    ctx.emit("call", name)
    flags = k.get_flags(i)
    target = ftrace_get_addr_curr(k, i)
    if target == NOP:
        ctx.emit("site", NOP)
        ret = run_body(k, ctx, name)
    elif target == FTRACE_REGS_ADDR or target == FTRACE_ADDR:
        ctx.emit("site", f"call {target}")
        ret = ftrace_caller(k, ctx, target == FTRACE_REGS_ADDR)
    elif flags & R.DIRECT_EN and target == ftrace_find_rec_direct(k, ip):
        ctx.emit("site", f"call {addr_str(target)} (direct)")
        ret = run_code(k, ctx, target, name)
    elif flags & R.TRAMP_EN:
        ops = ftrace_find_tramp_ops_curr(k, ip)
        ctx.emit("site", f"call {addr_str(target)} (trampoline of {ops.name if ops else '?'})")
        if ops is None or ops.trampoline != target:
            ctx.emit("unmodelled", f"no ops owns trampoline {addr_str(target)}")
            ret = run_code(k, ctx, target, name)
        else:
            ret = ops_trampoline(k, ctx, ops)
    else:
        ctx.emit("site", f"call {addr_str(target)}")
        ret = run_code(k, ctx, target, name)
    ctx.retval = ret
    ctx.emit("ret", str(ret))
    warnings = [e for e in k.events[first_event:] if e.kind == "WARN"]
    return CallTrace(ctx, warnings)


def call_pure(k: Kernel, name: str, sympos: int = 0, *, orig_ret: int = 0) -> CallTrace:
    """:func:`call`, then undo what a call can change in ``k`` (its event log and, after an
    FTRACE_WARN_ON, the kill switch), so that checking a state does not alter it."""
    saved = (len(k.events), set(k._warned_once), k.ftrace_disabled, k.ftrace_enabled,
             k.ftrace_trace_function)
    try:
        return call(k, name, sympos, orig_ret=orig_ret)
    finally:
        n, warned, k.ftrace_disabled, k.ftrace_enabled, k.ftrace_trace_function = saved
        del k.events[n:]
        k._warned_once = warned


__all__ = ["Regs", "CallContext", "CallTrace", "Callback", "Code", "CallTable", "CORE_CALLS", "lookup_code",
           "run_body", "run_code", "call", "call_pure",
           "call_direct_funcs", "ftrace_caller", "ops_trampoline", "call_ops_func", "addr_str", "NOP"]
