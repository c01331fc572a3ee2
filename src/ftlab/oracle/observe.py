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
  the record's head is kept as printed: 6.1's `` (%ld)`` and three flag slots (R, I, D), or
  6.12's five (R, I, D, then ``O`` and a sticky ``M``), so a model printing 6.12's columns is
  checked on them;
* for a call: ``body`` (``original``, a live patch's name, or null when an fmod_ret program
  skipped it), ``programs`` (BPF programs in firing order), ``fexit`` (what each fexit program
  saw), ``retval`` (what the caller got), ``hooks`` (kprobe pre/post handlers, direct trampolines,
  a module's own ftrace_ops callback and the function tracer that ran, sorted). A value equal to what the patched body
  that ran
  returns is written ``<patch>``: the model's replacement bodies return a marker, the oracle's
  return 0 (a /proc show function must), so only "the patched body's value" compares;
* ``ftrace_dead`` and ``warn`` (a WARN during the step).

That is the *strict* comparison, used when the model runs the kernel's own policy. When the
model stands in with another kernel's policy (a 6.12 kernel against ``linux-6.1``, while the
model has no ``linux-6.12``), the comparison is *loose* (``strict=False``): records compare on
their count, R/I/D flags and what they name (trampoline owner, list function, direct target
kind), with the new columns dropped (:func:`head_fields`) and every size read ``SIZE`` (the
model's sizes are another kernel's). The text as printed, with its columns and sizes, stays in
``enabled_text`` (addresses and BPF keys normalised only), which is reported but not compared.

6.12's ``M`` is sticky for the life of the kernel, and one guest runs many scenarios: for a
function that an earlier scenario of the same guest modified (its record already had ``M``
when the scenario began, ``touched_before`` in the results), the slot is history that no fresh
model state has, so :func:`observe` reads it ``?`` on both sides (``sticky``).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ModelError
from ..model import views
from ..model.policies.registry import DEFAULT_POLICY
from ..scenario.runner import run_scenario
from ..scenario.schema import Scenario
from .plan import describe, touched_functions

OBSERVED = ("result", "enabled", "body", "programs", "fexit", "retval", "hooks", "ftrace_dead", "warn")
CALL_KEYS = ("body", "programs", "fexit", "retval", "hooks")

_BPF_KEY = re.compile(r"bpf_trampoline_\d+(?:_\d+)?")
_SYM = re.compile(r"(?P<sym>[A-Za-z_][A-Za-z0-9_.]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
                  r"(?: \[[A-Za-z0-9_]+\])?")
#: The head of an enabled_functions record: ``name[ [module]] (count)`` and the flag slots,
#: three (6.1: R, I, D) or five (6.12: then O, and M with its trailing space).
_HEAD = re.compile(r"^(?P<name>\S+(?: \[[^\]]+\])?) \((?P<count>\d+)\)(?P<r> R|  )(?P<i> I|  )(?P<d> D|  )"
                   r"(?:(?P<o> O|  )(?P<m> M |   ))?(?P<rest>(?:[ \t\n].*)?)$", re.S)
_FEXIT = re.compile(r"^fexit (?P<name>\S+) sees (?P<value>-?\d+)$")
_BODY_RET = re.compile(r" returns (?P<value>-?\d+)$")


def head_fields(rec: str) -> dict[str, Any] | None:
    """The head of a record: ``{"name", "count", "R", "I", "D", "O", "M", "columns", "rest"}``
    (``columns``: 3 for 6.1's layout, 5 for 6.12's; O and M None in 6.1's); None if it is not one."""
    m = _HEAD.match(rec)
    if m is None:
        return None
    five = m.group("m") is not None
    return {"name": m.group("name"), "count": int(m.group("count")), "R": m.group("r") == " R",
            "I": m.group("i") == " I", "D": m.group("d") == " D",
            "O": (m.group("o") == " O") if five else None, "M": (m.group("m") == " M ") if five else None,
            "columns": 5 if five else 3, "rest": m.group("rest")}


def three_columns(rec: str) -> str:
    """``rec`` with 6.12's O and M slots dropped (6.1's layout); a 6.1 record is unchanged."""
    h = head_fields(rec)
    if h is None or h["columns"] == 3:
        return rec
    return (f"{h['name']} ({h['count']})" + (" R" if h["R"] else "  ") + (" I" if h["I"] else "  ")
            + (" D" if h["D"] else "  ") + h["rest"])


def record_text(rec: str) -> str:
    """A record as printed, with only what can never compare normalised: raw addresses
    (``ADDR``), BPF image keys (``bpf_trampoline_KEY``) and module suffixes of symbols."""
    text = _BPF_KEY.sub("bpf_trampoline_KEY", views.normalize_addresses(rec))
    return _SYM.sub(lambda m: f"{m.group('sym')}+0x{m.group('off')}/0x{m.group('size')}", text)


def sticky_m(records: list[str] | None) -> frozenset[str]:
    """Names (``name[ [module]]``) whose records show 6.12's sticky ``M``."""
    out = set()
    for r in records or []:
        h = head_fields(r)
        if h is not None and h["M"]:
            out.add(h["name"])
    return frozenset(out)


def _mask_m(rec: str) -> str:
    h = head_fields(rec)
    if h is None or h["columns"] == 3:
        return rec
    return (f"{h['name']} ({h['count']})" + (" R" if h["R"] else "  ") + (" I" if h["I"] else "  ")
            + (" D" if h["D"] else "  ") + (" O" if h["O"] else "  ") + " ? " + h["rest"])


def normalize_record(rec: str, strict: bool = True, sticky: frozenset[str] = frozenset()) -> str:
    """One enabled_functions record, comparable across model and kernel (see the module
    docstring); ``strict=False``: 6.1's three columns and no sizes; ``sticky``: functions whose
    ``M`` an earlier scenario set (read ``?``)."""
    if strict and sticky and rec.split(" (", 1)[0] in sticky:
        rec = _mask_m(rec)
    text = views.normalize_addresses(rec if strict else three_columns(rec))
    text = _BPF_KEY.sub("bpf_trampoline_KEY", text)

    def sym(m: re.Match[str]) -> str:
        name = m.group("sym")
        known = strict and (name in views.SYMBOL_SIZES or name.startswith("bpf_trampoline_"))
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


def observe(raw: dict[str, Any], strict: bool = True, sticky: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The compared observables of one raw step record (model or kernel, same code); with
    ``strict=False`` also ``enabled_text``, the records as printed (not compared)."""
    obs: dict[str, Any] = {"result": raw.get("result"),
                           "enabled": [normalize_record(r, strict, sticky) for r in raw.get("enabled") or []],
                           "ftrace_dead": raw.get("ftrace_dead"), "warn": raw.get("warn")}
    if not strict:
        obs["enabled_text"] = [record_text(r) for r in raw.get("enabled") or []]
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


def model_steps(scenario: Scenario, lines: dict, source: str, policy: str = DEFAULT_POLICY) -> list[dict[str, Any]]:
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
