"""Kprobes on ftrace sites as an ftrace client.

Kernel source: kernel/kprobes.c (register_kprobe, register_aggr_kprobe, add_new_kprobe,
__disable_kprobe, __unregister_kprobe_top/_bottom, arm_kprobe_ftrace, __arm_kprobe_ftrace,
disarm_kprobe_ftrace, __disarm_kprobe_ftrace) and arch/x86/kernel/kprobes/ftrace.c
(kprobe_ftrace_handler), Linux 6.1. The same code under every ftrace policy.

Theory of operation
-------------------
A kprobe on a function's ftrace call site (KPROBE_FLAG_FTRACE) is armed by adding the address to
one of two static ops and registering that ops for its first probe:

* ``kprobe_ftrace_ops`` (SAVE_REGS) for a probe without post_handler,
* ``kprobe_ipmodify_ops`` (SAVE_REGS|IPMODIFY) for a probe with one (the handler emulates a
  single step by moving regs->ip, which only an IPMODIFY ops may do).

Both are static kernel data, so never DYNAMIC. Counters kprobe_ftrace_enabled /
kprobe_ipmodify_enabled count armed probes; the last disarm unregisters the ops. Growing the
filter of an ops that is already registered goes through ftrace_hash_ipmodify_update only: the
policy's prepare step (asking a DIRECT ops to share) is not run on that path (facts §2.7, §4.5),
and the model keeps it so.

Several probes at one address share an *aggregator* probe (register_aggr_kprobe); which ops the
address is armed with is decided by the aggregator's post_handler at arm and disarm time. Adding
a probe with a post_handler to an address already armed without one gives the aggregator a
post_handler but does not re-arm it, so the later disarm picks kprobe_ipmodify_ops while the
address sits in kprobe_ftrace_ops: the kernel then WARNs ("Failed to disarm kprobe-ftrace") and
the probe stays armed. The model does exactly this; tests pin it.

The model's probes have a pre_handler that returns 0 and, if asked, a post_handler; the handlers
emit ("kprobe_pre", label) and ("kprobe_post", label). A probe is named by its ``label``
(default: the function name). Addresses: the function's record ip, where the fentry call is
on x86_64 (symbol+0, or symbol+4 after an endbr64 under 6.12's IBT). A function missing from
the catalogue raises InputError: the model cannot tell a non-traceable function (the kernel
would use a breakpoint) from a missing one (-ENOENT).
On an architecture without KPROBES_ON_FTRACE a probe would use a breakpoint, which is not
modelled: registration returns -EOPNOTSUPP there (model convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import InputError
from ..calls import CallContext
from ..calltable import CallTable, install
from ..copying import fast_deepcopy
from ..errno import Errno
from ..flags import OPSF
from ..ftrace import ftrace_set_filter_ip, register_ftrace_function, unregister_ftrace_function
from ..kernel import Kernel
from ..locks import lockdep_assert_held, mutex_lock, mutex_unlock
from ..naming import Rename, spell
from ..ops import ftrace_ops
from ..refusals import kept

F = OPSF  # plain ints: hot paths

KPROBE_FTRACE_HANDLER = "kprobe_ftrace_handler"


@dataclass(eq=False)
class kprobe:
    """struct kprobe (include/linux/kprobes.h), reduced to what arming on ftrace needs.

    An aggregator probe (``aggr`` True) has ``children`` (its ``list``, newest first) and gets
    ``post_handler`` when any child has one.
    """

    __deepcopy__ = fast_deepcopy

    label: str
    addr: int
    post_handler: bool = False
    disabled: bool = False
    aggr: bool = False
    children: list[kprobe] = field(default_factory=list)
    nmissed: int = 0

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return (spell(nm, self.label), self.addr, self.post_handler, self.disabled, self.aggr,
                tuple(c.key(nm) for c in self.children))


@dataclass(eq=False)
class KprobeState:
    """Statics of kernel/kprobes.c, in ``k.subsys["kprobes"]``."""

    __deepcopy__ = fast_deepcopy

    kprobe_ftrace_ops: ftrace_ops
    kprobe_ipmodify_ops: ftrace_ops
    kprobe_ftrace_enabled: int = 0
    kprobe_ipmodify_enabled: int = 0
    table: dict[int, kprobe] = field(default_factory=dict)   # kprobe_table: addr -> probe/aggr
    probes: dict[str, kprobe] = field(default_factory=dict)  # registered probes by label

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return (self.kprobe_ftrace_enabled, self.kprobe_ipmodify_enabled,
                tuple(sorted((a, p.key(nm)) for a, p in self.table.items())),
                tuple(sorted(spell(nm, p) for p in self.probes)))


def kprobe_state(k: Kernel) -> KprobeState:
    """The kprobes state of ``k``; creates the two static ops on first use."""
    st = k.subsys.get("kprobes")
    if st is None:
        st = k.subsys["kprobes"] = KprobeState(
            ftrace_ops("kprobe_ftrace_ops", KPROBE_FTRACE_HANDLER, F.SAVE_REGS, core_data=True),
            ftrace_ops("kprobe_ipmodify_ops", KPROBE_FTRACE_HANDLER, F.SAVE_REGS | F.IPMODIFY,
                       core_data=True))
        install(k, CALLS)
    return st


# ---------------------------------------------------------------------------------------------
# kernel/kprobes.c: arming on ftrace
# ---------------------------------------------------------------------------------------------
def __arm_kprobe_ftrace(k: Kernel, p: kprobe, ops: ftrace_ops, cnt: str) -> int:
    """__arm_kprobe_ftrace() (kernel/kprobes.c), all policies.

    Add the address; register the ops for the first probe.
    """
    st = kprobe_state(k)
    lockdep_assert_held(k, "kprobe_mutex")
    ret = ftrace_set_filter_ip(k, ops, p.addr, False, False)
    if ret < 0:
        return ret
    if getattr(st, cnt) == 0:
        ret = register_ftrace_function(k, ops)
        if ret < 0:
            ftrace_set_filter_ip(k, ops, p.addr, True, False)
            kept(k, "__arm_kprobe_ftrace", f"{ops.name} stays initialised, with an empty filter hash and any "
                 "trampoline it was given")
            return ret
    setattr(st, cnt, getattr(st, cnt) + 1)
    return ret


def arm_kprobe_ftrace(k: Kernel, p: kprobe) -> int:
    """arm_kprobe_ftrace() (kernel/kprobes.c), all policies.

    Kprobe_ipmodify_ops if the probe has a post_handler.
    """
    st = kprobe_state(k)
    if p.post_handler:
        return __arm_kprobe_ftrace(k, p, st.kprobe_ipmodify_ops, "kprobe_ipmodify_enabled")
    return __arm_kprobe_ftrace(k, p, st.kprobe_ftrace_ops, "kprobe_ftrace_enabled")


def __disarm_kprobe_ftrace(k: Kernel, p: kprobe, ops: ftrace_ops, cnt: str) -> int:
    """__disarm_kprobe_ftrace() (kernel/kprobes.c), all policies.

    Unregister for the last probe; remove the address. Where the version has e113f0b46d19
    (``k.policy.kprobe_disarm_when_killed``), nothing is done once ftrace is killed
    (kprobe_ftrace_disabled): the disarm is taken as done.
    """
    st = kprobe_state(k)
    lockdep_assert_held(k, "kprobe_mutex")
    if k.policy.kprobe_disarm_when_killed and kprobe_ftrace_disabled(k):
        return 0
    if getattr(st, cnt) == 1:
        ret = unregister_ftrace_function(k, ops)
        if ret < 0:
            k.warn("__disarm_kprobe_ftrace", f"Failed to unregister kprobe-ftrace (error {ret})")
            return ret
    setattr(st, cnt, getattr(st, cnt) - 1)
    ret = ftrace_set_filter_ip(k, ops, p.addr, True, False)
    if ret < 0:
        k.warn("__disarm_kprobe_ftrace",
               f"Failed to disarm kprobe-ftrace at {k.cat.sym_off_of_ip(p.addr)} (error {ret})",
               once=True)
    return ret


def disarm_kprobe_ftrace(k: Kernel, p: kprobe) -> int:
    """disarm_kprobe_ftrace() (kernel/kprobes.c), all policies.

    The ops is chosen again from p's post_handler.
    """
    st = kprobe_state(k)
    if p.post_handler:
        return __disarm_kprobe_ftrace(k, p, st.kprobe_ipmodify_ops, "kprobe_ipmodify_enabled")
    return __disarm_kprobe_ftrace(k, p, st.kprobe_ftrace_ops, "kprobe_ftrace_enabled")


def arm_kprobe(k: Kernel, p: kprobe) -> int:
    """arm_kprobe() (kernel/kprobes.c), all policies: the model's probes are all on ftrace sites."""
    return arm_kprobe_ftrace(k, p)


