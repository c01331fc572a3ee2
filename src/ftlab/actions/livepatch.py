"""Live patches: ``livepatch enable|replace|disable`` and ``transition complete``.

Applies through :mod:`ftlab.model.clients.livepatch` (a live-patch module whose init calls
klp_enable_patch; ``disable`` writes 0 to its sysfs ``enabled`` and unloads it once the
transition is over).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from ..model.clients import livepatch
from .base import (
    FuncArg,
    FuncRef,
    NameState,
    Outcome,
    RunContext,
    StepBase,
    StepKind,
    Strict,
    UniverseClient,
    Words,
    func_ref,
)


class LivepatchStep(StepBase):
    """livepatch enable|disable|replace (kernel/livepatch): a patch named like its module."""

    livepatch: Literal["enable", "disable", "replace"]
    patch: str = Field(min_length=1)
    funcs: list[FuncArg] = Field(default_factory=list)
    hold: bool = Field(False, description="a task sleeps in an affected function: the transition stays open "
                                          "until `transition: complete`")

    @field_validator("funcs", mode="before", json_schema_input_type=list[str | FuncRef])
    @classmethod
    def _refs(cls, v: Any) -> Any:
        return [func_ref(x) for x in v] if isinstance(v, list) else v


class TransitionStep(StepBase):
    """transition complete: every task reaches the target state (klp_complete_transition)."""

    transition: Literal["complete"]


class LivepatchClient(Strict):
    """A universe's live patch: ``enable`` (or ``replace``) switches it on, ``disable`` off."""

    livepatch: str
    funcs: list[str] = Field(min_length=1)
    replace: bool = False


def apply_livepatch(run: RunContext, step: LivepatchStep) -> Outcome:
    k = run.k
    if step.livepatch == "disable":
        ret = livepatch.livepatch_disable(k, step.patch, hold=step.hold)
        if ret == 0 and not livepatch.klp_in_transition(k):
            livepatch.livepatch_unload(k, step.patch)
        return Outcome(ret)
    funcs = [(f.name, f.sympos) for f in step.funcs]
    return Outcome(livepatch.livepatch_enable(k, step.patch, funcs, replace=step.livepatch == "replace",
                                              hold=step.hold))


def describe_livepatch(step: LivepatchStep) -> str:
    funcs = ", ".join(f.name + (f",{f.sympos}" if f.sympos else "") for f in step.funcs)
    return f"livepatch {step.livepatch} {step.patch}" + (f" [{funcs}]" if funcs else "")


def check_livepatch(step: LivepatchStep, seen: NameState) -> str | None:
    if step.livepatch != "disable" and not step.funcs:
        return f"livepatch {step.livepatch} needs funcs"
    return None


def parse_livepatch(w: Words) -> LivepatchStep:
    rest = w.rest
    if not rest or rest[0] not in ("enable", "replace", "disable"):
        raise w.fail("livepatch enable|replace|disable")
    sub = rest[0]
    if sub == "disable":
        pos, _ = w.opts(rest[1:], {})
        return LivepatchStep(livepatch="disable", patch=w.one(pos, "disable"))
    pos, o = w.opts(rest[1:], {"--func": "many", "--name": "one", "--replace": "flag"})
    funcs = [w.ref(f) for f in o.get("--func", []) + pos]
    if not funcs:
        raise w.fail(f"livepatch {sub} needs --func F")
    sub = "replace" if o.get("--replace") else sub
    return LivepatchStep(livepatch=sub, patch=(o.get("--name") or [w.fresh("preflight_p")])[0], funcs=funcs)


def parse_transition(w: Words) -> TransitionStep:
    if w.rest != ["complete"]:
        raise w.fail("transition complete")
    return TransitionStep(transition="complete")


def client_actions(c: LivepatchClient, ref: Callable[[str], FuncRef]) -> list[tuple[str, Any]]:
    verb = "replace" if c.replace else "enable"
    return [(verb, LivepatchStep(livepatch=verb, patch=c.livepatch, funcs=[ref(f) for f in c.funcs])),
            ("disable", LivepatchStep(livepatch="disable", patch=c.livepatch))]


KINDS = (
    StepKind("livepatch", LivepatchStep, apply_livepatch, describe_livepatch,
             functions=lambda s: list(s.funcs), object_names=True, check=check_livepatch, client=True,
             syntax="livepatch enable|replace --func F[,SYMPOS]... [--name P] | livepatch disable P",
             parse=parse_livepatch,
             universe=UniverseClient("livepatch", LivepatchClient, client_actions)),
    StepKind("transition", TransitionStep, lambda run, s: Outcome(livepatch.klp_transition_complete(run.k)),
             lambda s: "transition complete", syntax="transition complete", parse=parse_transition),
)
