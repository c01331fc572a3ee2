"""Policies: each kernel version is a base table plus named changes.

A *policy* is a :class:`Policy`: a frozen, typed table of what the ftrace hook core and the BPF
trampoline do in one kernel version -- the kernel functions whose behaviour differs between
versions, plus a few constants (``MULTI_FLAGS``, the ``ftrace_ops_cmd`` and ``BPF_TRAMP_F``
enums). Everything all versions share lives in :mod:`ftlab.model.ftrace`,
:mod:`ftlab.model.direct` and :mod:`ftlab.model.bpf_trampoline`, which reach the table through
``k.policy.<slot>``.

Layout. Each version is a package here holding only what differs: ``ftrace.py`` (its
kernel/trace/ftrace.c part), ``trampoline.py`` (its kernel/bpf/trampoline.c part) and, in its
``__init__``, its ``BASE`` table and the ``OVERLAYS`` that implement the registry's changes on
that base. What two or more versions share is written once: :mod:`.shared` (code several
versions have verbatim) and :mod:`.merged` (the design merged in Linux 6.0, which 6.1 and
later keep). Policies never import one another, nor a client.

Changes. A kernel build differs from its base by the upstream commits it carries. Such a change
is an :class:`Overlay`: a name (the commit id) and the table slots it replaces, each with a
function of the base's entry (usually ignoring it: the function as the commit leaves it). A
policy is ``compose(base, overlays)``. Mutations -- deliberate bugs the explorer must catch --
are overlays too; theirs rebind one name inside one kernel function (:func:`rebind`), so no
kernel function tests a mutation's name.

Calling convention. A slot is called as ``k.policy.<slot>(k, ...)`` wherever a change or a
mutation may replace it, also from inside a version's own code, so that an overlay reaches
every caller. A slot a version does not have holds :func:`absent`, which raises
:class:`~ftlab.errors.ModelError` naming the version when called.

Names, defaults, and the kernel releases each policy stands for: :mod:`.registry`.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from ...errors import InputError, ModelError
from . import registry
from .registry import DEFAULT_POLICY, PolicyInfo

if TYPE_CHECKING:  # pragma: no cover
    from ..bpf_trampoline import bpf_trampoline
    from ..calls import CallContext
    from ..hash import ftrace_hash
    from ..kernel import Kernel
    from ..ops import Addr, ftrace_ops

    OpsFn = Callable[[Kernel, ftrace_ops], int]
    OpsVoidFn = Callable[[Kernel, ftrace_ops], None]
    DirectFn = Callable[[Kernel, ftrace_ops, Addr], int]
    HashUpdateFn = Callable[[Kernel, ftrace_ops, "ftrace_hash | None", "ftrace_hash | None"], int]
    OpsFuncFn = Callable[[ftrace_ops, int], int]
    TrFn = Callable[[Kernel, bpf_trampoline], None]


#: %pS sizes (``symbol+0x0/0x<size>``: kallsyms' distance to the next symbol) of the ftrace symbols
#: that records and views print, as Debian's 6.1.0-56/-57-amd64 has them (measured: FACTS.md of
#: tests/data/oracle-6.12, real-kernel-oracle.md): every version's table unless it has its own.
SYMBOL_SIZES_6_1: Mapping[str, int] = types.MappingProxyType({
    "ftrace_regs_caller": 0x58,
    "call_direct_funcs": 0x30,
    "arch_ftrace_ops_list_func": 0x1D0,
    "klp_ftrace_handler": 0x110,
    "kprobe_ftrace_handler": 0x1B0,
    "function_trace_call": 0x120,
    "ftrace_graph_func": 0x10,
})


class _Absent:
    """The entry of a slot that a kernel version does not have: calling it is a ModelError."""

    def __init__(self, function: str, policy: str = "this kernel version") -> None:
        self.function, self.policy = function, policy
        self.__name__ = f"absent_{function}"
        self.__doc__ = f"{function} does not exist in {policy}."

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ModelError(f"{self.function} does not exist in {self.policy}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Absent) and (other.function, other.policy) == (self.function, self.policy)

    def __hash__(self) -> int:
        return hash((self.function, self.policy))


def absent(function: str) -> Callable[..., NoReturn]:
    """What a version's table holds in the slot of kernel function ``function``, which it lacks
    (:func:`get_policy` names the policy in the error)."""
    return _Absent(function)


@dataclass(frozen=True, eq=False)
class Policy:
    """What one kernel version provides: the protocol every version package fills, slot by slot.

    Slots whose kernel name changed between versions are named for their role; the docstring of
    each version's function names its counterpart. ``changes`` and ``mutations`` name the
    overlays composed onto the version's base, in order.
    """

    name: str
    kernel: str
    description: str
    #: enum ftrace_ops_cmd (include/linux/ftrace.h; empty before the series)
    ftrace_ops_cmd: type[enum.IntEnum]
    #: MULTI_FLAGS (ftrace.c): the flags register_direct gives a direct ops
    MULTI_FLAGS: int
    #: the version has FTRACE_OPS_FL_SHARE_IPMODIFY (seed v2 only)
    has_share_ipmodify_flag: bool

    # -- kernel/trace/ftrace.c -------------------------------------------------------------
    register_ftrace_function: OpsFn
    unregister_ftrace_function: OpsFn
    #: __ftrace_hash_update_ipmodify(ops, old_hash, new_hash)
    ftrace_hash_update_ipmodify: HashUpdateFn
    #: prepare_direct_functions_for_ipmodify (seed v2, 6.0+)
    prepare_direct_functions_for_ipmodify: OpsFn
    #: cleanup_direct_functions_after_ipmodify (6.0+)
    cleanup_direct_functions_after_ipmodify: OpsVoidFn
    #: register_ftrace_function_nolock (6.0+)
    register_ftrace_function_nolock: OpsFn
    #: register_ftrace_direct_multi (5.5 .. 6.3); register_ftrace_direct (6.4+)
    register_direct: DirectFn
    #: unregister_ftrace_direct_multi (5.5 .. 6.3)
    unregister_direct: DirectFn
    #: modify_ftrace_direct_multi (5.5 .. 6.3); modify_ftrace_direct (6.4+)
    modify_direct: DirectFn
    #: modify_ftrace_direct_multi_nolock (seed v2 2/5 .. 6.3); modify_ftrace_direct_nolock (6.4+)
    modify_direct_nolock: DirectFn
    #: __modify_ftrace_direct_multi (seed v2, 6.0 .. 6.3); __modify_ftrace_direct (6.4+): the body the
    #: two above run, direct_mutex held
    modify_direct_body: DirectFn
    #: call_direct_funcs: the func of every direct ops (the trampoline by ip until 6.3, ops->direct_call from 6.4)
    call_direct_funcs: Callable[[Kernel, ftrace_ops, CallContext], None]
    #: ftrace_hash_move_and_update_ops(ops, new_hash, enable): a filter or notrace write (6.11+:
    #: a subops', or that of a disabled ops whose hash an enabled subops shares, goes through the
    #: manager: ftrace_hash_move_and_update_subops)
    ftrace_hash_move_and_update_ops: Callable[[Kernel, ftrace_ops, ftrace_hash, bool], int]

    # -- kernel/bpf/trampoline.c, include/linux/bpf.h ----------------------------------------
    #: BPF_TRAMP_F_* of the version's bpf.h
    BPF_TRAMP_F: type[enum.IntFlag]
    #: the DIRECT_CALLS block of bpf_trampoline_lookup: tr->fops (None: the version has none)
    bpf_trampoline_lookup_fops: Callable[[Kernel, bpf_trampoline], ftrace_ops | None]
    #: the fops part of bpf_trampoline_put
    bpf_trampoline_put_fops: TrFn
    register_fentry: Callable[[Kernel, bpf_trampoline, Addr], int]
    modify_fentry: Callable[[Kernel, bpf_trampoline, Addr, Addr, bool], int]
    unregister_fentry: Callable[[Kernel, bpf_trampoline, Addr], int]
    bpf_trampoline_update: Callable[[Kernel, bpf_trampoline, bool], int]
    #: tr->fops' ops_func (seed v2, 6.0+)
    bpf_tramp_ftrace_ops_func: OpsFuncFn

    # -- kernel/kprobes.c, arch/x86/kernel/kprobes/ftrace.c --------------------------------------
    #: ftrace_kill() calls kprobe_ftrace_kill(): kprobe_ftrace_handler returns at once afterwards
    #: (1a7d0890dd4a "kprobe/ftrace: bail out if ftrace was killed", v6.10)
    kprobe_ftrace_kill: bool = False
    #: __disarm_kprobe_ftrace returns 0 at once once ftrace is killed (e113f0b46d19)
    kprobe_disarm_when_killed: bool = False

    # -- include/linux/ftrace.h: struct dyn_ftrace ----------------------------------------------
    #: FTRACE_REF_MAX_SHIFT: the low bits of dyn_ftrace->flags that count the record's users (23
    #: up to 6.2; 19 from 6.4, below CALL_OPS, CALL_OPS_EN, TOUCHED and MODIFIED)
    FTRACE_REF_MAX_SHIFT: int = 23
    #: FTRACE_FL_CALL_OPS / CALL_OPS_EN exist (v6.3, "ftrace: Add DYNAMIC_FTRACE_WITH_CALL_OPS"):
    #: enabled_functions prints their ``O`` column; x86_64 has no DYNAMIC_FTRACE_WITH_CALL_OPS, so
    #: it never sets them
    rec_call_ops: bool = False
    #: FTRACE_FL_TOUCHED and FTRACE_FL_MODIFIED exist (v6.4: 6ce2c04fcbca "ftrace: Add MODIFIED flag
    #: to show if IPMODIFY or direct was attached", "ftrace: Show all functions ever enabled in
    #: touched_functions"): ftrace_check_record sets ENABLED|TOUCHED on an update that enables a
    #: record and MODIFIED if the record has DIRECT or IPMODIFY then; nothing clears them
    #: (FTRACE_NOCLEAR_FLAGS); enabled_functions prints the ``M`` column; tracefs has
    #: touched_functions
    rec_touched_modified: bool = False

    # -- kernel/trace/fgraph.c ------------------------------------------------------------------
    #: FGRAPH_ARRAY_SIZE (v6.11, "ftrace: Rewrite of function graph to allow multiple users"): up
    #: to this many function-graph users, each a subops of the manager graph_ops (registered once,
    #: filter the union, notrace the intersection), -ENOSPC beyond; 0: before 6.11, one user,
    #: graph_ops itself on global_ops' hash, -EBUSY for a second
    fgraph_array_size: int = 0

    # -- what %pS prints -------------------------------------------------------------------------
    #: the sizes of the version's ftrace symbols as %pS prints them (kallsyms), where measured;
    #: other symbols get views.DEFAULT_SIZE, BPF images their own size
    symbol_sizes: Mapping[str, int] = field(default_factory=lambda: SYMBOL_SIZES_6_1)

    changes: tuple[str, ...] = ()
    mutations: tuple[str, ...] = ()

    # -- a frozen value: shared by copies, pickled by name -------------------------------------
    def __deepcopy__(self, memo: dict[int, Any]) -> Policy:
        return self

    def __copy__(self) -> Policy:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (get_policy, (self.name, self.mutations))

    def __repr__(self) -> str:
        extra = "".join(f" +{m}" for m in self.mutations)
        return f"<Policy {self.name}{extra}>"

    @property
    def info(self) -> PolicyInfo:
        """This policy's registry entry."""
        return registry.policy_info(self.name)

    def slot(self, name: str) -> Callable[..., Any]:
        """The function in slot ``name`` (ModelError if the table has no such slot)."""
        if name not in _SLOTS:
            raise ModelError(f"the policy table has no slot {name!r}")
        fn: Callable[..., Any] = getattr(self, name)
        return fn


