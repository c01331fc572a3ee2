"""The modelled kernel: all ftrace state of one kernel instance, in one object.

Pure state, no I/O, no globals: records (sparse), ftrace_ops_list, direct_functions, locks, the
global trace function, ftrace_enabled / ftrace_disabled, and a log of kernel events (WARN,
messages). The policy (which kernel version's rules apply) is a frozen value chosen at
construction; see :mod:`ftlab.model.policies`.

Records are stored sparsely: ``recs`` maps a record index to its dyn_ftrace flags only while the
flags differ from the boot value (0, or FTRACE_FL_DISABLED for an invalid weak-function record),
so a state over the 38,252-record catalogue costs what its hooked functions cost, and copies and
canonical forms stay small.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from .arch import ArchProfile, get_arch
from .calltable import CallTable
from .catalogue import Catalogue
from .copying import clone
from .flags import FTRACE_FL, FTRACE_REF_MAX, ftrace_rec_count
from .naming import Rename
from .ops import Addr, ftrace_ops
from .policies import Policy, get_policy
from .sched import SEQUENTIAL, Scheduler

#: Base of run-time allocated ftrace trampolines (module area on x86_64).
TRAMP_BASE = 0xFFFFFFFFC0000000
_DISABLED = int(FTRACE_FL.DISABLED)
TRAMP_SIZE = 0x1000


class dyn_ftrace(NamedTuple):
    """struct dyn_ftrace (include/linux/ftrace.h): one call site's address and flags (a snapshot);
    ``ref_max``: the version's FTRACE_REF_MAX, which says which low bits of the flags count."""

    ip: int
    flags: int
    ref_max: int = FTRACE_REF_MAX

    @property
    def count(self) -> int:  # type: ignore[override]  # the record's count, not tuple.count
        return ftrace_rec_count(self.flags, self.ref_max)


@dataclass(frozen=True)
class Event:
    """Something the kernel printed or tripped over: ``kind`` is WARN, BUG, INFO or ERR."""

    kind: str
    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.kind} {self.where}: {self.text}"


_IDLE_KEYS: dict[type, Any] = {}


def _idle_key(obj: Any) -> Any:
    """The key of a freshly created subsystem of ``obj``'s type (created lazily = absent)."""
    t = type(obj)
    if t not in _IDLE_KEYS:
        try:
            _IDLE_KEYS[t] = t().key()
        except TypeError:
            _IDLE_KEYS[t] = object()
    return _IDLE_KEYS[t]