def disarm_kprobe(k: Kernel, p: kprobe) -> int:
    """disarm_kprobe() (kernel/kprobes.c), all policies."""
    return disarm_kprobe_ftrace(k, p)


# ---------------------------------------------------------------------------------------------
# kernel/kprobes.c: registration
# ---------------------------------------------------------------------------------------------
def init_aggr_kprobe(k: Kernel, p: kprobe) -> kprobe:
    """alloc_aggr_kprobe() + init_aggr_kprobe() (kernel/kprobes.c), all policies.

    An aggregator that replaces ``p`` in the kprobe table and lists it as its first child.
    """
    ap = kprobe(f"aggr@{p.label}", p.addr, post_handler=p.post_handler, disabled=p.disabled,
                aggr=True, children=[p])
    kprobe_state(k).table[p.addr] = ap
    return ap


def add_new_kprobe(ap: kprobe, p: kprobe) -> int:
    """add_new_kprobe() (kernel/kprobes.c), all policies.

    Put ``p`` at the head of the list; a post_handler marks ``ap``.
    """
    ap.children.insert(0, p)
    if p.post_handler and not ap.post_handler:
        ap.post_handler = True
    return 0


def register_aggr_kprobe(k: Kernel, orig_p: kprobe, p: kprobe) -> int:
    """register_aggr_kprobe() (kernel/kprobes.c), all policies: join ``p`` to the probes at its address.

    The aggregator is (re)armed only if it was disabled; an armed one keeps the ops it was armed
    with, even when ``p`` brings the first post_handler.
    """
    ap = orig_p
    mutex_lock(k, "text_mutex")
    if not orig_p.aggr:
        ap = init_aggr_kprobe(k, orig_p)
    ret = add_new_kprobe(ap, p)
    mutex_unlock(k, "text_mutex")
    if ret == 0 and ap.disabled and not p.disabled:
        ap.disabled = False
        ret = arm_kprobe(k, ap)
        if ret:
            ap.disabled = True
            ap.children.remove(p)
    return ret


