"""The function tracers: ``tracer function|function_graph|nop``.

Applies through :mod:`ftlab.model.clients.tracer` (set_ftrace_filter, set_ftrace_notrace, then
current_tracer; the two tracers share global_ops' filter).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from ..model.clients import tracer
from .base import FuncRef, Outcome, RunContext, StepBase, StepKind, Strict, UniverseClient, Words

#: A filter token that is a plain function name (whose record an observer can report).
PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class TracerStep(StepBase):
    """tracer function|function_graph|nop: current_tracer with set_ftrace_filter /
    set_ftrace_notrace globs (the two tracers share global_ops' filter)."""

    tracer: Literal["function", "function_graph", "nop"]
    filter: list[str] = Field(default_factory=list)
    notrace: list[str] = Field(default_factory=list)


class TracerClient(Strict):
    """A universe's tracer: its kind switches it on, ``nop`` off (its name is always ``tracer``)."""

    tracer: str = "function"          # the client's key (its name is always "tracer")
    kind: Literal["function", "function_graph"] = "function"
    filter: list[str] = Field(default_factory=list)
    notrace: list[str] = Field(default_factory=list)


def apply_tracer(run: RunContext, step: TracerStep) -> Outcome:
    k = run.k
    if step.tracer == "nop":
        return Outcome(tracer.current_tracer(k, "nop"))
    ret = tracer.set_ftrace_filter(k, " ".join(step.filter))
    if ret == 0:
        ret = tracer.set_ftrace_notrace(k, " ".join(step.notrace))
    if ret == 0:
        ret = tracer.current_tracer(k, step.tracer)
    return Outcome(ret)


def describe_tracer(step: TracerStep) -> str:
    extra = (f" filter={step.filter}" if step.filter else "") + (f" notrace={step.notrace}" if step.notrace else "")
    return f"tracer {step.tracer}{extra}"


def parse_tracer(w: Words) -> TracerStep:
    rest = w.rest
    if not rest or rest[0] not in ("function", "function_graph", "nop"):
        raise w.fail("tracer function|function_graph|nop")
    pos, o = w.opts(rest[1:], {"--filter": "many", "--notrace": "many"})
    if pos:
        raise w.fail(f"unexpected {' '.join(pos)} (use --filter / --notrace)")
    return TracerStep(tracer=rest[0], filter=o.get("--filter", []), notrace=o.get("--notrace", []))


def client_actions(c: TracerClient, ref: Callable[[str], FuncRef]) -> list[tuple[str, Any]]:
    return [(c.kind, TracerStep(tracer=c.kind, filter=c.filter, notrace=c.notrace)),
            ("nop", TracerStep(tracer="nop"))]


KINDS = (
    StepKind("tracer", TracerStep, apply_tracer, describe_tracer, client=True,
             syntax="tracer function|function_graph [--filter G...] [--notrace G...] | tracer nop",
             parse=parse_tracer,
             reports=lambda s: [t for t in s.filter + s.notrace if PLAIN_NAME.match(t)],
             universe=UniverseClient("tracer", TracerClient, client_actions)),
)