#: The table's data (what an overlay may also replace, but no function).
_DATA: frozenset[str] = frozenset({"ftrace_ops_cmd", "MULTI_FLAGS", "has_share_ipmodify_flag", "BPF_TRAMP_F",
                                   "kprobe_ftrace_kill", "kprobe_disarm_when_killed",
                                   "FTRACE_REF_MAX_SHIFT", "rec_call_ops", "rec_touched_modified",
                                   "symbol_sizes", "fgraph_array_size"})
#: The names of the table's function slots.
_SLOTS: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(Policy)
    if f.name not in _DATA | {"name", "kernel", "description", "changes", "mutations"})


def slot_names() -> frozenset[str]:
    """The names of the policy table's function slots."""
    return _SLOTS


@dataclass(frozen=True)
class Overlay:
    """A named replacement of some of a policy's slots: an upstream change or a mutation.

    ``replaces`` maps a slot to a function of the base's entry that gives the new entry (for an
    upstream change usually a constant: the function as the commit leaves it; for a mutation a
    :func:`rebind` of the base's own function).
    """

    name: str
    replaces: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    @classmethod
    def functions(cls, name: str, **fns: Any) -> Overlay:
        """An overlay that puts each of ``fns`` in the slot of its keyword, whatever was there
        (a function, or a value for the table's data)."""
        def constant(fn: Any) -> Callable[[Any], Any]:
            def derive(_base: Any) -> Any:
                return fn
            return derive

        return cls(name, {slot: constant(fn) for slot, fn in fns.items()})


