"""Run a universe through the checker (orders) and the interleaver (concurrency), per policy.

This module turns a universe into a report: per policy, the action-order search (states,
transitions, speed, violations by property with the shortest counterexample), and per concurrent
group the interleaving search (runs, deadlocks with their cycle, livelocks, violations). A
counterexample converts to a scenario file that ``ftlab run`` replays to the same violation.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..actions import step_document
from ..model.invariants import check_all
from ..model.sched import Task, run_tasks
from .checker import Checker, Counterexample, Result
from .interleavings import explore_interleavings
from .universe import Action, FtraceModel, UniverseSpec


@dataclass
class GroupReport:
    """Interleavings of one concurrent group."""

    after: list[str]
    together: list[str]
    runs: int
    complete: bool
    elapsed: float
    outcomes: list[dict[str, Any]]
    bad: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PolicyReport:
    """Everything found under one policy (and mutation set)."""

    policy: str
    mutations: list[str]
    result: Result
    groups: list[GroupReport]
    model: FtraceModel

    def explain(self, name: str) -> Explanation:
        """The shortest counterexample of ``name`` replayed (cached)."""
        cache = self.__dict__.setdefault("_explained", {})
        if name not in cache:
            cache[name] = explain_counterexample(self.model, self.result.counterexample(name))
        return cache[name]

    @property
    def violated(self) -> list[str]:
        names = list(self.result.violations)
        for g in self.groups:
            for b in g.bad:
                names.append(b["kind"])
        return sorted(set(names))


def explore(spec: UniverseSpec, policy: str, depth: int | None, *, mutations: frozenset[str] = frozenset(),
            symmetry: bool = True, threads: int = 2, preemption_bound: int | None = 2,
            max_states: int | None = None, max_runs: int = 5000, workers: int = 1,
            progress: Callable[[dict[str, Any]], None] | None = None) -> PolicyReport:
    """Search ``spec`` under ``policy``: action orders up to ``depth`` (in ``workers`` processes),
    then its concurrent groups."""
    model = FtraceModel(spec, policy=policy, mutations=mutations)
    checker = Checker(model).depth(depth).max_states(max_states).progress(progress).workers(workers)
    if symmetry:
        checker.symmetry(model.symmetry())
    result = checker.run()
    groups = [interleave_group(model, g.after, g.together, preemption_bound, max_runs) for g in spec.concurrent
              if threads >= len(g.together)]
    return PolicyReport(policy, sorted(mutations), result, groups, model)


def interleave_group(model: FtraceModel, after: list[str], together: list[str],
                     preemption_bound: int | None, max_runs: int = 5000) -> GroupReport:
    """Every interleaving (within the preemption bound) of ``together`` after ``after``."""
    world = model.init_states()[0]
    for label in after:
        world, _ = model.apply(world, model.action(label))
    actions = [model.action(label) for label in together]

    def run_schedule(prefix: list[int]) -> Any:
        w = copy.deepcopy(world)
        tasks = [Task(str(a), (lambda k, a=a: w.run.apply(a.step)[0])) for a in actions]
        return run_tasks(w.k, tasks, prefix)

    t0 = time.perf_counter()
    ex = explore_interleavings(run_schedule, check=lambda run: check_all(run.kernel),
                               preemption_bound=preemption_bound, max_runs=max_runs)
    outcomes = []
    for key, n in sorted(ex.outcomes.items(), key=lambda kv: -kv[1]):
        results, deadlock, livelock, error = key
        outcomes.append({"results": {name: _errno(r) for name, r in results}, "deadlock": deadlock,
                         "livelock": livelock, "error": error, "runs": n})
    bad = []
    seen: set[str] = set()
    for run in sorted(ex.bad, key=lambda r: len(r.decisions)):
        if run.deadlock:
            kind = "deadlock"
            detail = "; ".join(f"{t} holds {', '.join(h) or 'nothing'} and wants {w}" for t, h, w in run.deadlock)
        elif run.livelock:
            kind, detail = "livelock", run.livelock
        elif run.error:
            kind, detail = "model_error", run.error
        else:
            kind, detail = "invariant", run.violations[0]
        if kind in seen:
            continue
        seen.add(kind)
        segments = [{"task": task, "points": len(points), "from": points[0], "to": points[-1]}
                    for task, points in run.segments()]
        traces: dict[str, list[dict[str, str]]] = {}
        if kind == "invariant" and run.kernel is not None:
            from ..model.calls import call_pure
            for f in [f for f in model.spec.functions if f in detail][:1]:
                traces[f] = [{"kind": kd, "detail": d} for kd, d in call_pure(run.kernel, f).events]
        bad.append({"kind": kind, "detail": detail, "order": run.order(), "schedule": list(run.schedule),
                    "segments": segments, "traces": traces,
                    "results": {n: _errno(r) for n, r in run.results.items()}})
    return GroupReport(after, together, ex.runs, ex.complete, time.perf_counter() - t0, outcomes, bad)


def _errno(r: Any) -> str:
    """A task's answer as text: an errno name, or "unfinished" for a task a deadlock, livelock
    or model error left without one."""
    from ..model.errno import errno_name
    if isinstance(r, tuple):
        r = r[0]
    if r is None:
        return "unfinished"
    return errno_name(r) if isinstance(r, int) else str(r)


# ---------------------------------------------------------------------------------------------
# Counterexamples explained: what each step did, and what ran at the end
# ---------------------------------------------------------------------------------------------
@dataclass
class StepDetail:
    """One step of a counterexample: the action, the kernel's answer, and what it changed."""

    action: str
    result: str
    changes: list[str]   # "+ view: line" / "- view: line", in view order

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "result": self.result, "changes": self.changes}


