"""Kprobes on ftrace sites: ``kprobe add|remove``.

Applies through :mod:`ftlab.model.clients.kprobes` (register_kprobe; unregister_kprobe, which
is void: whatever its top half answers, the caller sees success). A probe is named by its label
(``name``, else its target).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import field_validator

from ..model.clients import kprobes
from ..model.errno import Errno
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


class KprobeStep(StepBase):
    """kprobe add|remove on a traceable function (kprobes on ftrace)."""

    kprobe: Literal["add", "remove"]
    target: FuncArg
    name: str | None = None
    post: bool = False

    @field_validator("target", mode="before", json_schema_input_type=str | FuncRef)
    @classmethod
    def _ref(cls, v: Any) -> Any:
        return func_ref(v)


class KprobeClient(Strict):
    """A universe's kprobe: ``add`` switches it on, ``remove`` off."""

    kprobe: str
    target: str
    post: bool = False


def apply_kprobe(run: RunContext, step: KprobeStep) -> Outcome:
    k = run.k
    label = step.name or step.target.name
    if step.kprobe == "add":
        # a sympos: the module sets kp.addr to that occurrence instead of naming the symbol
        addr = k.cat.lookup(step.target.name, step.target.sympos) if step.target.sympos else None
        return Outcome(kprobes.register_kprobe(k, step.target.name, step.post, label, addr))
    if label not in kprobes.kprobe_state(k).probes:
        return Outcome(-Errno.EINVAL)  # no such probe (its add failed): nothing to remove
    # unregister_kprobe() is void: whatever its top half answers, the caller sees success
    kprobes.unregister_kprobe(k, label)
    return Outcome(0)


def describe_kprobe(step: KprobeStep) -> str:
    pos = f",{step.target.sympos}" if step.target.sympos else ""
    return f"kprobe {step.kprobe} {step.target.name}{pos}" + (" (post_handler)" if step.post else "")


def check_kprobe(step: KprobeStep, seen: NameState) -> str | None:
    label = step.name or step.target.name
    if step.kprobe == "add":
        seen.probes.add(label)
    elif label not in seen.probes:
        return f"no kprobe {label!r} was added by an earlier step"
    return None


def parse_kprobe(w: Words) -> KprobeStep:
    rest = w.rest
    if not rest or rest[0] not in ("add", "remove"):
        raise w.fail("kprobe add|remove")
    pos, o = w.opts(rest[1:], {"--post": "flag", "--name": "one"})
    target = w.one(pos, rest[0])
    name = (o.get("--name") or [None])[0]
    return KprobeStep(kprobe=rest[0], target=w.ref(target), name=name, post=bool(o.get("--post")))


def client_actions(c: KprobeClient, ref: Callable[[str], FuncRef]) -> list[tuple[str, Any]]:
    t = ref(c.target)
    return [("add", KprobeStep(kprobe="add", target=t, name=c.kprobe, post=c.post)),
            ("remove", KprobeStep(kprobe="remove", target=t, name=c.kprobe))]


KINDS = (
    StepKind("kprobe", KprobeStep, apply_kprobe, describe_kprobe, functions=lambda s: [s.target],
             check=check_kprobe, client=True,
             syntax="kprobe add F [--post] [--name L] | kprobe remove L", parse=parse_kprobe,
             universe=UniverseClient("kprobe", KprobeClient, client_actions)),
)
