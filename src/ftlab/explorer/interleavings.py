"""A search over the schedules of concurrent tasks, knowing nothing of what the tasks do.

The model side (:mod:`ftlab.model.sched`) runs one schedule and reports it as a run record;
this engine only reads the records: which choices each run made at each scheduling point
(``decisions``: the names of the tasks that could go on, and the index chosen), what each task
answered (``results``), and whether the run deadlocked, livelocked, failed or broke a check.
Exploration is stateless (CHESS-style): depth-first over schedule prefixes, each run replayed
from the start by the caller's ``run_schedule``.

Search bound: by default at most ``preemption_bound`` preemptions per schedule (switching away
from a task that could have continued), which finds most concurrency bugs with few runs; pass
``preemption_bound=None`` for every interleaving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar


class ScheduledRun(Protocol):
    """What the engine reads of one run."""

    schedule: list[int]
    decisions: list[tuple[tuple[str, ...], int]]
    results: dict[str, Any]
    deadlock: Any
    livelock: Any
    error: Any
    violations: list[str]

    @property
    def bad(self) -> bool: ...


R = TypeVar("R", bound=ScheduledRun)


@dataclass
class Exploration(Generic[R]):
    """Every run explored for one group of concurrent tasks."""

    runs: int = 0
    complete: bool = True
    bad: list[R] = field(default_factory=list)
    outcomes: dict[tuple, int] = field(default_factory=dict)


def explore_interleavings(run_schedule: Callable[[list[int]], R],
                          check: Callable[[R], list[str]] | None = None,
                          preemption_bound: int | None = 2, max_runs: int = 20000,
                          stop_at_first: bool = False) -> Exploration[R]:
    """Run every schedule (within the bound): ``run_schedule(prefix)`` runs the tasks afresh
    with the choices ``prefix`` at the first scheduling points.

    ``check(run)`` inspects a completed run (one without deadlock, livelock or error) and
    returns violations.
    """
    ex: Exploration[R] = Exploration()
    stack: list[list[int]] = [[]]
    while stack:
        if ex.runs >= max_runs:
            ex.complete = False
            break
        prefix = stack.pop()
        run = run_schedule(prefix)
        ex.runs += 1
        if not (run.deadlock or run.livelock or run.error) and check is not None:
            run.violations = check(run)
        key = (tuple(sorted((n, r if r is None or isinstance(r, int) else str(r)) for n, r in run.results.items())),
               bool(run.deadlock),
               bool(run.livelock), run.error)
        ex.outcomes[key] = ex.outcomes.get(key, 0) + 1
        if run.bad:
            ex.bad.append(run)
            if stop_at_first:
                ex.complete = False
                break
        # branch on the decisions made by default (beyond the prefix)
        for j in range(len(run.decisions) - 1, len(prefix) - 1, -1):
            names, idx = run.decisions[j]
            prev = run.decisions[j - 1] if j > 0 else None
            prev_name = prev[0][prev[1]] if prev else None
            base = _preemptions(run.decisions[:j])
            for alt in range(len(names)):
                if alt == idx:
                    continue
                extra = 1 if (prev_name in names and names[alt] != prev_name) else 0
                if preemption_bound is not None and base + extra > preemption_bound:
                    continue
                stack.append([c for _, c in run.decisions[:j]] + [alt])
    return ex


def _preemptions(decisions: Sequence[tuple[tuple[str, ...], int]]) -> int:
    n = 0
    for j in range(1, len(decisions)):
        prev_names, prev_idx = decisions[j - 1]
        names, idx = decisions[j]
        prev = prev_names[prev_idx]
        if prev in names and names[idx] != prev:
            n += 1
    return n