@dataclass
class Explanation:
    """A counterexample replayed: its steps, and the call trace of each function it concerns
    in the violating state (``(kind, detail)`` events, as ``ftlab run`` shows a call)."""

    steps: list[StepDetail]
    traces: dict[str, list[tuple[str, str]]]

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [st.as_dict() for st in self.steps],
                "traces": {f: [{"kind": kd, "detail": d} for kd, d in ev] for f, ev in self.traces.items()}}


def state_lines(k: Any) -> list[str]:
    """The visible state a step can change, one line per item: the ops on ``ftrace_ops_list``,
    the ``enabled_functions`` records, BPF trampolines, live patches (enabled, transition),
    registered kprobes, and whether ftrace is dead."""
    from ..actions import bpf_trampolines_view
    from ..model import views
    from ..model.clients import kprobes, livepatch

    out = [f"ops: {line}" for line in views.ops_list(k).splitlines()]
    records: list[str] = []
    for line in views.enabled_functions(k).splitlines():
        if line.startswith("\t") and records:
            records[-1] += " " + line.strip()
        else:
            records.append(" ".join(line.split()))
    out += [f"enabled_functions: {line}" for line in records]
    out += [f"trampoline: {line}" for line in bpf_trampolines_view(k).splitlines() if line.strip()]
    out += [f"livepatch: {line[len('/sys/kernel/livepatch/'):]}" for line in livepatch.livepatch_sysfs(k).splitlines()
            if line.endswith((": 0", ": 1")) and "/patched:" not in line]
    out += [f"kprobe: {name}" for name in sorted(kprobes.kprobe_state(k).probes)]
    if k.ftrace_disabled:
        out.append("ftrace: dead")
    return out


def _diff(before: list[str], after: list[str]) -> list[str]:
    gone = [f"- {line}" for line in before if line not in after]
    new = [f"+ {line}" for line in after if line not in before]
    return gone + new


def explain_counterexample(model: FtraceModel, cx: Counterexample[Action]) -> Explanation:
    """Replay ``cx`` step by step (see :class:`Explanation`)."""
    from ..model.calls import call_pure

    state = model.init_states()[cx.init]
    steps = []
    for a in cx.actions:
        before = state_lines(state.k)
        first_event = len(state.k.events)
        out = model.next_state(state, a)
        assert out is not None
        state, info = out
        changes = _diff(before, state_lines(state.k))
        changes += [f"+ {e.kind} {e.where}: {e.text}" for e in state.k.events[first_event:] if e.kind == "WARN"]
        steps.append(StepDetail(str(a), info["result"], changes))
    return Explanation(steps, {f: list(call_pure(state.k, f).events) for f in _concerned(model, cx.messages)})


# ---------------------------------------------------------------------------------------------
# Counterexamples as scenarios
# ---------------------------------------------------------------------------------------------
def counterexample_scenario(model: FtraceModel, cx: Counterexample[Action], prop: str) -> dict[str, Any]:
    """A scenario document (to dump as YAML) that replays ``cx`` and checks invariants after every step."""
    steps = [_step_doc(a) for a in cx.actions]
    steps.extend({"call": f} for f in _concerned(model, cx.messages))
    return {"description": f"counterexample of {prop} under {model.policy}: {cx.messages[0]}",
            "kernel": _kernel_doc(model), "check_invariants": True, "steps": steps}


def _concerned(model: FtraceModel, messages: list[str]) -> list[str]:
    """The universe's functions that ``messages`` name (all of them if none is named)."""
    return [f for f in model.spec.functions if any(f in m for m in messages)] or list(model.spec.functions)


def _kernel_doc(model: FtraceModel) -> dict[str, Any]:
    spec = model.spec
    kernel: dict[str, Any] = {"policy": model.policy, "arch": spec.arch,
                              "catalogue": "embedded" if spec.catalogue == "embedded" else list(spec.functions)}
    if model.mutations:
        kernel["mutations"] = sorted(model.mutations)
    return kernel


def _step_doc(a: Action) -> dict[str, Any]:
    return step_document(a.step)


def interleaving_scenario(model: FtraceModel, group: GroupReport, bad: dict[str, Any]) -> dict[str, Any]:
    """A scenario that replays one bad interleaving: the prefix, then a ``concurrent`` step with
    the schedule that led there, invariants checked after every step."""
    steps = [_step_doc(model.action(label)) for label in group.after]
    steps.append({"concurrent": [_step_doc(model.action(label)) for label in group.together],
                  "schedule": list(bad["schedule"])})
    return {"description": f"{bad['kind']} under {model.policy}: {bad['detail']}", "kernel": _kernel_doc(model),
            "check_invariants": True, "steps": steps}


def dump_scenario(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, width=110)
