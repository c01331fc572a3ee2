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
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Protocol, Sequence, TypeVar

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

    def workers(self, n: int) -> "Checker[S, A]":
        """Search with ``n`` forked processes that share out the frontier (:meth:`_run_parallel`).
        The result is the same as with one, but for the timings."""
        if n < 1:
            raise ValueError("workers must be 1 or more")
        self._workers = n
        return self

    def depth(self, n: int | None) -> "Checker[S, A]":
        self._depth = n
        return self

    def symmetry(self, canon: Callable[[S], Hashable] | None) -> "Checker[S, A]":
        """Identify states by ``canon(state)``: a representative key of each state's orbit under
        the model's symmetry (it replaces ``model.key`` in the visited set)."""
        self._symmetry = canon
        return self

    def max_states(self, n: int | None) -> "Checker[S, A]":
        self._max_states = n
        return self

    def stop_at_first(self, on: bool = True) -> "Checker[S, A]":
        self._stop_at_first = on
        return self

    def properties(self, names: Sequence[str] | None) -> "Checker[S, A]":
        self._props = set(names) if names is not None else None
        return self

    def progress(self, cb: Callable[[dict[str, Any]], None] | None) -> "Checker[S, A]":
        self._progress = cb
        return self

    def run(self) -> Result[S, A]:
        """Breadth-first search.

        While it runs, the cyclic garbage collector's youngest generation is collected every
        :data:`GC_GEN0_THRESHOLD` allocations instead of 700: a search allocates and drops state
        copies so fast that the default makes the collector rescan survivors again and again.
        """
        old = gc.get_threshold()
        gc.set_threshold(GC_GEN0_THRESHOLD, old[1], old[2])
        try:
            return self._search(0, 1, []) if self._workers == 1 else self._run_parallel()
        finally:
            gc.set_threshold(*old)

    # -- the same search in several processes -----------------------------------------------------
    def _run_parallel(self) -> Result[S, A]:
        """The search shared out between :meth:`workers` processes, with the sequential result.

        While the frontier is small (under :data:`SPLIT_AT` states per process) every process runs
        the search alike. Then process ``r`` of ``n`` keeps every ``n``-th state of the frontier
        and, from there on, the new states it reaches itself: per layer it computes the
        transitions of its states and sends their keys (and transition-property messages) to the
        first process, which keeps the visited set, merges everything in the order the sequential
        search would meet it (by state number, then action), numbers the new states and says
        which ones each process keeps. Each process checks the always-properties of the states it
        keeps and sends the messages back. Only the first process (this one) records
        counterexamples and builds the result.
        """
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        n = self._workers
        conns = []
        procs = []
        for rank in range(1, n):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=self._worker, args=(there, rank, n), daemon=True)
            proc.start()
            there.close()
            conns.append(here)
            procs.append(proc)
        try:
            return self._search(rank=0, n=n, conns=conns)
        finally:
            for c in conns:
                c.close()
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():  # pragma: no cover - only when the search failed midway
                    proc.kill()

    def _worker(self, conn: Any, rank: int, n: int) -> None:
        try:
            self._search(rank=rank, n=n, conns=[conn])
        except BaseException as e:  # noqa: BLE001 - reported to the first process
            try:
                conn.send(("error", f"{type(e).__name__}: {e}"))
            except OSError:
                pass
        finally:
            conn.close()
            os._exit(0)

    def _search(self, rank: int, n: int, conns: list[Any]) -> Result[S, A]:
        """The search as process ``rank`` of ``n`` runs it (see :meth:`_run_parallel`)."""
        model = self.model
        props = [p for p in model.properties() if self._props is None or p.name in self._props]
        always = [p for p in props if p.kind == "always"]
        trans = [p for p in props if p.kind == "transition"]
        canon = self._symmetry
        res: Result[S, A] = Result(model, depth_bound=self._depth)
        t0 = time.perf_counter()
        parent: list[int] = []
        via: list[int] = []
        root: list[int] = []
        seen: set[Hashable] = set()
        violated: set[str] = set()
        lead = rank == 0

        def key_of(state: S) -> Hashable:
            return canon(state) if canon is not None else model.key(state)

        def record(name: str, node: int, msgs: list[str], extra_action: int | None = None) -> None:
            violated.add(name)
            res.violation_counts[name] = res.violation_counts.get(name, 0) + 1
            if name in res.violations or not lead:
                return
            p = []
            while parent[node] >= 0:
                p.append(via[node])
                node = parent[node]
            init, p = root[node], list(reversed(p))
            if extra_action is not None:
                p.append(extra_action)
            state = model.init_states()[init]
            acts = []
            for idx in p:
                a = model.actions(state)[idx]
                acts.append(a)
                nxt = model.next_state(state, a)
                if nxt is None:
                    break
                state = nxt[0]
            res.violations[name] = Counterexample(name, init, p, acts, msgs)

        def new_node(par: int, act: int, init: int) -> int:
            node = len(parent)
            parent.append(par)
            via.append(act)
            root.append(init)
            res.states += 1
            return node

        def gather(mine: list[Any]) -> list[Any]:
            """The first process: its items and every other's; the others: send theirs."""
            if not lead:
                conns[0].send(("ok", mine))
                return []
            every = list(mine)
            for c in conns:
                every.extend(_recv(c))
            return every

        def progress(depth: int, width: int) -> None:
            if self._progress is not None and lead:
                el = time.perf_counter() - t0
                self._progress({"states": res.states, "depth": depth, "frontier": width,
                                "states_per_s": res.states / el if el else 0.0})

        # Phase 1 (the whole search when n == 1; else while the frontier is small): every process
        # runs the search alike.
        frontier: list[tuple[S, int]] = []
        for i, s in enumerate(model.init_states()):
            k = key_of(s)
            if k not in seen:
                seen.add(k)
                node = new_node(-1, -1, i)
                for p in always:
                    if msgs := p.check(s):
                        record(p.name, node, msgs)
                frontier.append((s, node))
        depth = 0
        go = True
        while frontier and (n == 1 or len(frontier) < SPLIT_AT * n):
            if self._depth is not None and depth >= self._depth:
                go = False
                break
            if self._stop_at_first and violated:
                res.complete = go = False
                break
            nxt: list[tuple[S, int]] = []
            cut = False
            for state, node in frontier:
                for idx, action in enumerate(model.actions(state)):
                    out = model.next_state(state, action)
                    if out is None:
                        continue
                    res.transitions += 1
                    after, info = out
                    for p in trans:
                        if msgs := p.check(state, action, after, info):
                            record(p.name, node, msgs, extra_action=idx)
                    k = key_of(after)
                    if k not in seen:
                        seen.add(k)
                        child = new_node(node, idx, root[node])
                        for p in always:
                            if msgs := p.check(after):
                                record(p.name, child, msgs)
                        nxt.append((after, child))
                    if self._max_states is not None and res.states >= self._max_states:
                        res.complete, cut = False, True
                        break
                if cut:
                    break
            depth += 1
            frontier = [] if cut else nxt
            if frontier:
                res.max_depth = depth
            progress(depth, len(frontier))
        # Phase 2: each process keeps every n-th state of the frontier and the states it reaches
        # from them; the first one keeps the visited set and says which states are new.
        go = go and bool(frontier)
        own = [f for j, f in enumerate(frontier) if j % n == rank] if go else []
        while go:
            if lead:
                if self._depth is not None and depth >= self._depth:
                    go = False
                elif self._stop_at_first and violated:
                    res.complete = go = False
                for c in conns:
                    c.send(("ok", go))
            else:
                go = _recv(conns[0])
            if not go:
                break
            kept: dict[tuple[int, int], S] = {}
            mine = []
            for state, node in own:
                for idx, action in enumerate(model.actions(state)):
                    out = model.next_state(state, action)
                    if out is None:
                        continue
                    after, info = out
                    found = [(p.name, m) for p in trans if (m := p.check(state, action, after, info))]
                    kept[(node, idx)] = after
                    mine.append((node, idx, key_of(after), found, rank))
            accepted: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
            total = 0
            if lead:
                cut = False
                for node, idx, k, found, owner in sorted(gather(mine), key=lambda t: (t[0], t[1])):
                    res.transitions += 1
                    for name, msgs in found:
                        record(name, node, msgs, extra_action=idx)
                    if k not in seen:
                        seen.add(k)
                        accepted[owner].append((node, idx, new_node(node, idx, root[node])))
                    if self._max_states is not None and res.states >= self._max_states:
                        res.complete, cut = False, True
                        break
                total = 0 if cut else sum(len(a) for a in accepted)
                for r, c in enumerate(conns, 1):
                    c.send(("ok", accepted[r]))
                mine_acc = accepted[0]
            else:
                gather(mine)
                mine_acc = _recv(conns[0])
            own = [(kept[(node, idx)], child) for node, idx, child in mine_acc]
            del kept
            checks = [(child, [(p.name, m) for p in always if (m := p.check(st))]) for st, child in own]
            if lead:
                for child, found in sorted(gather(checks)):
                    for name, msgs in found:
                        record(name, child, msgs)
                depth += 1
                if total == 0:
                    for c in conns:
                        c.send(("ok", False))
                    break
                res.max_depth = depth
                progress(depth, total)
            else:
                gather(checks)
                depth += 1
        res.elapsed = time.perf_counter() - t0
        return res


def _recv(conn: Any) -> Any:
    try:
        tag, payload = conn.recv()
    except EOFError:
        raise RuntimeError("a search worker process ended without an answer") from None
    if tag == "error":
        raise RuntimeError(f"a search worker process failed: {payload}")
    return payload
