"""The registry of step kinds: every kind of scenario step, in one list.

:data:`KINDS` (action key -> :class:`~ftlab.actions.base.StepKind`) is the one list. The
scenario schema's step union, the kinds a ``concurrent`` step may run, the universes' client
kinds, preflight's action syntax and every dispatch on a step are derived from it. A new client
is one module here (its step schema, its apply, its universe client) plus one line in
:data:`_MODULES`' order below.

The ``concurrent`` kind lives here because its schema is made of the client kinds: client
actions run as concurrent tasks, switched at lock points per ``schedule``
(:mod:`ftlab.model.sched`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..errors import InputError
from ..model.errno import errno_name
from ..model.sched import Task, run_tasks
from . import bpf, direct, kprobe, livepatch, observe, ops, tracer
from .base import Outcome, RunContext, StepBase, StepKind, UniverseClient, step_union

#: The kinds in the order the scenario schema lists them.
_PLAIN: tuple[StepKind, ...] = (livepatch.KINDS[0], livepatch.KINDS[1], *bpf.KINDS, *kprobe.KINDS, *tracer.KINDS,
                                *direct.KINDS, observe.KINDS_CALL, observe.KINDS_SHOW, *ops.KINDS)

#: The kinds a concurrent step may run as tasks (client actions).
CLIENT_KINDS: tuple[StepKind, ...] = tuple(k for k in _PLAIN if k.client)

ClientStep = step_union(CLIENT_KINDS, "a concurrent step runs client actions: "
                        + ", ".join(k.key for k in CLIENT_KINDS[:-1]) + " or " + CLIENT_KINDS[-1].key)


class ConcurrentStep(StepBase):
    """concurrent: client actions run as concurrent tasks, switched at lock points per ``schedule``.

    ``schedule`` lists, for each scheduling point, the index of the chosen task among those that
    can run then (as ``ftlab explore`` prints it); past its end the running task goes on. The
    step's result is each task's answer (``label: ok``), or ``deadlock`` / ``livelock``.
    """

    concurrent: list[ClientStep] = Field(min_length=2, max_length=3)  # type: ignore[valid-type]
    schedule: list[int] = Field(default_factory=list)


def apply_concurrent(run: RunContext, step: ConcurrentStep) -> Outcome:
    """Run the sub-steps as concurrent tasks under ``step.schedule``.

    The result is a text instead of an errno: ``label: ok, label: EAGAIN``, or ``deadlock: ...``
    with its cycle, or ``livelock: ...``.
    """
    tasks = [Task(describe(sub), (lambda k, sub=sub: run.apply(sub).ret)) for sub in step.concurrent]
    r = run_tasks(run.k, tasks, list(step.schedule))
    if r.deadlock:
        return Outcome("deadlock: " + "; ".join(f"{t} holds {', '.join(h) or 'nothing'} and wants {w}"
                                               for t, h, w in r.deadlock))
    if r.livelock:
        return Outcome(f"livelock: {r.livelock}")
    if r.error:
        return Outcome(f"error: {r.error}")
    return Outcome(", ".join(f"{name}: {errno_name(v) if isinstance(v, int) else v}" for name, v in r.results.items()))


def _describe_concurrent(step: ConcurrentStep) -> str:
    sched = f" schedule={step.schedule}" if step.schedule else ""
    return "concurrently " + " || ".join(describe(sub) for sub in step.concurrent) + sched


CONCURRENT = StepKind("concurrent", ConcurrentStep, apply_concurrent, _describe_concurrent)

#: Every kind of step by its action key, in the scenario schema's order.
KINDS: dict[str, StepKind] = {k.key: k for k in (*_PLAIN, CONCURRENT)}

#: The kinds of the explorer's universe clients, by their key.
UNIVERSE_CLIENTS: dict[str, UniverseClient] = {k.universe.key: k.universe for k in _PLAIN if k.universe is not None}

_BY_SCHEMA: dict[type, StepKind] = {k.schema: k for k in KINDS.values()}

#: Every step a scenario can hold (a discriminated union on the action key).
Step = step_union(tuple(KINDS.values()), "a step needs exactly one action key: " + ", ".join(KINDS))

#: The command-line form of every kind that has one (preflight's proposed actions).
ACTION_SYNTAX = " | ".join(k.syntax for k in KINDS.values() if k.syntax) + " (F: NAME or MODULE:NAME)"


def kind_of(step: Any) -> StepKind:
    """The kind of ``step`` (a step model)."""
    kind = _BY_SCHEMA.get(type(step))
    if kind is None:  # pragma: no cover - a development error
        raise TypeError(f"{type(step).__name__} is not a registered step kind")
    return kind


def describe(step: Any) -> str:
    """A step in words, as results show it; the same in the runner, the oracle and preflight."""
    return kind_of(step).describe(step)


def step_functions(step: Any) -> list[Any]:
    """The functions ``step`` names (:class:`~ftlab.actions.base.FuncRef`\\ s), sub-steps included."""
    if isinstance(step, ConcurrentStep):
        return [f for sub in step.concurrent for f in step_functions(sub)]
    return kind_of(step).functions(step)


def reported_names(step: Any) -> list[str]:
    """The function names whose records matter after ``step``: those it names, and a tracer's
    plain filter tokens."""
    kind = kind_of(step)
    names = [f.name for f in step_functions(step)]
    return names + (kind.reports(step) if kind.reports is not None else [])


def parse_action(text: str, where: str, counters: dict[str, int]) -> Any:
    """One action in its command-line form (:data:`ACTION_SYNTAX`) -> a step; InputError at ``where``."""
    from .base import Words
    tok = Words.split(text, where)
    kind = KINDS.get(tok[0])
    if kind is None or kind.parse is None:
        raise InputError(f"unknown action {tok[0]!r}; syntax: {ACTION_SYNTAX}", where)
    try:
        return kind.parse(Words(tok[0], tok[1:], where, counters))
    except InputError:
        raise
    except ValueError as e:  # pydantic validation
        raise InputError(str(e).splitlines()[0] if str(e) else "invalid", where) from None


def step_document(step: Any) -> dict[str, Any]:
    """``step`` as a scenario file writes it: the action key and what differs from the defaults,
    plain names where a function reference has no sympos."""
    if isinstance(step, ConcurrentStep):
        doc: dict[str, Any] = {"concurrent": [step_document(s) for s in step.concurrent]}
        if step.schedule:
            doc["schedule"] = list(step.schedule)
        return doc
    kind = kind_of(step)
    doc = step.model_dump(exclude_none=True, exclude_defaults=True)
    doc[kind.key] = getattr(step, kind.key)
    for key in ("funcs", "targets"):
        if key in doc:
            doc[key] = [r["name"] if not r.get("sympos") else r for r in doc[key]]
    if isinstance(doc.get("target"), dict):
        r = doc["target"]
        doc["target"] = r["name"] if not r.get("sympos") else r
    return doc
