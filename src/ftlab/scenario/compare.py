"""One scenario under several policies (and arch profiles), side by side: the Python API of ``ftlab compare``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model.policies import policy_names
from .runner import Path_, RunResult, run_scenario
from .schema import Scenario


@dataclass
class Comparison:
    """Per step, each policy's cell (result; for a call also body, programs, retval)."""

    policies: list[str]
    rows: list[dict[str, Any]]
    runs: dict[str, RunResult]

    @property
    def agree(self) -> bool:
        return not any(r["differs"] for r in self.rows)


def cell(step: Any, dead_before: bool = False) -> dict[str, Any]:
    """What a step did, in the terms compared across policies: its result, the WARNs it raised and
    whether ftrace is dead after it; for a call also the body that ran, the programs and the value."""
    c: dict[str, Any] = {"result": step.result, "warnings": sum(e.startswith("WARN") for e in step.events),
                         "ftrace_dead": step.ftrace_dead, "kills_ftrace": step.ftrace_dead and not dead_before}
    if step.trace is not None:
        c.update(body=step.trace["body"], programs=step.trace["programs"], retval=step.trace["retval"])
    return c


def compare(scenario: Scenario, lines: dict[Path_, int] | None = None, source: str = "<scenario>",
            policies: Sequence[str] | None = None, arch: str | None = None) -> Comparison:
    """Run ``scenario`` under each of ``policies`` (default: all) and line the steps up."""
    lines = lines or {}
    pols = list(policies) if policies is not None else policy_names()
    runs = {p: run_scenario(scenario, lines, source, policy=p, arch=arch) for p in pols}
    rows = []
    first = next(iter(runs.values()))
    for i in range(len(scenario.steps)):
        cells = {p: (cell(r.steps[i], i > 0 and r.steps[i - 1].ftrace_dead) if i < len(r.steps) else None)
                 for p, r in runs.items()}
        differs = len({json.dumps(c, sort_keys=True) for c in cells.values()}) > 1
        action = next((r.steps[i].action for r in runs.values() if i < len(r.steps)), "")
        rows.append({"index": i + 1, "line": lines.get(("steps", i), 1), "action": action,
                     "cells": cells, "differs": differs})
    del first
    return Comparison(pols, rows, runs)