def register_kprobe(k: Kernel, symbol_name: str, post_handler: bool = False,
                    label: str | None = None, addr: int | None = None) -> int:
    """register_kprobe() (kernel/kprobes.c), all policies: a probe at ``symbol_name``'s fentry site.

    That is the record: symbol+0, or symbol+4 after an endbr64 (x86 IBT, 6.12:
    arch_adjust_kprobe_addr moves offset 0 there), as the catalogue's ``fentry_offsets`` say.

    ``label`` names the probe (default: the symbol). Registering a label twice is the kernel's
    re-registration of the same struct kprobe: -EINVAL. ``addr``: the probe's ``kp.addr`` set by
    its module instead of ``symbol_name`` being looked up (kprobe_addr takes it as given), which is
    how a module probes one of several functions of the same name.
    """
    st = kprobe_state(k)
    if not k.arch.kprobes_on_ftrace:
        return -Errno.EOPNOTSUPP
    if addr is None:
        idx = k.cat.indices(symbol_name)
        if not idx:
            raise InputError(f"unknown function {symbol_name!r} (not in catalogue {k.cat.source})")
        addr = k.cat.ip(idx[0])  # kallsyms_lookup_name: the first symbol of that name
    label = label if label is not None else symbol_name
    if label in st.probes:  # warn_kprobe_rereg()
        return -Errno.EINVAL
    p = kprobe(label, addr, post_handler=post_handler)
    mutex_lock(k, "kprobe_mutex")
    old_p = st.table.get(addr)
    if old_p is not None:
        ret = register_aggr_kprobe(k, old_p, p)
    else:
        mutex_lock(k, "text_mutex")
        # prepare_kprobe() -> arch_prepare_kprobe_ftrace(): nothing to prepare
        mutex_unlock(k, "text_mutex")
        st.table[addr] = p
        ret = arm_kprobe(k, p)
        if ret:
            del st.table[addr]
    if ret == 0:
        st.probes[label] = p
    mutex_unlock(k, "kprobe_mutex")
    return ret


