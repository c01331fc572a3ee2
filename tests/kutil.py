"""Small builders shared by the core tests (no kernel behaviour lives here)."""

from __future__ import annotations

from ftlab.model import direct, ftrace
from ftlab.model.catalogue import Catalogue
from ftlab.model.flags import FTRACE_FL as R
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.kernel import Kernel
from ftlab.model.ops import ftrace_ops
from ftlab.model.policies import Overlay, compose

NAMES = ["fa", "fb", "fc", "fd", "fe", "dup", "dup", "__ftrace_invalid_address___64"]


def small_kernel(policy: str = "seed-v2") -> Kernel:
    return Kernel(Catalogue.synthetic(NAMES), policy=policy)


def overlay(k: Kernel, **fns: object) -> None:
    """Put each of ``fns`` in the policy slot of its keyword, for this kernel only (a test overlay)."""
    k.policy = compose(k.policy, [Overlay.functions("test", **fns)])  # type: ignore[arg-type]


def spy(k: Kernel, slot: str) -> list[int]:
    """Record the return values of the policy's ``slot`` (e.g. a trampoline.c function) on ``k``."""
    results: list[int] = []
    real = k.policy.slot(slot)

    def wrapper(*a: object) -> int:
        r = real(*a)
        results.append(r)
        return r

    overlay(k, **{slot: wrapper})
    return results


def ip(k: Kernel, name: str, sympos: int = 0) -> int:
    return k.cat.lookup(name, sympos)


def ipmodify_ops(k: Kernel, name: str, *funcs: str, extra: int = 0) -> ftrace_ops:
    """A live-patch-like ops (IPMODIFY|PERMANENT, dynamic) filtered on ``funcs``."""
    ops = ftrace_ops(name, "klp_ftrace_handler", F.IPMODIFY | F.PERMANENT | extra)
    for f in funcs:
        assert ftrace.ftrace_set_filter_ip(k, ops, ip(k, f)) == 0
    return ops


def plain_ops(k: Kernel, name: str, *funcs: str, flags: int = 0) -> ftrace_ops:
    ops = ftrace_ops(name, "function_trace_call", flags)
    for f in funcs:
        assert ftrace.ftrace_set_filter_ip(k, ops, ip(k, f)) == 0
    return ops


class SharingOwner:
    """Stand-in for a DIRECT ops owner that implements ops_func like the seed's BPF 5/5.

    ENABLE sets FTRACE_OPS_FL_SHARE_IPMODIFY (the trampoline would be rebuilt to call regs->ip);
    DISABLE clears it. ``result`` forces a return value (e.g. -EAGAIN for a busy tr->mutex).
    """

    def __init__(self, result: int = 0) -> None:
        self.result = result
        self.calls: list[tuple[str, int, dict]] = []

    def __call__(self, op: ftrace_ops, cmd: int) -> int:
        # record which locks are held when ftrace calls back (the seed: direct_mutex only)
        self.calls.append((op.name, int(cmd), dict(self.kernel.locks)))
        if self.result:
            return self.result
        if cmd == 0:
            op.flags |= F.SHARE_IPMODIFY
        else:
            op.flags &= ~F.SHARE_IPMODIFY
        return 0

    kernel: Kernel


def direct_ops(k: Kernel, name: str, *funcs: str, owner: SharingOwner | None = None,
               flags: int = 0) -> ftrace_ops:
    """A direct_multi ops (no flags yet: register_ftrace_direct_multi adds them)."""
    ops = ftrace_ops(name, None, flags, ops_func=owner)
    if owner is not None:
        owner.kernel = k
    for f in funcs:
        assert ftrace.ftrace_set_filter_ip(k, ops, ip(k, f)) == 0
    return ops


def register_direct(k: Kernel, ops: ftrace_ops, addr: str) -> int:
    return direct.register_ftrace_direct_multi(k, ops, addr)


def flags_of(k: Kernel, name: str, sympos: int = 0) -> int:
    return k.rec(ip(k, name, sympos)).flags


def count_of(k: Kernel, name: str, sympos: int = 0) -> int:
    return k.rec(ip(k, name, sympos)).count


__all__ = ["F", "R", "Kernel", "ftrace", "direct", "ftrace_ops", "small_kernel", "ip", "ipmodify_ops",
           "plain_ops", "direct_ops", "register_direct", "SharingOwner", "flags_of", "count_of"]


def explore_universe(text: str, depth: int = 4):
    """A universe (YAML text) explored to ``depth``: (its model, the result)."""
    from ftlab.explorer.checker import Checker
    from ftlab.explorer.universe import FtraceModel, load_universe_text

    model = FtraceModel(load_universe_text(text, "u.yaml"))
    return model, Checker(model).depth(depth).run()
