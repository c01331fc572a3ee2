"""Builders shared by the client tests: a small kernel, full state keys, invariant-checked steps.

No kernel behaviour lives here. ``Run`` executes client calls one at a time and checks every
invariant of :mod:`ftlab.model.invariants` after each step; a refused call must leave the whole
state (``full_key``: the kernel's key plus every client subsystem's key) unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ftlab.model.catalogue import Catalogue
from ftlab.model.errno import Errno
from ftlab.model.invariants import check_all
from ftlab.model.kernel import Kernel

NAMES = ["fa", "fb", "fc", "fd", "dup", "dup", "security_task_getsid",
         "__ftrace_invalid_address___64"]

EBUSY = -Errno.EBUSY
EAGAIN = -Errno.EAGAIN
EINVAL = -Errno.EINVAL
ENOENT = -Errno.ENOENT
EEXIST = -Errno.EEXIST
ENODEV = -Errno.ENODEV


def init_clients(k: Kernel) -> Kernel:
    """Create every client subsystem's state now (they are created lazily on first use), so
    that comparing keys before and after a call is not disturbed by a state coming into being."""
    from ftlab.model.clients import direct_client, kprobes, livepatch, tracer

    livepatch.klp_state(k)
    kprobes.kprobe_state(k)
    tracer.tracer_state(k)
    direct_client.direct_client_state(k)
    if getattr(k.policy, "HAS_SHARE_IPMODIFY_FLAG", False):
        from ftlab.model.clients import bpf

        bpf.bpf_state(k)
    return k


def small_kernel(policy: str = "seed-v2", arch: Any = "x86_64") -> Kernel:
    return init_clients(Kernel(Catalogue.synthetic(NAMES), policy=policy, arch=arch))


def subsys_key(k: Kernel) -> tuple:
    return tuple((name, s.key()) for name, s in sorted(k.subsys.items()) if hasattr(s, "key"))


def full_key(k: Kernel) -> tuple:
    """The kernel's canonical state plus every client subsystem's."""
    return (k.key(), subsys_key(k))


def key_without_trampolines(k: Kernel) -> tuple:
    """full_key with the allocated-trampoline table left out (static ops keep theirs on refusal)."""
    kk = k.key()
    return (kk[:-1], subsys_key(k))


def assert_invariants(k: Kernel, allow: Iterable[str] = ()) -> None:
    allowed = tuple(allow)
    bad = [v for v in check_all(k) if not (allowed and v.startswith(allowed))]
    assert not bad, "invariants violated:\n" + "\n".join(bad)


#: Static ftrace_ops of the clients (core kernel data: never DYNAMIC).
STATIC_OPS = ("kprobe_ftrace_ops", "kprobe_ipmodify_ops", "global_ops", "tmp_ops")


def assert_refusal_unchanged(k: Kernel, before: tuple, before_tramps: dict, what: str) -> None:
    """A refused call leaves the state as it was, with one kernel-faithful exception.

    ftrace_startup frees the trampoline of a refused ops only when it is DYNAMIC; a static ops
    (kprobe_ipmodify_ops) keeps the trampoline x86 allocated for it (ftrace.c: ftrace_startup's
    rollback), so the allocated-trampoline table may gain an entry owned by a static ops.
    """
    if full_key(k) == before:
        return
    assert (k.key()[:-1], subsys_key(k)) == (before[0][:-1], before[1]), f"refused {what} changed the state"
    gained = {a: o for a, o in k.trampolines.items() if before_tramps.get(a) != o}
    assert gained and all(o in STATIC_OPS for o in gained.values()), \
        f"refused {what} changed the trampolines: {gained}"
    assert all(a in k.trampolines for a in before_tramps), f"refused {what} freed a trampoline"


class Run:
    """Run client steps on ``k``, checking the invariants after each one."""

    def __init__(self, k: Kernel, allow: Iterable[str] = ()) -> None:
        self.k = init_clients(k)
        self.allow = tuple(allow)
        self.log: list[tuple[str, int]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any, expect: int | None = 0,
                 failure_changes_state: bool = False, **kw: Any) -> Any:
        """Run ``fn(k, *args, **kw)``; check its result (``expect=None``: any) and the invariants.

        A refused call (negative result) must leave :func:`full_key` unchanged, unless
        ``failure_changes_state`` says the failure is one that changes state in the kernel too.
        """
        before = full_key(self.k)
        before_tramps = dict(self.k.trampolines)
        ret = fn(self.k, *args, **kw)
        self.log.append((getattr(fn, "__name__", str(fn)), ret))
        if expect is not None:
            assert ret == expect, f"{fn.__name__}{args}: returned {ret}, expected {expect}; log {self.log}"
        if isinstance(ret, int) and ret < 0 and not failure_changes_state:
            assert_refusal_unchanged(self.k, before, before_tramps, f"{fn.__name__}{args} ({ret})")
        assert_invariants(self.k, self.allow)
        return ret


# ---------------------------------------------------------------------------------------------
# The clients of this package as attach/detach pairs, for order matrices
# ---------------------------------------------------------------------------------------------
class Client:
    """One client instance: ``attach(k) -> int``, ``detach(k) -> int`` on the functions ``funcs``."""

    def __init__(self, tag: str, funcs: tuple[str, ...], attach: Callable[[Kernel], int],
                 detach: Callable[[Kernel], int]) -> None:
        self.tag, self.funcs, self.attach, self.detach = tag, funcs, attach, detach

    def __repr__(self) -> str:
        return f"{self.tag}{list(self.funcs)}"


def _tracer_attach(filt: str, notrace: str | None) -> Callable[[Kernel], int]:
    def attach(k: Kernel) -> int:
        from ftlab.model.clients import tracer

        ret = tracer.set_ftrace_filter(k, filt)
        if ret == 0 and notrace is not None:
            ret = tracer.set_ftrace_notrace(k, notrace)
        assert ret == 0
        return tracer.current_tracer(k, "function")
    return attach


def _tracer_detach(k: Kernel) -> int:
    from ftlab.model.clients import tracer

    ret = tracer.current_tracer(k, "nop")
    assert tracer.set_ftrace_filter(k, "") == 0 and tracer.set_ftrace_notrace(k, "") == 0
    return ret


def make_clients(funcs: dict[str, tuple[str, ...]], tracer_filter: str = "fa",
                 tracer_notrace: str | None = None) -> dict[str, Client]:
    """The five clients: L (live patch), Kn / Kp (kprobe without / with post_handler),
    T (function tracer), D (plain direct-call sample), on the given functions."""
    from ftlab.model.clients import direct_client as dc
    from ftlab.model.clients import kprobes as kp
    from ftlab.model.clients import livepatch as lp

    def lp_detach(k: Kernel) -> int:
        ret = lp.livepatch_disable(k, "lp")
        assert lp.livepatch_unload(k, "lp") == 0
        return ret

    def kprobes(tag: str, post: bool) -> Client:
        names = funcs[tag]

        def attach(k: Kernel) -> int:
            for i, f in enumerate(names):
                ret = kp.register_kprobe(k, f, post, label=f"{tag}{i}")
                if ret:
                    for j in range(i):
                        kp.unregister_kprobe(k, f"{tag}{j}")
                    return ret
            return 0

        def detach(k: Kernel) -> int:
            for i in range(len(names)):
                ret = kp.unregister_kprobe(k, f"{tag}{i}")
                if ret:
                    return ret
            return 0
        return Client(tag, names, attach, detach)

    return {
        "L": Client("L", funcs["L"], lambda k: lp.livepatch_enable(k, "lp", list(funcs["L"])), lp_detach),
        "Kn": kprobes("Kn", False),
        "Kp": kprobes("Kp", True),
        "T": Client("T", funcs["T"], _tracer_attach(tracer_filter, tracer_notrace), _tracer_detach),
        "D": Client("D", funcs["D"], lambda k: dc.direct_client_load(k, "dm", list(funcs["D"])),
                    lambda k: dc.direct_client_unload(k, "dm")),
    }


def expected_attach(new: Client, attached: Iterable[Client], policy: str = "seed-v2") -> int:
    """What attaching ``new`` returns, given the clients already attached.

    IPMODIFY users (L, Kp) exclude each other (-EBUSY); the plain direct sample gets -EAGAIN on a
    function an IPMODIFY user owns under seed-v2 (combination #4), -EBUSY under 5.18 (its ops
    carries IPMODIFY) and 6.1 (no ops_func for SELF), and it makes a later IPMODIFY user fail
    with -EBUSY in every version (no ops_func / record bit). Kn and T conflict with nobody.
    """
    ipmod = ("L", "Kp")
    for old in attached:
        if not set(new.funcs) & set(old.funcs):
            continue
        if new.tag in ipmod and old.tag in ipmod:
            return EBUSY
        if new.tag == "D" and old.tag in ipmod:
            return EAGAIN if policy == "seed-v2" else EBUSY
        if new.tag in ipmod and old.tag == "D":
            return EBUSY
    return 0


__all__ = ["init_clients", "Client", "make_clients", "expected_attach","NAMES", "small_kernel", "full_key", "key_without_trampolines", "subsys_key",
           "assert_invariants", "Run", "EBUSY", "EAGAIN", "EINVAL", "ENOENT", "EEXIST", "ENODEV"]


# ---------------------------------------------------------------------------------------------
# Layouts and the pairwise order runner
# ---------------------------------------------------------------------------------------------
Layout = tuple[dict[str, tuple[str, ...]], str, "str | None"]

#: Every client on the same function.
SAME: Layout = ({"L": ("fa",), "Kn": ("fa",), "Kp": ("fa",), "T": ("fa",), "D": ("fa",)}, "fa", None)
#: Overlapping sets: the tracer by glob (f* less fd), the others on neighbouring functions.
GLOB: Layout = ({"L": ("fb", "fc"), "Kn": ("fa",), "Kp": ("fc",), "T": ("fa", "fb", "fc"), "D": ("fa", "fb")},
        "f*", "fd")
LAYOUTS: dict[str, Layout] = {"same": SAME, "glob": GLOB}
TAGS = ("L", "Kn", "Kp", "T", "D")


def assert_quiet(k: Kernel) -> None:
    """Nothing hooked any more: no listed ops, no enabled record, no direct entry, no lock."""
    assert k.ftrace_ops_list == []
    assert list(k.enabled_records()) == []
    assert k.direct_functions == {}
    assert k.locks == {}
    assert all(not (f & ~(1 << 25)) for f in k.recs.values()), k.recs


def run_orders(layout: str, attach_order: Iterable[str], detach_order: Iterable[str] | None = None,
               policy: str = "seed-v2") -> Run:
    """Attach the clients in ``attach_order`` (each result as :func:`expected_attach` says),
    then detach the attached ones in ``detach_order`` (default: reverse), checking the
    invariants after every step and that the kernel ends quiet."""
    funcs, filt, notrace = LAYOUTS[layout]
    clients = make_clients(funcs, filt, notrace)
    run = Run(small_kernel(policy))
    attached: list[Client] = []
    for tag in attach_order:
        c = clients[tag]
        exp = expected_attach(c, attached, policy)
        run(c.attach, expect=exp)
        if exp == 0:
            attached.append(c)
    order = list(detach_order) if detach_order is not None else [c.tag for c in reversed(attached)]
    for tag in order:
        c = clients[tag]
        if c in attached:
            run(c.detach)
    assert_quiet(run.k)
    return run


__all__ += ["SAME", "GLOB", "LAYOUTS", "TAGS", "assert_quiet", "run_orders"]
