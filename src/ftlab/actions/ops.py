"""A module's own ftrace_ops (no ops_func): ``ops register|unregister``.

Applies through :mod:`ftlab.model.clients.ops_client` (register_ftrace_function on the
module's ops, filtered on its functions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from ..model.clients import ops_client
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


class OpsStep(StepBase):
    """ops register|unregister: a module's own ftrace_ops on one or more functions (no ops_func).

    Like a module that hooks functions with register_ftrace_function directly; with ``ipmodify``
    its callback may change regs->ip (FTRACE_OPS_FL_IPMODIFY; the model's callback leaves it).
    """

    ops: Literal["register", "unregister"]
    name: str = Field("my_ops", min_length=1)
    funcs: list[FuncArg] = Field(default_factory=list)
    ipmodify: bool = False
    save_regs: bool = False

    @field_validator("funcs", mode="before", json_schema_input_type=list[str | FuncRef])
    @classmethod
    def _refs(cls, v: Any) -> Any:
        return [func_ref(x) for x in v] if isinstance(v, list) else v


class OpsClient(Strict):
    """A universe's ftrace_ops module: ``register`` switches it on, ``unregister`` off."""

    ops: str
    funcs: list[str] = Field(min_length=1)
    ipmodify: bool = False
    save_regs: bool = False


def apply_ops(run: RunContext, step: OpsStep) -> Outcome:
    k = run.k
    if step.ops == "register":
        ips = [k.cat.lookup(f.name, f.sympos) if f.sympos else k.cat.ip(k.cat.indices(f.name)[0])
               for f in step.funcs]
        return Outcome(ops_client.ops_client_register(k, step.name, ips, step.ipmodify, step.save_regs))
    return Outcome(ops_client.ops_client_unregister(k, step.name))


def describe_ops(step: OpsStep) -> str:
    flags = "".join(f" {f}" for f, on in (("IPMODIFY", step.ipmodify), ("SAVE_REGS", step.save_regs)) if on)
    funcs = ", ".join(f.name for f in step.funcs)
    return f"ops {step.ops} {step.name}" + (f" [{funcs}]" if funcs else "") + flags


def check_ops(step: OpsStep, seen: NameState) -> str | None:
    if step.ops == "register" and not step.funcs:
        return "ops register needs funcs"
    return None


def parse_ops(w: Words) -> OpsStep:
    rest = w.rest
    if not rest or rest[0] not in ("register", "unregister"):
        raise w.fail("ops register|unregister")
    pos, o = w.opts(rest[1:], {"--name": "one", "--ipmodify": "flag", "--save-regs": "flag"})
    if rest[0] == "unregister":
        return OpsStep(ops="unregister", name=w.one(pos, "unregister"))
    if not pos:
        raise w.fail("ops register needs functions")
    return OpsStep(ops="register", name=(o.get("--name") or [w.fresh("preflight_ops")])[0],
                   funcs=[w.ref(p) for p in pos], ipmodify=bool(o.get("--ipmodify")),
                   save_regs=bool(o.get("--save-regs")))


def client_actions(c: OpsClient, ref: Callable[[str], FuncRef]) -> list[tuple[str, Any]]:
    return [("register", OpsStep(ops="register", name=c.ops, funcs=[ref(f) for f in c.funcs], ipmodify=c.ipmodify,
                                 save_regs=c.save_regs)),
            ("unregister", OpsStep(ops="unregister", name=c.ops))]


KINDS = (
    StepKind("ops", OpsStep, apply_ops, describe_ops, functions=lambda s: list(s.funcs), check=check_ops,
             client=True, syntax="ops register F... [--name N] [--ipmodify] [--save-regs] | ops unregister N",
             parse=parse_ops, universe=UniverseClient("ops", OpsClient, client_actions)),
)
