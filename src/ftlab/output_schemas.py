"""JSON Schemas (draft 2020-12) of the documents ``ftlab <command> --json`` prints.

Every document is one JSON object with ``"format": 1`` (:data:`ftlab.cli.JSON_FORMAT`) and
``"command"`` naming the subcommand; :data:`SCHEMAS` maps each command to the schema of its
document, and :func:`validate` checks a document against the schema its ``command`` names.
Schemas are closed (``additionalProperties: false``): a new field needs a schema change here.

``run`` -- two shapes:

* without a file (the list of bundled scenarios)::

    {"format": 1, "command": "run", "scenarios": [{"name": str, "description": str}, ...]}

* with a file or name::

    {"format": 1, "command": "run", "source": str, "policy": POLICY, "arch": ARCH, "ok": bool,
     "steps": [{"index": int >= 1, "line": int >= 1, "action": str,
                "result": "ok" | errno name ("EBUSY") | "-N" | "Oops",
                "changes": [str],          # enabled_functions lines of changed records, "- name"
                "changes_omitted": int,    # changed records beyond the run's limit (200; --full: none)
                "trace": null | TRACE,     # call steps
                "view": null | str,        # show steps
                "events": [str],           # kernel events of this step
                "ftrace_dead": bool,       # ftrace is dead after the step
                "expect_ok": bool,
                "failures": [{"field": EXPECT_FIELD, "expected": any, "got": any}]}, ...]}

  where ``TRACE`` is ``{"function": str, "body": null | str ("original" or a patch name),
  "programs": [str], "retval": int, "events": [{"kind": str, "detail": str}], "warnings":
  [str]}``; ``ok`` is true exactly when every step's ``expect_ok`` is.

``show``::

    {"format": 1, "command": "show", "source": str, "policy": POLICY, "arch": ARCH, "at": int >= 0,
     "views": {"enabled_functions": str, "livepatch": str, "ops": str, "direct_functions": str,
               "trampolines": str, "locks": str}}

``compare``::

    {"format": 1, "command": "compare", "source": str, "policies": [POLICY, ...] (unique, >= 1),
     "agree": bool,
     "steps": [{"index": int >= 1, "line": int >= 1, "action": str, "differs": bool,
                "cells": {POLICY: null (not run: an earlier step oopsed) |
                                  {"result": str, "warnings": int (WARNs of the step), "ftrace_dead": bool,
                                   "kills_ftrace": bool (dead after this step, not before)}
                                  + for a call {"body", "programs", "retval"}}}]}

``catalogue``::

    {"format": 1, "command": "catalogue",
     "catalogue": {"source": str, "records": int, "unique_names": int, "duplicate_names": int,
                   "invalid_records": int},
     "filters": {"glob": null | {"token": str, "type": "MATCH_FULL" | "MATCH_FRONT_ONLY" |
                                 "MATCH_MIDDLE_ONLY" | "MATCH_END_ONLY" | "MATCH_GLOB" |
                                 "MATCH_INDEX", "search": str, "module": null | str, "negate": bool},
                 "grep": null | str},
     "count": int,
     "records": [{"index": int, "ip": "0x<hex>", "name": str, "module": str|null, "invalid": bool}],  # with
     "truncated": bool}                                            # neither --summary nor --count

``bench``::

    {"format": 1, "command": "bench", "runs": int,
     "results": [{"name": str, "runs": int, "median_s": num, "min_s": num, "max_s": num}]}

``explore``::

    {"format": 1, "command": "explore", "universe": str, "depth": int,
     "policies": [{"policy": POLICY, "mutations": [str], "states": int, "transitions": int,
                   "elapsed_s": num, "states_per_s": num, "complete": bool,
                   "violations": {NAME: {"count": int, "depth": int, "actions": [str], "messages": [str],
                                         "steps": [{"action": str, "result": str, "changes": [str]}],
                                         "traces": {FUNCTION: [{"kind": str, "detail": str}]}}},
                   "concurrent": [{"after": [str], "together": [str], "runs": int, "complete": bool,
                                   "elapsed_s": num, "outcomes": [...],
                                   "bad": [{"kind", "detail", "order", "schedule",
                                            "segments": [{"task", "points", "from", "to"}],
                                            "traces": {FUNCTION: [...]}, "results"}]}]}],
     "mutation_score": null | {"killed": int, "total": int, "per": {"POLICY:MUTATION": {...}}}}

  (``explore all``: ``"universes": [{"universe", "depth", "policies"}]`` instead of the first three.)
  ``bench --explore DEPTH`` adds ``"explore": [{"universe", "policy", "depth", "states",
  "transitions", "elapsed_s", "states_per_s", "peak_mib", "workers", "workers_states_per_s"}]``.

``preflight``::

    {"format": 1, "command": "preflight", "snapshot": str, "kernel": str, "policy": POLICY,
     "policy_from": "kernel build" | "option", "validated": bool,
     "build": {"release": str, "version": str | null, "uname_v": str | null, "how": str | null},
     "notes": [str], "questions": [{"text": str, "options": [str]}], "ok": bool,
     "variants": [{"label": str, "replay": [{"action", "why", "result"}], "replay_ok": bool,
                   "mismatches": [str],
                   "actions": [{"index", "action", "step", "result", "why", "changes": [str],
                                "calls": [{"function", "body", "programs", "hooks", "warnings",
                                           "unmodelled"}], "broken": [str], "events": [str],
                                "safe": bool}]}]}

  ``validated``: the policy was checked on the snapshot's exact build (``uname -r`` + the Debian
  version of ``uname -v``); ``build.how``: the registry's word for the build when the policy stands
  for it (validated or read only), null when it was forced with ``--policy`` on another build.

``policies``::

    {"format": 1, "command": "policies", "default": POLICY,
     "policies": [{"name": POLICY, "kernel": str, "description": str, "package": str, "variant": bool,
                   "default": bool, "kernel_series": str | null, "versions": [str, str] | null,
                   "changes": [{"id": CHANGE, "title": str, "releases": [str]}], "mutations": [MUTATION],
                   "builds": [{"release": str, "version": str, "validated": bool, "how": str}]}]}

``oracle`` -- ``"action"`` names the subcommand (``setup``, ``run``, ``diff``, ``gen``); the rest of
the document is that action's (described in :mod:`ftlab.cli.oracle`) and is left open here.

``schema``::

    {"format": 1, "command": "schema", "schema": {...}}   # the scenario file JSON Schema

``POLICY``, ``CHANGE`` and ``MUTATION`` are names of the registry (:mod:`ftlab.model.policies.registry`); ``ARCH`` an
arch profile's name (:mod:`ftlab.model.arch`); ``EXPECT_FIELD`` a field of a step's ``expect``.

The schemas are plain dicts and importing this module needs nothing beyond the standard
library and the model's registries; :func:`validate` imports ``jsonschema`` (a test dependency, the ``test`` extra) when
called. ftlab itself never validates its output at run time.
"""

