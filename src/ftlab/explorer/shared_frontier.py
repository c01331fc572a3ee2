"""Breadth-first search shared out between forked processes, with exactly the sequential result.

While the frontier is small (under ``split_at`` states per process) every process runs the
search alike (:class:`~ftlab.explorer.bfs.BreadthFirst`). Then process ``r`` of ``n`` keeps every
``n``-th state of the frontier and, from there on, the new states it reaches itself: per layer it
computes the transitions of its states and sends their keys (and transition-property messages)
to the first process, which keeps the visited set, merges everything in the order the
sequential search would meet it (by state number, then action), numbers the new states and says
which ones each process keeps. Each process checks the always-properties of the states it keeps
and sends the messages back. Only the first process (the caller's) records counterexamples and
builds the result.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from .bfs import BreadthFirst
from .checker import A, Result, S

if TYPE_CHECKING:  # pragma: no cover
    from .checker import Checker


class SharedFrontier(BreadthFirst[S, A]):
    """One process's part of a shared search."""

    def __init__(self, checker: Checker[S, A], rank: int, n: int, conns: list[Any], split_at: int) -> None:
        super().__init__(checker, rank, n, conns)
        self.split_at = split_at

    def gather(self, mine: list[Any]) -> list[Any]:
        """The first process: its items and every other's; the others: send theirs."""
        if not self.lead:
            self.conns[0].send(("ok", mine))
            return []
        every = list(mine)
        for c in self.conns:
            every.extend(_recv(c))
        return every

    def go_on(self) -> bool:
        """The first process decides whether there is another layer and tells the others."""
        if self.lead:
            go = not self.at_bound()
            for c in self.conns:
                c.send(("ok", go))
            return go
        return bool(_recv(self.conns[0]))

    def successors(self, own: list[tuple[S, int]]) -> tuple[dict[tuple[int, int], S], list[Any]]:
        """This process's transitions from ``own``: the states by (node, action), and what the
        first process needs of each (node, action, key, transition messages, owner)."""
        kept: dict[tuple[int, int], S] = {}
        mine = []
        for state, node in own:
            for idx, action in enumerate(self.model.actions(state)):
                out = self.model.next_state(state, action)
                if out is None:
                    continue
                after, info = out
                found = [(p.name, m) for p in self.trans if (m := p.check(state, action, after, info))]
                kept[(node, idx)] = after
                mine.append((node, idx, self.key_of(after), found, self.rank))
        return kept, mine

    def accept(self, mine: list[Any]) -> tuple[list[tuple[int, int, int]], int]:
        """The first process: merge every process's transitions in sequential order, number the
        new states, tell each process which it keeps; the others: receive theirs."""
        if not self.lead:
            self.gather(mine)
            return _recv(self.conns[0]), 0
        accepted: list[list[tuple[int, int, int]]] = [[] for _ in range(self.n)]
        cut = False
        for node, idx, k, found, owner in sorted(self.gather(mine), key=lambda t: (t[0], t[1])):
            self.res.transitions += 1
            for name, msgs in found:
                self.record(name, node, msgs, extra_action=idx)
            if k not in self.seen:
                self.seen.add(k)
                accepted[owner].append((node, idx, self.new_node(node, idx, self.root[node])))
            if self.full():
                cut = True
                break
        total = 0 if cut else sum(len(a) for a in accepted)
        for r, c in enumerate(self.conns, 1):
            c.send(("ok", accepted[r]))
        return accepted[0], total

    def run(self) -> Result[S, A]:
        frontier, go = self.search(until_width=self.split_at * self.n)
        own = [f for j, f in enumerate(frontier) if j % self.n == self.rank] if go else []
        while go and self.go_on():
            kept, mine = self.successors(own)
            mine_acc, total = self.accept(mine)
            own = [(kept[(node, idx)], child) for node, idx, child in mine_acc]
            del kept
            checks = [(child, [(p.name, m) for p in self.always if (m := p.check(st))]) for st, child in own]
            self.depth += 1
            if not self.lead:
                self.gather(checks)
                continue
            for child, found in sorted(self.gather(checks)):
                for name, msgs in found:
                    self.record(name, child, msgs)
            if total == 0:
                for c in self.conns:
                    c.send(("ok", False))
                break
            self.res.max_depth = self.depth
            self.progress(total)
        self.res.elapsed = time.perf_counter() - self.t0
        return self.res


def run_shared(checker: Checker[S, A], split_at: int) -> Result[S, A]:
    """The search shared out between ``checker``'s worker processes (forked; this one is the first)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    n = checker._workers
    conns = []
    procs = []
    for rank in range(1, n):
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(checker, there, rank, n, split_at), daemon=True)
        proc.start()
        there.close()
        conns.append(here)
        procs.append(proc)
    try:
        return SharedFrontier(checker, 0, n, conns, split_at).run()
    finally:
        for c in conns:
            c.close()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():  # pragma: no cover - only when the search failed midway
                proc.kill()


def _worker(checker: Checker[Any, Any], conn: Any, rank: int, n: int, split_at: int) -> None:
    try:
        SharedFrontier(checker, rank, n, [conn], split_at).run()
    except BaseException as e:  # noqa: BLE001 - reported to the first process
        try:
            conn.send(("error", f"{type(e).__name__}: {e}"))
        except OSError:
            pass
    finally:
        conn.close()
        os._exit(0)


def _recv(conn: Any) -> Any:
    try:
        tag, payload = conn.recv()
    except EOFError:
        raise RuntimeError("a search worker process ended without an answer") from None
    if tag == "error":
        raise RuntimeError(f"a search worker process failed: {payload}")
    return payload