class Kernel:
    """One modelled kernel instance.

    ``Kernel(catalogue)`` takes the records (``Catalogue.synthetic([...])`` for small models;
    the shipped catalogues are :mod:`ftlab.catalogues`') and the registry's default policy
    (:data:`ftlab.model.policies.registry.DEFAULT_POLICY`); ``policy=`` another kernel's rules
    (a name, or a :class:`~ftlab.model.policies.Policy`, e.g. with mutations).
    """

    def __init__(self, catalogue: Catalogue, policy: str | Policy | None = None,
                 arch: str | ArchProfile = "x86_64") -> None:
        self.cat = catalogue
        self.policy: Policy = policy if isinstance(policy, Policy) else get_policy(policy)
        self.arch: ArchProfile = get_arch(arch)
        #: FTRACE_REF_MAX of the policy's version: the low bits of a record's flags that count
        self.ref_max = (1 << self.policy.FTRACE_REF_MAX_SHIFT) - 1
        self.recs: dict[int, int] = {}
        self.ftrace_ops_list: list[ftrace_ops] = []  # head first (add_ftrace_ops inserts at head)
        self.direct_functions: dict[int, Addr] = {}  # ip -> direct trampoline
        self.locks: dict[str, str] = {}              # lock name -> holder task
        self.current = "task"                        # the task running kernel code now
        self.sched: Scheduler = SEQUENTIAL
        self.ftrace_enabled = True                   # sysctl kernel.ftrace_enabled
        self.ftrace_disabled = False                 # set by ftrace_kill()
        self.ftrace_start_up = 0
        self.ftrace_trace_function: Addr = "ftrace_stub"
        self.saved_ftrace_func: Addr = "ftrace_stub"
        self.removed_ops: ftrace_ops | None = None
        self.trampolines: dict[int, str] = {}        # allocated ops trampoline -> ops name
        self.events: list[Event] = []
        self._warned_once: set[str] = set()
        self._dirty: set[int] = set()                # records touched since the last code update
        #: Static objects of kernel/trace/ftrace.c that the model needs (tmp_ops of
        #: __modify_ftrace_direct_multi); created lazily by the code that uses them.
        self.statics: dict[str, Any] = {}
        #: Client subsystems attach their global state here (klp, bpf, kprobes, tracer).
        self.subsys: dict[str, Any] = {}
        #: What ops callbacks and code addresses do when called: each client adds its own when
        #: it sets up its state (:mod:`ftlab.model.calltable`).
        self.calls: CallTable = CallTable()

    # -- records -------------------------------------------------------------------------------
    def rec_index(self, ip: int) -> int:
        i = self.cat.index(ip)
        assert i is not None, f"{ip:#x} is not a call site"
        return i

    def _boot_flags(self, i: int) -> int:
        return _DISABLED if i in self.cat.invalid else 0

    def get_flags(self, i: int) -> int:
        """dyn_ftrace->flags of record ``i``."""
        f = self.recs.get(i)
        return f if f is not None else (_DISABLED if i in self.cat.invalid else 0)

    def set_flags(self, i: int, flags: int) -> None:
        if flags == self._boot_flags(i):
            self.recs.pop(i, None)
        else:
            self.recs[i] = flags

    def rec(self, ip: int) -> dyn_ftrace:
        """The dyn_ftrace of call site ``ip``."""
        return dyn_ftrace(ip, self.get_flags(self.rec_index(ip)), self.ref_max)

    def rec_by_name(self, name: str, sympos: int = 0) -> dyn_ftrace:
        return self.rec(self.cat.lookup(name, sympos))

    def touched_records(self) -> Iterator[dyn_ftrace]:
        """Records whose flags differ from boot, in record order."""
        for i in sorted(self.recs):
            yield dyn_ftrace(self.cat.ip(i), self.recs[i], self.ref_max)

    def enabled_records(self) -> Iterator[dyn_ftrace]:
        """Records with FTRACE_FL_ENABLED (what tracefs enabled_functions lists), in record order."""
        for r in self.touched_records():
            if r.flags & FTRACE_FL.ENABLED:
                yield r

    # -- events --------------------------------------------------------------------------------
    def warn(self, where: str, text: str, once: bool = False) -> None:
        """WARN_ON / WARN_ON_ONCE: record a kernel warning (``once``: only the first time)."""
        if once:
            key = f"{where}:{text}"
            if key in self._warned_once:
                return
            self._warned_once.add(key)
        self.events.append(Event("WARN", where, text))

    def log(self, kind: str, where: str, text: str) -> None:
        self.events.append(Event(kind, where, text))

    @property
    def warnings(self) -> list[Event]:
        return [e for e in self.events if e.kind == "WARN"]

    # -- copies and canonical forms ----------------------------------------------------------
    def copy(self) -> Kernel:
        """A deep copy (ops and client objects reachable from the state are copied along)."""
        return copy.deepcopy(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Kernel:
        """Field-wise copy: immutable parts (catalogue, policy, arch, hashes) are shared."""
        new = Kernel.__new__(Kernel)
        memo[id(self)] = new
        d = clone
        for name, value in self.__dict__.items():
            if name in ("cat", "policy", "arch", "sched", "current", "ftrace_trace_function",
                        "saved_ftrace_func", "calls", "ref_max"):
                setattr(new, name, value)
            elif name in ("recs", "direct_functions", "locks", "trampolines"):
                setattr(new, name, dict(value))
            elif name in ("_warned_once", "_dirty"):
                setattr(new, name, set(value))
            elif name == "events":
                setattr(new, name, list(value))
            else:
                setattr(new, name, d(value, memo))
        return new

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        """A canonical, hashable form of the kernel-side state (for equality and explorers).

        Events are left out: they are a log, not state. ``nm`` renames the clients' names
        (:mod:`ftlab.model.naming`): in ops, in the code addresses of direct_functions (through
        the call table's renamers), and in the owners of allocated trampolines.
        """
        addr_nm: Callable[[Addr], Addr] | None = None
        if nm is None:
            direct = tuple(sorted(self.direct_functions.items(), key=lambda kv: kv[0]))
            tramps = tuple(sorted(self.trampolines.items()))
        else:
            def addr_nm(a: Addr) -> Addr:
                return self.calls.rename_addr(a, nm)  # type: ignore[no-any-return]

            direct = tuple(sorted(((ip, self.calls.rename_addr(a, nm)) for ip, a in self.direct_functions.items()),
                                  key=lambda kv: kv[0]))
            owners = {op.name: op.key_name(nm) for op in self.ftrace_ops_list}
            tramps = tuple(sorted((a, owners.get(n, n)) for a, n in self.trampolines.items()))
        return (
            self.policy.name, self.arch.name,
            tuple(sorted(self.recs.items())),
            tuple(op.key(nm, addr_nm) for op in self.ftrace_ops_list),
            direct,
            tuple(sorted(self.locks.items())),
            self.ftrace_enabled, self.ftrace_disabled, self.ftrace_start_up,
            self.ftrace_trace_function, tramps,
        )

    def full_key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        """:meth:`key` plus the canonical state of every client subsystem (``k.subsys``).

        A subsystem object takes part through its ``key(nm)`` method.
        """
        subs = tuple((name, key) for name, obj in sorted(self.subsys.items())
                     if hasattr(obj, "key") and (key := obj.key(nm)) != _idle_key(obj))
        return (self.key(nm), subs)

    def __repr__(self) -> str:
        return (f"<Kernel policy={self.policy.name} arch={self.arch.name} {len(self.cat)} records, "
                f"{len(self.ftrace_ops_list)} ops, {len(self.recs)} touched>")