from __future__ import annotations

from typing import Any

from .model.arch import ARCHES as _ARCH_PROFILES
from .model.policies.registry import CHANGES, MUTATIONS, policy_names

DRAFT = "https://json-schema.org/draft/2020-12/schema"
POLICIES = policy_names(variants=True)
ARCHES = list(_ARCH_PROFILES)
EXPECT_FIELDS = ["result", "body", "programs", "retval", "events", "text", "contains", "warnings",
                 "ftrace_dead", "invariant"]
MATCH_TYPES = ["MATCH_FULL", "MATCH_FRONT_ONLY", "MATCH_MIDDLE_ONLY", "MATCH_END_ONLY", "MATCH_GLOB",
               "MATCH_INDEX"]
SHOW_VIEWS = ["enabled_functions", "livepatch", "ops", "direct_functions", "trampolines", "locks"]

_POS = {"type": "integer", "minimum": 1}
_NAT = {"type": "integer", "minimum": 0}
_STRS = {"type": "array", "items": {"type": "string"}}


def _obj(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed object: every property required except ``optional``."""
    return {"type": "object", "properties": properties,
            "required": [k for k in properties if k not in optional], "additionalProperties": False}


def _document(command: str, properties: dict[str, Any], optional: tuple[str, ...] = (),
              **extra: Any) -> dict[str, Any]:
    doc = _obj({"format": {"const": 1}, "command": {"const": command}, **properties}, optional)
    return {"$schema": DRAFT, "title": f"ftlab {command} --json", **doc, **extra}


_TRACE = _obj({
    "function": {"type": "string"},
    "body": {"type": ["string", "null"]},
    "programs": _STRS,
    "retval": {"type": "integer"},
    "events": {"type": "array", "items": _obj({"kind": {"type": "string"}, "detail": {"type": "string"}})},
    "warnings": _STRS,
})

_RUN_STEP = _obj({
    "index": _POS,
    "line": _POS,
    "action": {"type": "string", "minLength": 1},
    "result": {"type": "string", "pattern": r"^(ok|Oops|E[A-Z0-9]+|-?[0-9]+|[^\n]+: [^\n]+)$"},
    "changes": _STRS,
    "changes_omitted": _NAT,
    "trace": {"anyOf": [{"type": "null"}, _TRACE]},
    "view": {"type": ["string", "null"]},
    "events": _STRS,
    "ftrace_dead": {"type": "boolean"},
    "expect_ok": {"type": "boolean"},
    "failures": {"type": "array", "items": _obj({"field": {"enum": EXPECT_FIELDS}, "expected": {}, "got": {}})},
})

_RUN_LIST = _obj({
    "format": {"const": 1}, "command": {"const": "run"},
    "scenarios": {"type": "array", "minItems": 1,
                  "items": _obj({"name": {"type": "string", "minLength": 1}, "description": {"type": "string"}})},
})

_RUN_RESULT = _obj({
    "format": {"const": 1}, "command": {"const": "run"},
    "source": {"type": "string"},
    "policy": {"enum": POLICIES},
    "arch": {"enum": ARCHES},
    "ok": {"type": "boolean"},
    "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
})

RUN: dict[str, Any] = {
    "$schema": DRAFT, "title": "ftlab run --json",
    "$defs": {"step": _RUN_STEP},
    "oneOf": [_RUN_LIST, _RUN_RESULT],
}

SHOW: dict[str, Any] = _document("show", {
    "source": {"type": "string"},
    "policy": {"enum": POLICIES},
    "arch": {"enum": ARCHES},
    "at": _NAT,
    "views": _obj({v: {"type": "string"} for v in SHOW_VIEWS}),
})

_CELL = {
    "type": "object",
    "properties": {"result": {"type": "string"}, "warnings": _NAT, "ftrace_dead": {"type": "boolean"},
                   "kills_ftrace": {"type": "boolean"}, "body": {"type": ["string", "null"]}, "programs": _STRS,
                   "retval": {"type": "integer"}},
    "required": ["result", "warnings", "ftrace_dead", "kills_ftrace"],
    "dependentRequired": {"body": ["programs", "retval"], "programs": ["body", "retval"],
                          "retval": ["body", "programs"]},
    "additionalProperties": False,
}

COMPARE: dict[str, Any] = _document("compare", {
    "source": {"type": "string"},
    "policies": {"type": "array", "items": {"enum": POLICIES}, "minItems": 1, "uniqueItems": True},
    "agree": {"type": "boolean"},
    "steps": {"type": "array", "items": _obj({
        "index": _POS,
        "line": _POS,
        "action": {"type": "string"},
        "cells": {"type": "object", "propertyNames": {"enum": POLICIES},
                  "additionalProperties": {"anyOf": [{"type": "null"}, _CELL]}},
        "differs": {"type": "boolean"},
    })},
})

CATALOGUE: dict[str, Any] = _document("catalogue", {
    "catalogue": _obj({"source": {"type": "string"}, "records": _NAT, "unique_names": _NAT,
                       "duplicate_names": _NAT, "invalid_records": _NAT}),
    "filters": _obj({
        "glob": {"anyOf": [{"type": "null"}, _obj({"token": {"type": "string", "minLength": 1},
                                                   "type": {"enum": MATCH_TYPES},
                                                   "search": {"type": "string"},
                                                   "module": {"type": ["string", "null"]},
                                                   "negate": {"type": "boolean"}})]},
        "grep": {"type": ["string", "null"]},
    }),
    "count": _NAT,
    "records": {"type": "array", "items": _obj({"index": _NAT, "ip": {"type": "string", "pattern": "^0x[0-9a-f]+$"},
                                                "name": {"type": "string", "minLength": 1},
                                                "module": {"type": ["string", "null"]},
                                                "invalid": {"type": "boolean"}})},
    "truncated": {"type": "boolean"},
}, optional=("records", "truncated"), dependentRequired={"records": ["truncated"], "truncated": ["records"]})

BENCH: dict[str, Any] = _document("bench", {
    "runs": _NAT,
    "results": {"type": "array", "items": _obj({
        "name": {"type": "string", "minLength": 1},
        "runs": _POS,
        "median_s": {"type": "number", "minimum": 0},
        "min_s": {"type": "number", "minimum": 0},
        "max_s": {"type": "number", "minimum": 0},
    })},
    "explore": {"type": "array", "items": _obj({
        "universe": {"type": "string"}, "policy": {"enum": POLICIES}, "depth": _NAT, "states": _NAT,
        "transitions": _NAT, "elapsed_s": {"type": "number", "minimum": 0},
        "states_per_s": {"type": "number", "minimum": 0}, "peak_mib": {"type": "number", "minimum": 0},
        "workers": {"type": "integer", "minimum": 1}, "workers_states_per_s": {"type": "number", "minimum": 0},
    })},
}, optional=("explore",))

_TRACES = {"type": "object", "additionalProperties": {"type": "array", "items": _obj({
    "kind": {"type": "string"}, "detail": {"type": "string"}})}}
_VIOLATION = _obj({
    "count": _NAT, "depth": _NAT, "actions": _STRS, "messages": _STRS,
    "steps": {"type": "array", "items": _obj({"action": {"type": "string"}, "result": {"type": "string"},
                                              "changes": _STRS})},
    "traces": _TRACES,
})
_GROUP = _obj({
    "after": _STRS, "together": _STRS, "runs": _NAT, "complete": {"type": "boolean"},
    "elapsed_s": {"type": "number", "minimum": 0},
    "outcomes": {"type": "array", "items": _obj({
        "results": {"type": "object", "additionalProperties": {"type": "string"}},
        "deadlock": {"type": "boolean"}, "livelock": {"type": "boolean"},
        "error": {"type": ["string", "null"]}, "runs": _POS})},
    "bad": {"type": "array", "items": _obj({
        "kind": {"enum": ["deadlock", "livelock", "model_error", "invariant"]}, "detail": {"type": "string"},
        "order": _STRS, "schedule": {"type": "array", "items": _NAT},
        "segments": {"type": "array", "items": _obj({"task": {"type": "string"}, "points": _POS,
                                                     "from": {"type": "string"}, "to": {"type": "string"}})},
        "traces": _TRACES,
        "results": {"type": "object", "additionalProperties": {"type": "string"}}})},
})
_EXPLORE_POLICY = _obj({
    "policy": {"enum": POLICIES}, "mutations": _STRS, "states": _NAT, "transitions": _NAT,
    "elapsed_s": {"type": "number", "minimum": 0}, "states_per_s": {"type": "number", "minimum": 0},
    "complete": {"type": "boolean"},
    "violations": {"type": "object", "additionalProperties": _VIOLATION},
    "concurrent": {"type": "array", "items": _GROUP},
})
_SCORE = {"anyOf": [{"type": "null"}, _obj({
    "killed": _NAT, "total": _NAT,
    "per": {"type": "object", "additionalProperties": _obj({"killed": {"type": "boolean"},
                                                             "new_violations": _STRS})}})]}
_UNIVERSE_REPORT = {"universe": {"type": "string"}, "depth": _NAT,
                    "policies": {"type": "array", "items": _EXPLORE_POLICY}}
EXPLORE: dict[str, Any] = _document("explore", {
    **_UNIVERSE_REPORT,
    "universes": {"type": "array", "items": _obj(_UNIVERSE_REPORT)},
    "mutation_score": _SCORE,
}, optional=("universe", "depth", "policies", "universes"))

SCHEMA: dict[str, Any] = _document("schema", {"schema": {"type": "object"}})

#: command -> JSON Schema of its ``--json`` document.
_PREFLIGHT_CALL = _obj({"function": {"type": "string"}, "body": {"type": ["string", "null"]}, "programs": _STRS,
                        "hooks": _STRS, "warnings": _STRS, "unmodelled": _STRS})
_PREFLIGHT_ACTION = _obj({
    "index": _POS, "action": {"type": "string"}, "step": {"type": "string"},
    "result": {"type": "string"}, "why": {"type": ["string", "null"]}, "changes": _STRS,
    "calls": {"type": "array", "items": _PREFLIGHT_CALL}, "broken": _STRS, "events": _STRS,
    "safe": {"type": "boolean"}})
PREFLIGHT: dict[str, Any] = _document("preflight", {
    "snapshot": {"type": "string"}, "kernel": {"type": "string"}, "policy": {"enum": POLICIES},
    "policy_from": {"enum": ["kernel build", "option"]}, "validated": {"type": "boolean"},
    "build": _obj({"release": {"type": "string"}, "version": {"type": ["string", "null"]},
                   "uname_v": {"type": ["string", "null"]}, "how": {"type": ["string", "null"]}}),
    "notes": _STRS, "questions": {"type": "array", "items": _obj({"text": {"type": "string"}, "options": _STRS})},
    "ok": {"type": "boolean"},
    "variants": {"type": "array", "items": _obj({
        "label": {"type": "string"},
        "replay": {"type": "array", "items": _obj({"action": {"type": "string"}, "why": {"type": ["string", "null"]},
                                                   "result": {"type": "string"}})},
        "replay_ok": {"type": "boolean"}, "mismatches": _STRS,
        "actions": {"type": "array", "items": _PREFLIGHT_ACTION}})},
})
POLICIES_DOC: dict[str, Any] = _document("policies", {
    "default": {"enum": POLICIES},
    "policies": {"type": "array", "items": _obj({
        "name": {"enum": POLICIES}, "kernel": {"type": "string"}, "description": {"type": "string"},
        "package": {"type": "string"}, "variant": {"type": "boolean"}, "default": {"type": "boolean"},
        "kernel_series": {"type": ["string", "null"]},
        "versions": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"},
                                                  "minItems": 2, "maxItems": 2}]},
        "changes": {"type": "array", "items": _obj({"id": {"enum": list(CHANGES)}, "title": {"type": "string"},
                                                    "releases": _STRS})},
        "mutations": {"type": "array", "items": {"enum": list(MUTATIONS)}},
        "builds": {"type": "array", "items": _obj({"release": {"type": "string"}, "version": {"type": "string"},
                                                   "validated": {"type": "boolean"}, "how": {"type": "string"}})},
    })},
})
ORACLE: dict[str, Any] = {"$schema": DRAFT, "title": "ftlab oracle --json", "type": "object",
                          "properties": {"format": {"const": 1}, "command": {"const": "oracle"},
                                         "action": {"enum": ["setup", "run", "diff", "gen"]}},
                          "required": ["format", "command", "action"]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "run": RUN, "show": SHOW, "compare": COMPARE, "catalogue": CATALOGUE, "bench": BENCH, "schema": SCHEMA,
    "explore": EXPLORE, "preflight": PREFLIGHT, "policies": POLICIES_DOC, "oracle": ORACLE,
}


def validate(doc: Any) -> None:
    """Check ``doc`` against the schema of the command it names.

    Raises ``jsonschema.ValidationError`` when it does not match (or names no known command),
    ``jsonschema.SchemaError`` if a schema here is itself invalid. Needs ``jsonschema``.
    """
    import jsonschema

    command = doc.get("command") if isinstance(doc, dict) else None
    schema = SCHEMAS.get(command) if isinstance(command, str) else None
    if schema is None:
        raise jsonschema.ValidationError(f"'command' names no known ftlab command: {command!r} "
                                         f"(known: {', '.join(SCHEMAS)})")
    validator_cls = jsonschema.Draft202012Validator
    validator_cls.check_schema(schema)
    validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER).validate(doc)
