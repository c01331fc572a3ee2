"""Observations: ``call FUNC`` (what runs when a function is called) and ``show VIEW`` (a view's text).

Neither changes the state unless the kernel does (a call that trips a WARN or kills ftrace).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..model import calls, views
from ..model.clients import bpf, livepatch, tracer
from ..model.errno import Errno
from ..model.flags import FTRACE_FL
from ..model.kernel import Kernel
from .base import FuncRef, Outcome, RunContext, StepBase, StepKind, Words

#: The views ``show`` knows, in the order ``ftlab schema`` lists them.
VIEWS = ("enabled_functions", "livepatch", "ops", "direct_functions", "trampolines", "locks",
         "set_ftrace_filter", "set_ftrace_notrace", "touched_functions")


class CallStep(StepBase):
    """call FUNC: what runs when the function is called."""

    call: str = Field(min_length=1)
    sympos: int = Field(0, ge=0)


class ShowStep(StepBase):
    """show VIEW: a view's text at this point."""

    show: Literal[VIEWS]  # type: ignore[valid-type]


def body_label(name: str, body: Any) -> str | None:
    """Which body ran, as a scenario names it: 'original', a live patch's name, or the address."""
    if body is None:
        return None
    if body == name:
        return "original"
    if isinstance(body, str) and body.startswith("livepatch_") and ":" in body:
        return body[len("livepatch_"):].split(":", 1)[0]
    return str(body)


def trace_dict(trace: calls.CallTrace) -> dict[str, Any]:
    """A call's trace as results carry it."""
    return {"function": trace.name, "body": body_label(trace.name, trace.body),
            "programs": list(trace.programs), "retval": trace.retval,
            "events": [{"kind": kd, "detail": d} for kd, d in trace.events],
            "warnings": [str(w) for w in trace.warnings]}


def show_view(k: Kernel, name: str) -> str | None:
    """The text of view ``name`` (None: the policy's kernel has no such file)."""
    if name == "enabled_functions":
        return views.enabled_functions(k)
    if name == "touched_functions":
        return views.touched_functions(k)
    if name == "livepatch":
        return livepatch.livepatch_sysfs(k)
    if name == "ops":
        return views.ops_list(k)
    if name == "direct_functions":
        return views.direct_functions(k)
    if name == "trampolines":
        return bpf_trampolines_view(k)
    if name == "locks":
        return views.held_locks(k)
    if name == "set_ftrace_filter":
        return tracer.read_set_ftrace_filter(k)
    if name == "set_ftrace_notrace":
        return tracer.read_set_ftrace_notrace(k)
    raise AssertionError(name)  # pragma: no cover


def bpf_trampolines_view(k: Kernel) -> str:
    """BPF trampolines, one line each: ``FUNC fentry=[..] fexit=[..] fmod_ret=[..] image=ADDR flags=..``."""
    kinds = ("fentry", "fexit", "fmod_ret")
    out = []
    for tr in bpf.trampolines(k):
        progs = " ".join(f"{kind}=[{', '.join(link.prog.name for link in tr.progs_hlist[i])}]"
                         for i, kind in enumerate(kinds))
        im = tr.cur_image
        image = (f"image={im.addr} flags={getattr(im.flags, 'name', None) or im.flags}" if im is not None
                 else "image=-")
        out.append(f"{tr.func_name} {progs} {image} refcnt={tr.refcnt}\n")
    return "".join(out)


def record_changes(k: Kernel, before: dict[int, int], limit: int | None = None) -> list[str]:
    """Records whose flags or count changed, as enabled_functions lines (``- name`` when disabled);
    with ``limit``, the first ``limit`` of them (:func:`count_record_changes` counts them all)."""
    after = k.recs
    out: list[str] = []
    for i in sorted(set(before) | set(after)):
        if before.get(i) == after.get(i):
            continue
        if limit is not None and len(out) >= limit:
            break
        ip = k.cat.ip(i)
        flags = k.get_flags(i)
        if flags & FTRACE_FL.ENABLED and not k.ftrace_disabled:
            out.append(views.print_enabled_record(k, ip, flags).replace("\n", " "))
        else:
            out.append(f"- {k.cat.sym_of_ip(ip)}")
    return out


def count_record_changes(k: Kernel, before: dict[int, int]) -> int:
    """How many records changed flags or count since ``before``."""
    after = k.recs
    return sum(1 for i in set(before) | set(after) if before.get(i) != after.get(i))


def apply_call(run: RunContext, step: CallStep) -> Outcome:
    return Outcome(0, trace_dict(calls.call(run.k, step.call, step.sympos)))


def parse_call(w: Words) -> CallStep:
    pos, _ = w.opts(w.rest, {})
    ref = w.ref(w.one(pos, "call"))
    return CallStep(call=ref["name"], sympos=ref["sympos"])


KINDS_CALL = StepKind("call", CallStep, apply_call, lambda s: f"call {s.call}",
                      functions=lambda s: [FuncRef(name=s.call, sympos=s.sympos)], syntax="call F", parse=parse_call)
def apply_show(run: RunContext, step: ShowStep) -> Outcome:
    """``cat`` the view's file: -ENOENT where the policy's kernel has none (6.1's touched_functions)."""
    text = show_view(run.k, step.show)
    if text is None:
        return Outcome(-Errno.ENOENT, None, None)
    return Outcome(0, None, text)


KINDS_SHOW = StepKind("show", ShowStep, apply_show, lambda s: f"show {s.show}")
