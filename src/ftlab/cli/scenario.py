"""Scenario subcommands: ``ftlab run``, ``ftlab show``, ``ftlab compare``, ``ftlab schema``.

JSON documents (``--json``), format 1:

* ``run``: ``{"format": 1, "command": "run", "source", "policy", "arch", "ok", "steps": [step...]}``
  where a step is ``{"index", "line", "action", "result", "changes": [enabled_functions line
  or "- name"], "trace": null | {"function", "body", "programs", "retval", "events": [{"kind",
  "detail"}], "warnings"}, "view": null | text, "events": [kernel event], "expect_ok",
  "failures": [{"field", "expected", "got"}]}``.
* ``show``: ``{"format": 1, "command": "show", "source", "policy", "arch", "at", "views":
  {"enabled_functions", "livepatch", "ops", "direct_functions", "trampolines", "locks"}}``.
* ``compare``: ``{"format": 1, "command": "compare", "source", "policies": [...], "agree",
  "steps": [{"index", "line", "action", "cells": {policy: {"result", "body", "programs",
  "retval"}}, "differs"}]}``.
* ``list`` (``ftlab run`` without a file): ``{"format": 1, "command": "run", "scenarios":
  [{"name", "description"}]}``.
* ``schema --json``: ``{"format": 1, "command": "schema", "schema": {...}}`` (without ``--json``
  the scenario JSON Schema alone).

Their JSON Schemas are in :mod:`ftlab.output_schemas`.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from typing import Any

from ..actions import show_view
from ..bundled import bundled, resolve
from ..errors import InputError
from ..model.arch import ARCHES
from ..model.policies import policy_names
from ..scenario import load_scenario
from ..scenario.compare import compare
from ..scenario.runner import CHANGES_LIMIT, RunResult, run_scenario
from ..scenario.schema import Scenario
from ._base import Output, Subcommand, add_json_option, json_document, rich_table, use_rich


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", metavar="FILE|NAME",
                   help="a scenario file, the name of a bundled one, or oracle/NAME (examples/oracle); "
                        "none: list the bundled ones")
    p.add_argument("--policy", choices=policy_names(variants=True), help="run under this policy instead of the file's")
    p.add_argument("--arch", choices=list(ARCHES), help="override the arch")
    p.add_argument("--full", action="store_true",
                   help=f"list every changed record and every line of a view (default: at most "
                        f"{TEXT_LINES} of each per step in text, {CHANGES_LIMIT} changed records in JSON)")
    add_json_option(p)


def cmd_run(args: argparse.Namespace) -> Output:
    """``ftlab run``: exit 0 when every expectation holds, 1 when one does not, 2 for bad input."""
    if args.scenario is None:
        items = []
        for name, entry in bundled().items():
            with resources.as_file(entry) as path:
                scenario, _ = load_scenario(path)
            items.append({"name": name, "description": scenario.description})
        if args.json:
            return Output(json_document("run", scenarios=items))
        width = max(len(i["name"]) for i in items)
        return Output("".join(f"{i['name']:<{width}}  {i['description']}\n" for i in items))
    scenario, lines, source = resolve(args.scenario)
    result = run_scenario(scenario, lines, source, policy=args.policy, arch=args.arch,
                          changes_limit=None if args.full else CHANGES_LIMIT)
    status = 0 if result.ok else 1
    if args.json:
        return Output(json_document("run", **result.as_dict()), status)
    return Output(render_run(result, scenario, None if args.full else TEXT_LINES), status)


#: How many changed records and view lines ``ftlab run`` prints per step unless ``--full``.
TEXT_LINES = 20


def _bounded(lines: list[str], limit: int | None, more: int = 0,
             what: str = "records") -> tuple[list[str], str | None]:
    """``lines`` cut to ``limit``, and a line saying how many more there are (``more``: beyond the list)."""
    extra = more + (len(lines) - limit if limit is not None and len(lines) > limit else 0)
    shown = lines if limit is None else lines[:limit]
    return shown, (f"... {extra} more {what} (--full lists them)" if extra else None)


def render_run(result: RunResult, scenario: Scenario, limit: int | None = None) -> str:
    """Human output of a run: per step the result, what changed, the call trace, failed expectations
    (``limit``: at most so many changed records and view lines per step)."""
    out = [f"scenario: {result.source} (policy {result.policy}, arch {result.arch})\n"]
    if scenario.description:
        out.append(f"  {scenario.description}\n")
    for s in result.steps:
        mark = "" if s.ok else "   <-- expectation failed"
        out.append(f"[{s.index}] line {s.line}: {s.action}: {s.result}{mark}\n")
        changes, more = _bounded(s.changes, limit, s.changes_omitted)
        out.extend(f"    record: {c}\n" for c in changes)
        if more:
            out.append(f"    {more}\n")
        for e in s.events:
            out.append(f"    kernel: {e}\n")
        if s.trace is not None:
            t = s.trace
            out.append(f"    runs: body={t['body']} programs={t['programs']} retval={t['retval']}\n")
            for ev in t["events"]:
                out.append(f"      {ev['kind']}: {ev['detail']}\n" if ev["detail"] else f"      {ev['kind']}\n")
        if s.view is not None:
            view, more = _bounded(s.view.splitlines() or ["(empty)"], limit, what="lines")
            out.extend(f"    | {line}\n" for line in view)
            if more:
                out.append(f"    {more}\n")
        for f in s.failures:
            out.append(f"    expected {f['field']}: {f['expected']!r}\n    got      {f['field']}: {f['got']!r}\n")
    nfail = sum(1 for s in result.steps if not s.ok)
    out.append(f"{len(result.steps)} steps; " + ("all expectations hold\n" if not nfail else
                                                  f"{nfail} step(s) with failed expectations\n"))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# ftlab show
# ---------------------------------------------------------------------------------------------
SHOW_VIEWS = ("enabled_functions", "livepatch", "ops", "direct_functions", "trampolines", "locks")


def _configure_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="FILE|NAME")
    p.add_argument("--at", type=int, metavar="STEP", help="the state after this step (1-based; default: the last)")
    p.add_argument("--policy", choices=policy_names(variants=True))
    p.add_argument("--arch", choices=list(ARCHES))
    add_json_option(p)


def cmd_show(args: argparse.Namespace) -> Output:
    scenario, lines, source = resolve(args.scenario)
    n = len(scenario.steps)
    at = n if args.at is None else args.at
    if not 0 <= at <= n:
        raise InputError(f"step {at} out of range (the scenario has {n} steps)", "--at")
    result = run_scenario(scenario, lines, source, policy=args.policy, arch=args.arch, until=at)
    k = result.kernel
    texts = {v: show_view(k, v) for v in SHOW_VIEWS}
    if args.json:
        return Output(json_document("show", source=source, policy=result.policy, arch=result.arch,
                                    at=at, views=texts))
    out = [f"scenario: {source} (policy {result.policy}, arch {result.arch}), state after step {at} of {n}\n"]
    titles = {"enabled_functions": "/sys/kernel/tracing/enabled_functions",
              "livepatch": "/sys/kernel/livepatch", "ops": "ftrace_ops_list (head first)",
              "direct_functions": "direct_functions", "trampolines": "BPF trampolines",
              "locks": "held locks"}
    for v in SHOW_VIEWS:
        out.append(f"\n== {titles[v]}\n")
        out.append(texts[v] if texts[v] else "(empty)\n")
    return Output("".join(out))


# ---------------------------------------------------------------------------------------------
# ftlab compare
# ---------------------------------------------------------------------------------------------
def _configure_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="FILE|NAME")
    p.add_argument("--policies", default=",".join(policy_names()),
                   help="comma-separated policies (default: all)")
    p.add_argument("--arch", choices=list(ARCHES))
    add_json_option(p)


def _cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "(not run)"
    if "body" in cell:
        text = f"body={cell['body']} progs={','.join(cell['programs']) or '-'}"
    else:
        text = cell["result"]
    if cell.get("warnings"):
        text += f" WARN×{cell['warnings']}" if cell["warnings"] > 1 else " WARN"
    if cell.get("kills_ftrace"):
        text += ", kills ftrace"
    return text


def cmd_compare(args: argparse.Namespace) -> Output:
    """``ftlab compare``: exit 0 when every policy gives the same results, 1 when they differ."""
    policies = list(dict.fromkeys(p.strip() for p in args.policies.split(",") if p.strip()))
    if not policies:
        raise InputError("give at least one policy", "--policies")
    for p in policies:
        if p not in policy_names(variants=True):
            raise InputError(f"unknown policy {p!r} (known: {', '.join(policy_names(variants=True))})", "--policies")
    scenario, lines, source = resolve(args.scenario)
    comparison = compare(scenario, lines, source, policies, args.arch)
    rows, agree = comparison.rows, comparison.agree
    status = 0 if agree else 1
    if args.json:
        return Output(json_document("compare", source=source, policies=policies, agree=agree, steps=rows),
                      status)
    if use_rich(len(rows)):
        table_rows = [[str(r["index"]), r["action"]] +
                      [("[bold red]" if r["differs"] else "") + _cell_text(r["cells"][p]) for p in policies]
                      for r in rows]
        text = rich_table(["#", "step", *policies], table_rows, title=f"{source}")
    else:
        w = max(len(r["action"]) for r in rows)
        cw = {p: max(len(p), *(len(_cell_text(r["cells"][p])) for r in rows)) for p in policies}
        text = f"{'':2}{'#':>3}  {'step':<{w}}  " + "  ".join(f"{p:<{cw[p]}}" for p in policies) + "\n"
        for r in rows:
            mark = "* " if r["differs"] else "  "
            text += f"{mark}{r['index']:>3}  {r['action']:<{w}}  " + "  ".join(
                f"{_cell_text(r['cells'][p]):<{cw[p]}}" for p in policies) + "\n"
    text += ("all policies agree\n" if agree else "* marks steps where the policies differ\n")
    return Output(text, status)


# ---------------------------------------------------------------------------------------------
# ftlab schema
# ---------------------------------------------------------------------------------------------
def _configure_schema(p: argparse.ArgumentParser) -> None:
    add_json_option(p)


def cmd_schema(args: argparse.Namespace) -> Output:
    """The schema itself; with ``--json``, wrapped like every command's document: ``{"format": 1,
    "command": "schema", "schema": {...}}``."""
    schema = Scenario.model_json_schema()
    if args.json:
        return Output(json_document("schema", schema=schema))
    return Output(json.dumps(schema, indent=2) + "\n")


SUBCOMMANDS = (
    Subcommand("run", "run a scenario step by step and check its expectations",
               configure=_configure_run, run=cmd_run),
    Subcommand("show", "the full model state after a step of a scenario",
               configure=_configure_show, run=cmd_show),
    Subcommand("compare", "run one scenario under several policies, side by side",
               configure=_configure_compare, run=cmd_compare),
    Subcommand("schema", "print the JSON Schema of scenario files",
               configure=_configure_schema, run=cmd_schema),
)
