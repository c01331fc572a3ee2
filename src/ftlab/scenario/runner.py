"""Run a scenario on the model, step by step, and check its expectations.

The runner is a shell: it builds a :class:`~ftlab.model.kernel.Kernel` from the scenario's kernel
section, applies each step through the action seam (:mod:`ftlab.actions`: live patching, BPF,
kprobes, the function tracer, the plain direct client, ``call``, views) and records, per step,
the kernel's answer, which records changed (as enabled_functions lines), the call trace, the
view text, and the expectations that did not hold. Names are checked against the catalogue
before anything runs, so bad input never leaves a half-run scenario behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import actions, catalogues
from ..actions import Expect, RunContext
from ..errors import InputError, KernelOops
from ..model.catalogue import Catalogue
from ..model.errno import errno_name, parse_errno
from ..model.invariants import check_all
from ..model.kernel import Kernel
from ..model.policies import get_policy
from .schema import KernelSpec, Scenario

Path_ = tuple[Any, ...]


@dataclass
class StepResult:
    """What one step did."""

    index: int
    line: int
    action: str
    result: str                     # "ok", an errno name, or "Oops"
    changes: list[str] = field(default_factory=list)
    trace: dict[str, Any] | None = None
    view: str | None = None
    events: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    ftrace_dead: bool = False        # ftrace is dead after the step (ftrace_kill has run)
    changes_omitted: int = 0         # changed records not listed in ``changes`` (the run's limit)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "line": self.line, "action": self.action, "result": self.result,
                "changes": self.changes, "changes_omitted": self.changes_omitted, "trace": self.trace,
                "view": self.view,
                "events": self.events, "ftrace_dead": self.ftrace_dead, "expect_ok": self.ok,
                "failures": self.failures}


@dataclass
class RunResult:
    """A whole run: the kernel it ran on, and each step."""

    source: str
    policy: str
    arch: str
    steps: list[StepResult]
    kernel: Kernel

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "policy": self.policy, "arch": self.arch, "ok": self.ok,
                "steps": [s.as_dict() for s in self.steps]}


# ---------------------------------------------------------------------------------------------
# Kernel and name checks
# ---------------------------------------------------------------------------------------------
def build_kernel(spec: KernelSpec, source: str, lines: dict[Path_, int], policy: str | None = None,
                 arch: str | None = None) -> Kernel:
    """The kernel a scenario asks for (``policy``/``arch`` override the file's)."""
    cat_spec = spec.catalogue
    where = f"{source}:{lines.get(('kernel', 'catalogue'), lines.get(('kernel',), 1))}"
    if isinstance(cat_spec, list):
        try:
            cat = Catalogue.synthetic(cat_spec)
        except InputError as e:
            raise InputError(e.message, where) from None
    elif cat_spec in ("embedded", "oracle-guest"):
        cat = catalogues.named(cat_spec, policy or spec.policy)
    else:
        try:
            cat = catalogues.from_file(cat_spec)
        except InputError as e:  # point at the scenario's line; the message keeps the catalogue's place
            raise InputError(f"kernel.catalogue: {e}", where) from None
    return Kernel(cat, policy=get_policy(policy or spec.policy, spec.mutations), arch=arch or spec.arch)


def check_names(scenario: Scenario, cat: Catalogue, source: str, lines: dict[Path_, int]) -> None:
    """Every function a step names must be in the catalogue (with a valid sympos); every detach
    or remove must refer to something attached by an earlier step (:func:`ftlab.actions.check_names`)."""
    actions.check_names(scenario.steps, cat, lambda i: f"{source}:{lines.get(('steps', i), 1)}")


def check_expect(expect: Expect | None, result: str, trace: dict[str, Any] | None, view: str | None,
                 k: Kernel) -> list[dict[str, Any]]:
    """The expectations of a step that do not hold: (field, expected, got)."""
    if expect is None:
        return []
    fails = []

    def want(fieldname: str, expected: Any, got: Any) -> None:
        if expected is not None and expected != got:
            fails.append({"field": fieldname, "expected": expected, "got": got})

    # the schema accepts what parse_errno accepts ("EBUSY", "ebusy", "-16", "16", "0", "ok"):
    # compare in errno_name's spelling, which is the step's result
    want("result", errno_name(parse_errno(expect.result)) if expect.result is not None else None, result)
    for f in ("body", "programs", "retval"):
        v = getattr(expect, f)
        if v is not None:
            want(f, v, trace.get(f) if trace else None)
    if expect.events is not None:
        want("events", expect.events, [e["kind"] for e in trace["events"]] if trace else None)
    if expect.text is not None:
        want("text", expect.text, view)
    if expect.contains is not None:
        have = (view or "").splitlines()
        for line in expect.contains:
            if not any(line in h for h in have):
                fails.append({"field": "contains", "expected": line, "got": view})
    want("warnings", expect.warnings, len(k.warnings))
    want("ftrace_dead", expect.ftrace_dead, k.ftrace_disabled)
    return fails


#: How many changed records a step lists by default (a global tracer changes every record).
CHANGES_LIMIT = 200


def run_scenario(scenario: Scenario, lines: dict[Path_, int], source: str, *, policy: str | None = None,
                 arch: str | None = None, until: int | None = None,
                 changes_limit: int | None = CHANGES_LIMIT) -> RunResult:
    """Run ``scenario`` (up to and including step ``until``, 1-based) and check its expectations.
    Each step lists at most ``changes_limit`` changed records (None: all) and counts the rest."""
    k = build_kernel(scenario.kernel, source, lines, policy, arch)
    check_names(scenario, k.cat, source, lines)
    run = RunContext(k)
    results = []
    for i, step in enumerate(scenario.steps):
        if until is not None and i >= until:
            break
        before = dict(k.recs)
        nev = len(k.events)
        trace = view = None
        try:
            ret, trace, view = run.apply(step)
            result = errno_name(ret) if isinstance(ret, int) else ret
        except KernelOops:
            result = "Oops"
        except InputError as e:
            raise InputError(e.message, f"{source}:{lines.get(('steps', i), 1)}") from None
        changes = actions.record_changes(k, before, changes_limit)
        omitted = (actions.count_record_changes(k, before) - len(changes)
                   if changes_limit is not None and len(changes) == changes_limit else 0)
        sr = StepResult(i + 1, lines.get(("steps", i), 1), actions.describe(step), result,
                        changes, trace, view, [str(e) for e in k.events[nev:]],
                        ftrace_dead=k.ftrace_disabled, changes_omitted=omitted)
        sr.failures = check_expect(step.expect, result, trace, view, k)
        if scenario.check_invariants:
            if result.startswith(("deadlock:", "livelock:", "error:")):
                sr.failures.append({"field": "invariant", "expected": "holds", "got": result})
            sr.failures.extend({"field": "invariant", "expected": "holds", "got": msg}
                               for msg in check_all(k))
        results.append(sr)
        if result == "Oops":
            break
    return RunResult(source, k.policy.name, k.arch.name, results, k)
