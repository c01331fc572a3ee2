"""Observables: what the model and the real kernel are compared on, in one JSON shape.

Both sides first produce a *raw step record* of the same shape (the agent writes it in the
guest; :func:`model_steps` builds it from the model's runner)::

    {"index", "action", "result",           # "ok", an errno name, "Oops", "model error", ...
     "enabled": [record, ...],              # enabled_functions records of the scenario's
                                            # functions, verbatim ("\\n\\tdirect-->..." kept)
     "call": null | {"function", "body", "programs", "fexit": [[prog, value]], "retval",
                     "body_ret", "hooks": [...]},
     "ftrace_dead": bool, "warn": bool, ...}

then :func:`observe` turns a raw record into the compared observables with the *same* code on
both sides:

* ``result``;
* ``enabled``: records with raw addresses as ``ADDR`` (:func:`ftlab.model.views.normalize_addresses`),
  BPF image symbols ``bpf_trampoline_<key>`` as ``bpf_trampoline_KEY`` (the model's keys are
  synthetic BTF ids), module suffixes `` [module]`` dropped (the oracle's module names carry a
  hash), and symbol sizes kept only for symbols whose size the model knows from the real kernel
  (:data:`ftlab.model.views.SYMBOL_SIZES`, and the one-page BPF image); other sizes read ``SIZE``;
* for a call: ``body`` (``original``, a live patch's name, or null when an fmod_ret program
  skipped it), ``programs`` (BPF programs in firing order), ``fexit`` (what each fexit program
  saw), ``retval`` (what the caller got), ``hooks`` (kprobe pre/post handlers, direct trampolines,
  a module's own ftrace_ops callback and the function tracer that ran, sorted). A value equal to what the patched body that ran
  returns is written ``<patch>``: the model's replacement bodies return a marker, the oracle's
  return 0 (a /proc show function must), so only "the patched body's value" compares;
* ``ftrace_dead`` and ``warn`` (a WARN during the step).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ModelError
from ..model import views
from ..scenario.runner import run_scenario
from ..scenario.schema import Scenario
from .plan import describe, touched_functions

OBSERVED = ("result", "enabled", "body", "programs", "fexit", "retval", "hooks", "ftrace_dead", "warn")
CALL_KEYS = ("body", "programs", "fexit", "retval", "hooks")

_BPF_KEY = re.compile(r"bpf_trampoline_\d+(?:_\d+)?")
_SYM = re.compile(r"(?P<sym>[A-Za-z_][A-Za-z0-9_.]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)(?: \[[A-Za-z0-9_]+\])?")
_FEXIT = re.compile(r"^fexit (?P<name>\S+) sees (?P<value>-?\d+)$")
_BODY_RET = re.compile(r" returns (?P<value>-?\d+)$")


def normalize_record(rec: str) -> str:
    """One enabled_functions record, comparable across model and kernel (see the module docstring)."""
    text = views.normalize_addresses(rec)
    text = _BPF_KEY.sub("bpf_trampoline_KEY", text)

    def sym(m: re.Match[str]) -> str:
        name = m.group("sym")
        known = name in views.SYMBOL_SIZES or name.startswith("bpf_trampoline_")
        size = f"0x{m.group('size')}" if known else "SIZE"
        return f"{name}+0x{m.group('off')}/{size}"

    return _SYM.sub(sym, text)


def split_records(text: str, names: set[str] | None = None) -> list[str]:
    """enabled_functions text cut into records (a ``\\t...`` line belongs to the record above)."""
    recs: list[str] = []
    for line in text.splitlines():
        if line.startswith("\t") and recs:
            recs[-1] += "\n" + line
        elif line:
            recs.append(line)
    if names is None:
        return recs
    return [r for r in recs if r.split(" (", 1)[0] in names]


def _value(v: Any, body: Any, body_ret: Any) -> Any:
    if body not in (None, "original") and body_ret is not None and v == body_ret:
        return f"<{body}>"
    return v


def observe(raw: dict[str, Any]) -> dict[str, Any]:
    """The compared observables of one raw step record (model or kernel, same code)."""
    obs: dict[str, Any] = {"result": raw.get("result"),
                           "enabled": [normalize_record(r) for r in raw.get("enabled") or []],
                           "ftrace_dead": raw.get("ftrace_dead"), "warn": raw.get("warn")}
    call = raw.get("call")
    if call:
        body, bret = call.get("body"), call.get("body_ret")
        obs.update(body=body, programs=list(call.get("programs") or []),
                   fexit=[[n, _value(v, body, bret)] for n, v in call.get("fexit") or []],
                   retval=_value(call.get("retval"), body, bret), hooks=sorted(call.get("hooks") or []))
    else:
        obs.update({k: None for k in CALL_KEYS})
    return obs


# ---------------------------------------------------------------------------------------------
# The model side
# ---------------------------------------------------------------------------------------------
def _model_call(trace: dict[str, Any]) -> dict[str, Any]:
    fexit: list[list[Any]] = []
    hooks: list[str] = []
    body_ret = None
    for ev in trace.get("events", []):
        kind, detail = ev["kind"], ev["detail"]
        if kind == "bpf_prog":
            m = _FEXIT.match(detail)
            if m:
                fexit.append([m.group("name"), int(m.group("value"))])
        elif kind == "body":
            m = _BODY_RET.search(detail)
            if m:
                body_ret = int(m.group("value"))
        elif kind == "kprobe_pre":
            hooks.append(f"kprobe:{detail}:pre")
        elif kind == "kprobe_post":
            hooks.append(f"kprobe:{detail}:post")
        elif kind == "direct":
            hooks.append(f"direct:{detail.split(':', 1)[0]}")
        elif kind in ("function", "function_graph"):
            hooks.append("tracer")
        elif kind == "ops":
            hooks.append(f"ops:{detail}")
    body = trace.get("body")
    return {"function": trace.get("function"), "body": body, "programs": list(trace.get("programs", [])),
            "fexit": fexit, "retval": trace.get("retval"),
            "body_ret": body_ret if body not in (None, "original") else None, "hooks": sorted(hooks)}


def model_steps(scenario: Scenario, lines: dict, source: str, policy: str = "linux-6.1") -> list[dict[str, Any]]:
    """Raw step records of ``scenario`` run on the model under ``policy``.

    The runner gives each step's result and call trace; the state after step *i* (for the
    enabled_functions records) comes from running the scenario up to step *i*. A
    :class:`~ftlab.errors.ModelError` (the model cannot run a step) ends the list with a step
    whose result is ``model error``; an Oops ends it as the runner does.
    """
    names = set(touched_functions(scenario))
    out: list[dict[str, Any]] = []
    for i in range(len(scenario.steps)):
        try:
            res = run_scenario(scenario, lines, source, policy=policy, until=i + 1)
        except ModelError as e:
            out.append({"index": i + 1, "action": describe(scenario.steps[i]), "result": "model error",
                        "error": str(e), "enabled": [], "call": None, "view": None,
                        "ftrace_dead": None, "warn": None})
            break
        if len(res.steps) <= i:  # an earlier step oopsed: the runner stopped there
            break
        s = res.steps[i]
        k = res.kernel
        enabled = [] if k.ftrace_disabled else split_records(views.enabled_functions(k, names), names)
        out.append({"index": i + 1, "action": s.action, "result": s.result, "enabled": enabled,
                    "call": _model_call(s.trace) if s.trace is not None else None, "view": s.view,
                    "ftrace_dead": k.ftrace_disabled, "warn": any(e.startswith("WARN ") for e in s.events),
                    "events": s.events})
        if s.result == "Oops":
            break
    return out
