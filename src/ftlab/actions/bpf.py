"""BPF tracing programs: ``bpf attach fentry|fexit|fmod_ret`` and ``bpf detach``.

Applies through :mod:`ftlab.model.clients.bpf` (load and link in one step; closing the link).
A run names its programs; ``detach`` refers to one attached by an earlier step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from ..model.clients import bpf
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


class BpfStep(StepBase):
    """bpf attach|detach: a tracing program on a kernel function (kernel/bpf/trampoline.c)."""

    bpf: Literal["attach", "detach"]
    prog: str = Field(min_length=1)
    kind: Literal["fentry", "fexit", "fmod_ret"] | None = None
    target: FuncArg | None = None
    ret: int = Field(0, description="what an fmod_ret program returns (non-zero skips the body)")

    @field_validator("target", mode="before", json_schema_input_type=str | FuncRef | None)
    @classmethod
    def _ref(cls, v: Any) -> Any:
        return func_ref(v)


class BpfClient(Strict):
    """A universe's BPF program: ``attach`` switches it on, ``detach`` off."""

    bpf: str
    kind: Literal["fentry", "fexit", "fmod_ret"]
    target: str
    ret: int = 0


def apply_bpf(run: RunContext, step: BpfStep) -> Outcome:
    k = run.k
    if step.bpf == "attach":
        assert step.kind is not None and step.target is not None
        prog = bpf.BpfProgram(step.prog, step.kind, step.target.name, step.target.sympos, step.ret)
        ret = bpf.bpf_attach(k, prog)
        if ret == 0:
            run.progs[step.prog] = prog
        return Outcome(ret)
    prog = run.progs.get(step.prog)
    if prog is None:
        return Outcome(bpf.bpf_detach(k, bpf.BpfProgram(step.prog, "fentry", "")))
    ret = bpf.bpf_detach(k, prog)
    if ret == 0:
        del run.progs[step.prog]
    return Outcome(ret)


def describe_bpf(step: BpfStep) -> str:
    if step.bpf == "attach":
        ret = f" ret={step.ret}" if step.kind == "fmod_ret" else ""
        return f"bpf attach {step.kind} {step.prog} -> {step.target.name}{ret}"  # type: ignore[union-attr]
    return f"bpf detach {step.prog}"


def check_bpf(step: BpfStep, seen: NameState) -> str | None:
    if step.bpf == "attach":
        if step.kind is None or step.target is None:
            return "bpf attach needs kind and target"
        seen.progs.add(step.prog)
    elif step.prog not in seen.progs:
        return f"no program {step.prog!r} was attached by an earlier step"
    return None


def parse_bpf(w: Words) -> BpfStep:
    rest = w.rest
    if not rest or rest[0] not in ("attach", "detach"):
        raise w.fail("bpf attach|detach")
    if rest[0] == "detach":
        pos, _ = w.opts(rest[1:], {})
        return BpfStep(bpf="detach", prog=w.one(pos, "detach"))
    pos, o = w.opts(rest[1:], {"--prog": "one", "--ret": "one"})
    if len(pos) != 2 or pos[0] not in ("fentry", "fexit", "fmod_ret"):
        raise w.fail("bpf attach fentry|fexit|fmod_ret FUNC")
    ret = (o.get("--ret") or ["0"])[0]
    if not re.fullmatch(r"-?\d+", ret):
        raise w.fail(f"--ret {ret!r}: not an integer")
    return BpfStep(bpf="attach", kind=pos[0], target=w.ref(pos[1]),
                   prog=(o.get("--prog") or [w.fresh(f"preflight_{pos[0]}")])[0], ret=int(ret))


def client_actions(c: BpfClient, ref: Callable[[str], FuncRef]) -> list[tuple[str, Any]]:
    return [("attach", BpfStep(bpf="attach", prog=c.bpf, kind=c.kind, target=ref(c.target), ret=c.ret)),
            ("detach", BpfStep(bpf="detach", prog=c.bpf))]


KINDS = (
    StepKind("bpf", BpfStep, apply_bpf, describe_bpf,
             functions=lambda s: [s.target] if s.bpf == "attach" and s.target is not None else [], check=check_bpf,
             client=True,
             syntax="bpf attach fentry|fexit|fmod_ret F [--prog NAME] [--ret N] | bpf detach NAME",
             parse=parse_bpf, universe=UniverseClient("bpf", BpfClient, client_actions)),
)
