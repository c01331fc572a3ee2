"""A plain direct-call client (a sample module without ops_func): ``direct register|modify|unregister``.

Applies through :mod:`ftlab.model.clients.direct_client` (insmod / the modify kthread's step /
rmmod of samples/ftrace/ftrace-direct-multi{,-modify}.c).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from ..model.clients import direct_client
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


class DirectStep(StepBase):
    """direct register|modify|unregister: a plain direct-call client without ops_func."""

    direct: Literal["register", "modify", "unregister"]
    name: str = "direct"
    targets: list[FuncArg] = Field(default_factory=list)
    tramp: str = "my_tramp1"

    @field_validator("targets", mode="before", json_schema_input_type=str | FuncRef | list[str | FuncRef])
    @classmethod
    def _refs(cls, v: Any) -> Any:
        if isinstance(v, str | dict):
            v = [v]
        return [func_ref(x) for x in v] if isinstance(v, list) else v


class DirectClient(Strict):
    """A universe's direct-call module: ``register`` switches it on, ``unregister`` off; with
    ``modify``, it can also switch trampolines."""

    direct: str
    targets: list[str] = Field(min_length=1)
    modify: bool = False


def apply_direct(run: RunContext, step: DirectStep) -> Outcome:
    k = run.k
    if step.direct == "register":
        return Outcome(direct_client.direct_client_load(k, step.name, [(f.name, f.sympos) for f in step.targets],
                                                        step.tramp))
    if step.direct == "modify":
        return Outcome(direct_client.direct_client_modify(k, step.name, step.tramp))
    return Outcome(direct_client.direct_client_unload(k, step.name))


def describe_direct(step: DirectStep) -> str:
    targets = ", ".join(f.name + (f",{f.sympos}" if f.sympos else "") for f in step.targets)
    return f"direct {step.direct} {step.name}" + (f" [{targets}]" if targets else "") + f" tramp={step.tramp}"


def check_direct(step: DirectStep, seen: NameState) -> str | None:
    if step.direct == "register" and not step.targets:
        return "direct register needs targets"
    return None


def parse_direct(w: Words) -> DirectStep:
    rest = w.rest
    if not rest or rest[0] not in ("register", "modify", "unregister"):
        raise w.fail("direct register|modify|unregister")
    pos, o = w.opts(rest[1:], {"--name": "one", "--tramp": "one"})
    tramp = (o.get("--tramp") or ["my_tramp1"])[0]
    if not tramp.startswith(direct_client.TRAMP_PREFIX):
        raise w.fail(f"--tramp {tramp!r}: the model's direct client has trampolines my_tramp*")
    if rest[0] == "register":
        if not pos:
            raise w.fail("direct register needs functions")
        return DirectStep(direct="register", name=(o.get("--name") or [w.fresh("preflight_direct")])[0],
                          targets=[w.ref(p) for p in pos], tramp=tramp)
    return DirectStep(direct=rest[0], name=w.one(pos, rest[0]), tramp=tramp)


def client_actions(c: DirectClient, ref: Callable[[str], FuncRef]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("register", DirectStep(direct="register", name=c.direct,
                                                          targets=[ref(f) for f in c.targets], tramp="my_tramp1"))]
    if c.modify:
        out.append(("modify", DirectStep(direct="modify", name=c.direct, tramp="my_tramp2")))
    out.append(("unregister", DirectStep(direct="unregister", name=c.direct)))
    return out


KINDS = (
    StepKind("direct", DirectStep, apply_direct, describe_direct, functions=lambda s: list(s.targets),
             check=check_direct, client=True,
             syntax="direct register F... [--name N] [--tramp my_trampN] | direct modify N --tramp T | "
                    "direct unregister N",
             parse=parse_direct, universe=UniverseClient("direct", DirectClient, client_actions)),
)