def compose(base: Policy, overlays: Iterable[Overlay], *, mutation: bool = False) -> Policy:
    """``base`` with each overlay applied in order (``mutation``: record them as mutations)."""
    table = base
    for ov in overlays:
        new: dict[str, Any] = {}
        for slot, derive in ov.replaces.items():
            if slot not in _SLOTS | _DATA:
                raise ModelError(f"overlay {ov.name} replaces {slot!r}, which is not a policy slot")
            new[slot] = derive(new.get(slot, getattr(table, slot)))
        if mutation:
            new["mutations"] = table.mutations + (ov.name,)
        else:
            new["changes"] = table.changes + (ov.name,)
        table = dataclasses.replace(table, **new)
    return table


def rebind(fn: Callable[..., Any], **names: Any) -> Callable[..., Any]:
    """A copy of ``fn`` whose global ``names`` mean something else (a mutation operator).

    Each name must be one ``fn``'s code reads (else the mutation would change nothing, and
    that is an error, not a silent no-op). The copy keeps ``fn``'s name and docstring.
    """
    assert isinstance(fn, types.FunctionType), fn
    used = set(fn.__code__.co_names)
    for n in names:
        if n not in used:
            raise ModelError(f"mutation of {fn.__qualname__}: it does not use {n!r}")
    glb = dict(fn.__globals__)
    glb.update(names)
    new = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__doc__ = fn.__doc__
    new.__qualname__ = fn.__qualname__
    new.__module__ = fn.__module__
    return new


