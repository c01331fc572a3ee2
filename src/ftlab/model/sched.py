"""The kernel's schedulers: one task at a time (sequential), or tasks interleaved at lock points.

Every mutex acquisition and release and every cross-subsystem call (:mod:`ftlab.model.locks`)
calls ``k.sched.point``; the scheduler a kernel holds decides what happens there.

* :data:`SEQUENTIAL` -- the default: one task runs at a time, so waiting on a held lock is a
  deadlock (a :class:`~ftlab.errors.ModelError`).
* :class:`Interleaver` -- a controlled scheduler for one run of several tasks. Each task (a
  client action such as "attach a BPF program" or "enable a live patch") runs the model's
  ordinary code in its own thread, but only one thread runs at a time: at each point the
  interleaver decides which task goes on. Code between two points is one atomic step. A
  *schedule* is the list of choices made at those points; replaying a schedule on the same
  start state reproduces the run exactly (:func:`run_tasks`), so a search over schedules can be
  stateless (CHESS-style): the explorer's (:mod:`ftlab.explorer.interleavings`) knows nothing
  of the kernel and only sees the :class:`Run` records.

Reported per run: a deadlock (no task can run and some are unfinished) with its cycle of
(task, locks held, lock wanted), a livelock (a task passes more than ``max_points`` lock points:
retrying without progress), a model error or oops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import KernelOops, ModelError

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import Kernel


class _Abort(BaseException):
    """Unwinds a task thread when a run is abandoned (deadlock, livelock)."""


class _Livelock(BaseException):
    """A task exceeded its lock-point budget."""


@dataclass
class Task:
    """A named piece of kernel work: ``fn(k)`` returns the kernel's answer (0 or -errno)."""

    name: str
    fn: Callable[[Kernel], Any]


@dataclass
class Run:
    """One schedule and what it led to."""

    schedule: list[int]
    decisions: list[tuple[tuple[str, ...], int]]   # (enabled task names, chosen index) per point
    results: dict[str, Any]
    deadlock: list[tuple[str, tuple[str, ...], str]] | None = None
    livelock: str | None = None
    error: str | None = None
    violations: list[str] = field(default_factory=list)
    kernel: Kernel | None = None
    #: per decision: (task, what it does next: start | lock | trylock | unlock | call, lock or callee)
    steps: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def bad(self) -> bool:
        return bool(self.deadlock or self.livelock or self.error or self.violations)

    def order(self) -> list[str]:
        """Which task ran after each decision."""
        return [names[i] for names, i in self.decisions]

    def segments(self) -> list[tuple[str, list[str]]]:
        """The run as stretches of one task: (task, the points it passed, ``"lock ftrace_lock"``...).
        A stretch's first point is where the task starts, or resumes after a switch."""
        out: list[tuple[str, list[str]]] = []
        for task, op, what in self.steps:
            point = op if what is None else f"{op} {what}"
            if out and out[-1][0] == task:
                out[-1][1].append(point)
            else:
                out.append((task, [point]))
        return out


class _TaskState:
    def __init__(self, task: Task) -> None:
        self.task = task
        self.name = task.name
        self.go = threading.Event()
        self.pending: tuple[str, str | None] = ("start", None)
        self.done = False
        self.started = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.points = 0
        self.thread: threading.Thread | None = None