def aggr_kprobe_disabled(ap: kprobe) -> bool:
    """aggr_kprobe_disabled() (kernel/kprobes.c), all policies: every child is disabled."""
    return all(c.disabled for c in ap.children)


def __get_valid_kprobe(k: Kernel, p: kprobe) -> kprobe | None:
    """__get_valid_kprobe() (kernel/kprobes.c), all policies.

    The table entry (probe or aggregator) holding ``p``.
    """
    ap = kprobe_state(k).table.get(p.addr)
    if ap is None:
        return None
    if ap is p or p in ap.children:
        return ap
    return None


def __disable_kprobe(k: Kernel, p: kprobe) -> kprobe | int:
    """__disable_kprobe() (kernel/kprobes.c), all policies.

    Disable ``p``; disarm its address when nothing else is enabled.
    """
    lockdep_assert_held(k, "kprobe_mutex")
    orig_p = __get_valid_kprobe(k, p)
    if orig_p is None:
        return -Errno.EINVAL
    if not p.disabled:
        if p is not orig_p:
            p.disabled = True
        if p is orig_p or aggr_kprobe_disabled(orig_p):
            if not orig_p.disabled:
                ret = disarm_kprobe(k, orig_p)
                if ret:
                    p.disabled = False
                    return ret
            orig_p.disabled = True
    return orig_p


def __unregister_kprobe_top(k: Kernel, p: kprobe) -> int:
    """__unregister_kprobe_top() (kernel/kprobes.c), all policies.

    Disable, then leave the aggregator or the table.
    """
    st = kprobe_state(k)
    ap = __disable_kprobe(k, p)
    if isinstance(ap, int):
        return ap
    if ap is p:
        del st.table[p.addr]
        return 0
    if len(ap.children) == 1 and ap.disabled:
        del st.table[ap.addr]
        return 0
    # The kernel clears ap->post_handler when the last child with one leaves, except for an
    # ftrace aggregator, which keeps it to name the ops it is armed with (all probes here are).
    ap.children.remove(p)
    return 0


def __unregister_kprobe_bottom(k: Kernel, p: kprobe) -> None:
    """__unregister_kprobe_bottom() (kernel/kprobes.c), all policies.

    Free an aggregator whose last child leaves.
    """
    ap = kprobe_state(k).table.get(p.addr)
    if ap is not None and ap.aggr and ap.children == [p]:
        ap.children.clear()