# ---------------------------------------------------------------------------------------------
# Building policies from the registry
# ---------------------------------------------------------------------------------------------
_built: dict[tuple[str, tuple[str, ...]], Policy] = {}


def policy_names(*, variants: bool = False) -> list[str]:
    """The names of the registry's policies (``variants``: also the named builds of a base that
    carry fewer or other changes than the primary policy)."""
    return registry.policy_names(variants=variants)


def get_policy(name: str | None = None, mutations: Iterable[str] = ()) -> Policy:
    """The policy called ``name`` (the registry's default when None), with ``mutations`` applied.

    An unknown name is :class:`~ftlab.errors.InputError`. A mutation that does not apply to the
    policy (its kernel lacks what the mutation changes) is left out.
    """
    name = name or DEFAULT_POLICY
    info = registry.POLICIES.get(name)
    if info is None:
        raise InputError(f"unknown policy {name!r} (known: {', '.join(registry.policy_names(variants=True))})")
    muts = tuple(m for m in dict.fromkeys(mutations)
                 if registry.check_mutation(m) and name in registry.MUTATIONS[m].policies)
    key = (name, muts)
    p = _built.get(key)
    if p is not None:
        return p
    if muts:  # a mutation is an overlay on the policy itself (the same functions, one rebound)
        from . import mutations as mutation_overlays
        p = compose(get_policy(name), [mutation_overlays.overlay(m) for m in muts], mutation=True)
        _built[key] = p
        return p
    package = importlib.import_module(f"{__name__}.{info.package}")
    base: Policy = dataclasses.replace(package.BASE, name=name, kernel=info.kernel, description=info.description)
    named: dict[str, Any] = {s: _Absent(f.function, name) for s in _SLOTS if isinstance(f := getattr(base, s), _Absent)}
    base = dataclasses.replace(base, **named)
    overlays: Mapping[str, Overlay] = package.OVERLAYS
    missing = [c for c in info.changes if c not in overlays]
    if missing:  # pragma: no cover - a development error
        raise TypeError(f"package {info.package} does not implement change(s) {', '.join(missing)}")
    p = compose(base, [overlays[c] for c in info.changes])
    _built[key] = p
    return p


__all__ = ["Policy", "Overlay", "absent", "compose", "rebind", "get_policy", "policy_names", "slot_names",
           "DEFAULT_POLICY"]
