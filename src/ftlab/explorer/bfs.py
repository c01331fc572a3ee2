"""Breadth-first search over a model's states, with a visited set of keys.

:class:`BreadthFirst` holds what a search keeps (each state's parent, the action that reached
it and its initial state, as ints; the visited keys; the result) and runs layer by layer. In one
process it is the whole search. In a search shared between processes
(:mod:`ftlab.explorer.shared_frontier`) every process runs it alike while the frontier is small,
then the shared phase takes over with the same bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Generic

from .checker import A, Counterexample, Result, S

if TYPE_CHECKING:  # pragma: no cover
    from .checker import Checker


class BreadthFirst(Generic[S, A]):
    """One process's search (``rank`` of ``n``; ``conns``: its pipes to the others)."""

    def __init__(self, checker: Checker[S, A], rank: int, n: int, conns: list[Any]) -> None:
        self.cfg = checker
        self.model = checker.model
        props = [p for p in self.model.properties() if checker._props is None or p.name in checker._props]
        self.always = [p for p in props if p.kind == "always"]
        self.trans = [p for p in props if p.kind == "transition"]
        self.canon = checker._symmetry
        self.rank, self.n, self.conns = rank, n, conns
        self.lead = rank == 0
        self.res: Result[S, A] = Result(self.model, depth_bound=checker._depth)
        self.t0 = time.perf_counter()
        self.parent: list[int] = []
        self.via: list[int] = []
        self.root: list[int] = []
        self.seen: set[Hashable] = set()
        self.violated: set[str] = set()
        self.depth = 0

    # -- bookkeeping ---------------------------------------------------------------------------
    def key_of(self, state: S) -> Hashable:
        return self.canon(state) if self.canon is not None else self.model.key(state)

    def record(self, name: str, node: int, msgs: list[str], extra_action: int | None = None) -> None:
        """A violation of ``name`` at ``node`` (or at the transition ``extra_action`` from it): the
        first one found, a shortest one, becomes the property's counterexample."""
        self.violated.add(name)
        res = self.res
        res.violation_counts[name] = res.violation_counts.get(name, 0) + 1
        if name in res.violations or not self.lead:
            return
        p = []
        while self.parent[node] >= 0:
            p.append(self.via[node])
            node = self.parent[node]
        init, p = self.root[node], list(reversed(p))
        if extra_action is not None:
            p.append(extra_action)
        state = self.model.init_states()[init]
        acts = []
        for idx in p:
            a = self.model.actions(state)[idx]
            acts.append(a)
            nxt = self.model.next_state(state, a)
            if nxt is None:
                break
            state = nxt[0]
        res.violations[name] = Counterexample(name, init, p, acts, msgs)

    def new_node(self, par: int, act: int, init: int) -> int:
        node = len(self.parent)
        self.parent.append(par)
        self.via.append(act)
        self.root.append(init)
        self.res.states += 1
        return node

    def check_always(self, state: S, node: int) -> None:
        for p in self.always:
            if msgs := p.check(state):
                self.record(p.name, node, msgs)

    def progress(self, width: int) -> None:
        if self.cfg._progress is not None and self.lead:
            el = time.perf_counter() - self.t0
            self.cfg._progress({"states": self.res.states, "depth": self.depth, "frontier": width,
                                "states_per_s": self.res.states / el if el else 0.0})

    def at_bound(self) -> bool:
        """The depth bound is reached, or the first violation ends the search (marked incomplete)."""
        if self.cfg._depth is not None and self.depth >= self.cfg._depth:
            return True
        if self.cfg._stop_at_first and self.violated:
            self.res.complete = False
            return True
        return False

    def full(self) -> bool:
        """The state bound is reached (the search is marked incomplete)."""
        if self.cfg._max_states is not None and self.res.states >= self.cfg._max_states:
            self.res.complete = False
            return True
        return False

    # -- the search ----------------------------------------------------------------------------
    def initial(self) -> list[tuple[S, int]]:
        """The first layer: the model's initial states, each once."""
        frontier: list[tuple[S, int]] = []
        for i, s in enumerate(self.model.init_states()):
            k = self.key_of(s)
            if k not in self.seen:
                self.seen.add(k)
                node = self.new_node(-1, -1, i)
                self.check_always(s, node)
                frontier.append((s, node))
        return frontier

    def layer(self, frontier: list[tuple[S, int]]) -> tuple[list[tuple[S, int]], bool]:
        """Every successor of ``frontier`` not seen before, and whether the state bound cut it."""
        nxt: list[tuple[S, int]] = []
        model, res = self.model, self.res
        for state, node in frontier:
            for idx, action in enumerate(model.actions(state)):
                out = model.next_state(state, action)
                if out is None:
                    continue
                res.transitions += 1
                after, info = out
                for p in self.trans:
                    if msgs := p.check(state, action, after, info):
                        self.record(p.name, node, msgs, extra_action=idx)
                k = self.key_of(after)
                if k not in self.seen:
                    self.seen.add(k)
                    child = self.new_node(node, idx, self.root[node])
                    self.check_always(after, child)
                    nxt.append((after, child))
                if self.full():
                    return nxt, True
        return nxt, False

    def search(self, until_width: int | None = None) -> tuple[list[tuple[S, int]], bool]:
        """Layer after layer until the frontier is empty, a bound is met, or (``until_width``)
        the frontier has that many states: the frontier left, and whether the search goes on."""
        frontier = self.initial()
        while frontier and (until_width is None or len(frontier) < until_width):
            if self.at_bound():
                return frontier, False
            frontier, cut = self.layer(frontier)
            self.depth += 1
            if cut:
                frontier = []
            if frontier:
                self.res.max_depth = self.depth
            self.progress(len(frontier))
        return frontier, bool(frontier)

    def run(self) -> Result[S, A]:
        """The whole search in this process."""
        self.search()
        self.res.elapsed = time.perf_counter() - self.t0
        return self.res