def unregister_kprobe(k: Kernel, label: str) -> int:
    """unregister_kprobe() (kernel/kprobes.c; void there), all policies.

    The model returns the top half's result.

    When the top half fails (a failed disarm), the kernel clears ``p->addr`` and skips the bottom
    half: the probe stays in the kprobe table, armed. The model keeps it there too, but forgets
    the label (the caller's struct kprobe is gone).
    """
    st = kprobe_state(k)
    p = st.probes.get(label)
    if p is None:
        return -Errno.EINVAL
    mutex_lock(k, "kprobe_mutex")
    ret = __unregister_kprobe_top(k, p)
    mutex_unlock(k, "kprobe_mutex")
    del st.probes[label]
    if ret == 0:
        __unregister_kprobe_bottom(k, p)
    return ret


# ---------------------------------------------------------------------------------------------
# arch/x86/kernel/kprobes/ftrace.c
# ---------------------------------------------------------------------------------------------
def kprobe_ftrace_disabled(k: Kernel) -> bool:
    """kprobe_ftrace_disabled (kernel/kprobes.c, 6.10+): set by kprobe_ftrace_kill(), which
    ftrace_kill() calls, so it is set exactly when ftrace is dead (``k.ftrace_disabled``)."""
    return k.ftrace_disabled


def kprobe_ftrace_handler(k: Kernel, ops: ftrace_ops, ctx: CallContext) -> None:
    """kprobe_ftrace_handler() (arch/x86/kernel/kprobes/ftrace.c), all policies.

    Pre, emulated single step, post.

    regs->ip is ip+1 for the pre_handler (as after an int3), addr+MCOUNT_INSN_SIZE for the
    post_handler, and restored afterwards (the model's pre_handlers return 0). Where the version
    has kprobe_ftrace_kill (``k.policy.kprobe_ftrace_kill``, 6.10+), the handler returns at once
    once ftrace is killed.
    """
    if k.policy.kprobe_ftrace_kill and kprobe_ftrace_disabled(k):
        return
    p = kprobe_state(k).table.get(ctx.ip)
    if p is None or p.disabled:
        return
    orig_ip = ctx.regs.ip
    ctx.regs.ip = ctx.ip + 1
    for c in (p.children if p.aggr else [p]):  # aggr_pre_handler
        if not c.disabled:
            ctx.emit("kprobe_pre", c.label)
    ctx.regs.ip = p.addr + k.arch.mcount_insn_size
    if p.post_handler:
        for c in (p.children if p.aggr else [p]):  # aggr_post_handler
            if c.post_handler and not c.disabled:
                ctx.emit("kprobe_post", c.label)
    ctx.regs.ip = orig_ip




def kprobe_list(k: Kernel) -> str:
    """/sys/kernel/debug/kprobes/list (kernel/kprobes.c: report_probe), reduced.

    One line per probe: ``addr  k  sym+0x0  [FTRACE]`` (``sym+0x4`` where the record follows an
    endbr64, 6.12's IBT; ``[DISABLED]`` before it if disabled);
    a module's probe names the module after the offset, as report_probe does.
    """
    st = kprobe_state(k)
    lines = []
    for addr in sorted(st.table):
        ap = st.table[addr]
        for p in (ap.children if ap.aggr else [ap]):
            dis = "  [DISABLED]" if p.disabled else ""
            mod = k.cat.module_of(k.rec_index(addr))
            where = f"  {mod}" if mod is not None else ""
            lines.append(f"{addr:016x}  k  {k.cat.sym_off_of_ip(addr)}{where}{dis}  [FTRACE]\n")
    return "".join(lines)


#: What this client adds to a kernel's call table (:mod:`ftlab.model.calltable`).
CALLS = CallTable(callbacks={KPROBE_FTRACE_HANDLER: kprobe_ftrace_handler})


__all__ = ["kprobe", "KprobeState", "kprobe_state", "register_kprobe", "unregister_kprobe",
           "arm_kprobe_ftrace", "disarm_kprobe_ftrace", "kprobe_ftrace_handler", "kprobe_list"]
