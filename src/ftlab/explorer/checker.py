"""A small explicit-state model checker that knows nothing of ftrace.

The shape follows stateright's checker: a :class:`Model` gives initial states, the actions
enabled in a state (in a deterministic order), the next state for an action, named properties
and a canonical hashable key per state. :class:`Checker` configures a search (depth bound,
symmetry reduction, first-violation stop) and runs breadth-first search with a visited set over
the keys; :class:`Result` is also the test API (``result.counterexample(name)``,
``result.assert_no_violation()``).

Memory: the visited set holds keys only, and each visited state holds a parent index and the
index of the action that reached it (two ints), so a path is a list of action indices that is
rebuilt by replaying the model from an initial state (:meth:`Result.replay`). Only one BFS layer
of states is kept in memory. BFS makes every counterexample a shortest one.

The search strategies: :mod:`ftlab.explorer.bfs` (breadth-first in one process, and the part of a
shared search that every process runs alike) and :mod:`ftlab.explorer.shared_frontier` (the
frontier shared out between forked processes, with the sequential result).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

#: A search with several processes shares out the frontier once it has this many states per
#: process; smaller frontiers are searched by every process alike.
SPLIT_AT = 32

#: Allocations between two collections of the youngest GC generation during a search
#: (Python's default is 700; 20,000 measured fastest for the bundled universes).
GC_GEN0_THRESHOLD = 20_000

S = TypeVar("S")
A = TypeVar("A")


@dataclass(frozen=True)
class Property:
    """A named property. ``always``: ``check(state)`` returns violation messages (empty: holds).
    ``transition``: ``check(before, action, after, info)`` returns messages for one step."""

    name: str
    doc: str
    check: Callable[..., list[str]]
    kind: str = "always"


class Model(Protocol[S, A]):
    """What the checker needs from a model."""

    def init_states(self) -> list[S]: ...
    def actions(self, state: S) -> list[A]: ...
    def next_state(self, state: S, action: A) -> tuple[S, Any] | None: ...
    def properties(self) -> list[Property]: ...
    def key(self, state: S) -> Hashable: ...


@dataclass
class Counterexample(Generic[A]):
    """A shortest path to a violation: the actions from an initial state, and the messages."""

    prop: str
    init: int
    path: list[int]
    actions: list[A]
    messages: list[str]

    @property
    def depth(self) -> int:
        return len(self.path)


@dataclass
class Result(Generic[S, A]):
    """Outcome of a search."""

    model: Any
    states: int = 0
    transitions: int = 0
    max_depth: int = 0
    elapsed: float = 0.0
    complete: bool = True          # False when a bound (max_states, stop_at_first) cut it short
    depth_bound: int | None = None
    violations: dict[str, Counterexample[A]] = field(default_factory=dict)
    violation_counts: dict[str, int] = field(default_factory=dict)

    @property
    def states_per_s(self) -> float:
        return self.states / self.elapsed if self.elapsed > 0 else float("inf")

    def counterexample(self, name: str) -> Counterexample[A]:
        """The shortest counterexample of property ``name`` (KeyError if it holds)."""
        return self.violations[name]

    def assert_no_violation(self, *names: str) -> None:
        """Raise AssertionError naming the first violated property (of ``names``, or any)."""
        for name, cx in self.violations.items():
            if not names or name in names:
                steps = "; ".join(str(a) for a in cx.actions)
                raise AssertionError(f"{name} violated after {cx.depth} step(s): {steps}: {cx.messages[0]}")

    def replay(self, cx: Counterexample[A]) -> list[S]:
        """The states along a counterexample, rebuilt from its action indices."""
        state = self.model.init_states()[cx.init]
        out = [state]
        for idx in cx.path:
            action = self.model.actions(state)[idx]
            nxt = self.model.next_state(state, action)
            assert nxt is not None, "replay diverged: the model is not deterministic"
            state = nxt[0]
            out.append(state)
        return out


class Checker(Generic[S, A]):
    """Builder for a search over ``model``::

        result = Checker(model).depth(6).symmetry(canon).run()
    """

    def __init__(self, model: Model[S, A]) -> None:
        self.model = model
        self._depth: int | None = None
        self._symmetry: Callable[[S], Hashable] | None = None
        self._max_states: int | None = None
        self._stop_at_first = False
        self._progress: Callable[[dict[str, Any]], None] | None = None
        self._props: set[str] | None = None
        self._workers = 1

    def workers(self, n: int) -> Checker[S, A]:
        """Search with ``n`` forked processes that share out the frontier
        (:mod:`ftlab.explorer.shared_frontier`). The result is the same as with one, but for the
        timings."""
        if n < 1:
            raise ValueError("workers must be 1 or more")
        self._workers = n
        return self

    def depth(self, n: int | None) -> Checker[S, A]:
        self._depth = n
        return self

    def symmetry(self, canon: Callable[[S], Hashable] | None) -> Checker[S, A]:
        """Identify states by ``canon(state)``: a representative key of each state's orbit under
        the model's symmetry (it replaces ``model.key`` in the visited set)."""
        self._symmetry = canon
        return self

    def max_states(self, n: int | None) -> Checker[S, A]:
        self._max_states = n
        return self

    def stop_at_first(self, on: bool = True) -> Checker[S, A]:
        self._stop_at_first = on
        return self

    def properties(self, names: Sequence[str] | None) -> Checker[S, A]:
        self._props = set(names) if names is not None else None
        return self

    def progress(self, cb: Callable[[dict[str, Any]], None] | None) -> Checker[S, A]:
        self._progress = cb
        return self

    def run(self) -> Result[S, A]:
        """Breadth-first search.

        While it runs, the cyclic garbage collector's youngest generation is collected every
        :data:`GC_GEN0_THRESHOLD` allocations instead of 700: a search allocates and drops state
        copies so fast that the default makes the collector rescan survivors again and again.
        """
        from .bfs import BreadthFirst
        from .shared_frontier import run_shared

        old = gc.get_threshold()
        gc.set_threshold(GC_GEN0_THRESHOLD, old[1], old[2])
        try:
            if self._workers == 1:
                return BreadthFirst(self, rank=0, n=1, conns=[]).run()
            return run_shared(self, split_at=SPLIT_AT)
        finally:
            gc.set_threshold(*old)