class Interleaver:
    """The scheduler installed as ``k.sched`` for one run."""

    def __init__(self, k: Kernel, tasks: list[Task], schedule: list[int], max_points: int = 400) -> None:
        self.k = k
        self.tasks = [_TaskState(t) for t in tasks]
        self.schedule = schedule
        self.max_points = max_points
        self.back = threading.Event()
        self.running: _TaskState | None = None
        self.aborted = False

    # -- the scheduler interface used by ftlab.model.locks -------------------------------------
    def point(self, k: Kernel, op: str, lock: str) -> None:
        t = self.running
        assert t is not None
        if self.aborted:  # unwinding an abandoned run (e.g. an unlock in a finally): never wait
            raise _Abort()
        t.points += 1
        if t.points > self.max_points:
            raise _Livelock(t.name)
        t.pending = (op, lock)
        self.back.set()
        t.go.wait()
        t.go.clear()
        if self.aborted:
            raise _Abort()

    def block(self, k: Kernel, lock: str) -> None:
        raise ModelError(f"{k.current} was scheduled while {lock} is held by {k.locks.get(lock)}")

    def acquired(self, k: Kernel, lock: str) -> None:
        pass

    def released(self, k: Kernel, lock: str) -> None:
        pass

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:  # a copied kernel gets the sequential scheduler
        return SEQUENTIAL

    # -- running ---------------------------------------------------------------------------
    def _enabled(self, t: _TaskState) -> bool:
        if t.done:
            return False
        op, lock = t.pending
        if op == "lock":
            holder = self.k.locks.get(lock)  # type: ignore[arg-type]
            return holder is None or holder == t.name  # the holder itself: let the model raise
        return True

    def _body(self, t: _TaskState) -> None:
        try:
            t.go.wait()
            t.go.clear()
            if not self.aborted:
                t.result = t.task.fn(self.k)
        except (_Abort, _Livelock) as e:
            t.error = e
        except BaseException as e:  # noqa: BLE001 - reported as the run's error
            t.error = e
        finally:
            t.done = True
            self.back.set()

    def _resume(self, t: _TaskState) -> None:
        self.running = t
        self.k.current = t.name
        self.back.clear()
        if not t.started:
            t.started = True
            t.thread = threading.Thread(target=self._body, args=(t,), daemon=True)
            t.thread.start()
        t.go.set()
        self.back.wait()

    def _finish(self) -> None:
        self.aborted = True
        for t in self.tasks:
            if t.started and not t.done:
                self.running = t
                self.k.current = t.name
                self.back.clear()
                t.go.set()
                self.back.wait()
        for t in self.tasks:
            if t.thread is not None:
                t.thread.join()
        self.k.sched = SEQUENTIAL

    def run(self) -> Run:
        k = self.k
        saved_current = k.current
        k.sched = self
        decisions: list[tuple[tuple[str, ...], int]] = []
        chosen: list[int] = []
        last: _TaskState | None = None
        run = Run(chosen, decisions, {})
        try:
            while True:
                enabled = [t for t in self.tasks if self._enabled(t)]
                if not enabled:
                    if all(t.done for t in self.tasks):
                        break
                    run.deadlock = self._cycle()
                    break
                i = len(decisions)
                if i < len(self.schedule):
                    idx = self.schedule[i]
                    if idx >= len(enabled):
                        raise ModelError("schedule does not fit this run (the model is not deterministic)")
                else:
                    idx = enabled.index(last) if last in enabled else 0
                decisions.append((tuple(t.name for t in enabled), idx))
                chosen.append(idx)
                t = enabled[idx]
                run.steps.append((t.name, *t.pending))
                self._resume(t)
                last = t
                if t.done and t.error is not None:
                    if isinstance(t.error, _Livelock):
                        run.livelock = f"{t.name} passed {self.max_points} lock points without finishing"
                        break
                    if isinstance(t.error, (ModelError, KernelOops)):
                        run.error = f"{t.name}: {type(t.error).__name__}: {t.error}"
                        break
                    if not isinstance(t.error, _Abort):
                        raise t.error
        finally:
            self._finish()
            k.current = saved_current
        run.results = {t.name: t.result for t in self.tasks}
        return run

    def _cycle(self) -> list[tuple[str, tuple[str, ...], str]]:
        """The wait-for cycle among blocked tasks: (task, locks it holds, lock it wants)."""
        k = self.k
        waits = {t.name: t.pending[1] for t in self.tasks if not t.done and t.pending[0] == "lock"}
        holds: dict[str, list[str]] = {}
        for lock, holder in k.locks.items():
            holds.setdefault(holder, []).append(lock)
        start = next(iter(waits))
        seen: list[str] = []
        cur: str | None = start
        while cur is not None and cur not in seen:
            seen.append(cur)
            cur = k.locks.get(waits.get(cur, "")) if cur in waits else None  # type: ignore[arg-type]
        cycle = seen[seen.index(cur):] if cur in seen else seen
        return [(n, tuple(sorted(holds.get(n, []))), str(waits.get(n))) for n in cycle]


class Scheduler(Protocol):
    """What the model's locks ask of the scheduler a kernel holds (``k.sched``)."""

    def point(self, k: Kernel, op: str, lock: str) -> None: ...
    def block(self, k: Kernel, lock: str) -> None: ...
    def acquired(self, k: Kernel, lock: str) -> None: ...
    def released(self, k: Kernel, lock: str) -> None: ...


class SequentialScheduler:
    """The default scheduler: one task runs at a time, so waiting on a held lock is a deadlock.

    ``point`` is called before every acquisition (mutex_lock, mutex_trylock), after every
    release, and before every cross-subsystem call (:func:`~ftlab.model.locks.cross_call`): an
    interleaving scheduler (:class:`Interleaver`) switches tasks there.
    """

    def point(self, k: Kernel, op: str, lock: str) -> None:
        pass

    def block(self, k: Kernel, lock: str) -> None:
        raise ModelError(f"deadlock: {k.current} waits for {lock} held by {k.locks.get(lock)}, "
                         "and no other task can run")

    def acquired(self, k: Kernel, lock: str) -> None:  # hook for interleaving schedulers
        pass

    def released(self, k: Kernel, lock: str) -> None:  # hook for interleaving schedulers
        pass

    def __deepcopy__(self, memo: dict[int, Any]) -> SequentialScheduler:
        return self


SEQUENTIAL = SequentialScheduler()


def run_tasks(k: Kernel, tasks: list[Task], schedule: list[int], max_points: int = 400) -> Run:
    """Run ``tasks`` on ``k`` under ``schedule`` (the choices at the first points; then the task
    that ran last goes on, else the first that can); the :class:`Run` keeps the kernel."""
    run = Interleaver(k, tasks, schedule, max_points).run()
    run.kernel = k
    return run
