"""From scenario files to the agent's plan: low-level steps and the modules they need.

The plan is plain JSON (the agent imports nothing from ftlab). Each scenario step becomes one
agent step (``op`` plus what the agent needs: module names and paths, BTF-resolved targets, the
user-space action of a call). Every module a scenario needs is generated here
(:mod:`ftlab.oracle.modgen`) and built once for the whole run. Names are checked first, so a
scenario the oracle cannot replay is refused with ``FILE:LINE`` before anything is built or
booted (:class:`~ftlab.errors.InputError`).

``touched`` is the set of functions whose enabled_functions records the oracle (and the model
side of the diff) report after every step: every function a step names, plus tracer filter
tokens that are plain names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import actions
from ..actions import BpfStep, CallStep, DirectStep, KprobeStep, LivepatchStep, OpsStep
from ..errors import InputError
from ..model.catalogue import sym_name
from ..scenario.schema import Scenario
from . import kernels
from .kernels import KernelSeries
from .modgen import ModuleSource, direct_module, kprobe_module, livepatch_module, ops_module
from .targets import CALLABLE, DIRECT_TRAMPS


@dataclass
class PlannedScenario:
    """One scenario as the agent runs it, and the modules it needs."""

    id: str
    source: str
    steps: list[dict[str, Any]]
    touched: list[str]
    modules: list[ModuleSource] = field(default_factory=list)

    def spec(self, ko: dict[str, str], file: str) -> dict[str, Any]:
        """The plan entry: module paths filled in from ``ko`` (module name -> .ko path)."""
        steps = []
        for st in self.steps:
            st = dict(st)
            if "module" in st:
                st["ko"] = ko[st["module"]]
            steps.append(st)
        return {"id": self.id, "source": self.source, "file": file, "touched": self.touched, "steps": steps}


def describe(step: Any) -> str:
    """A step in words, as the model's runner shows it (``StepResult.action``)."""
    return actions.describe(step)


def touched_functions(scenario: Scenario) -> list[str]:
    """Functions whose records are reported after each step, in first-mention order, as
    enabled_functions names them (``name [module]`` for a module's)."""
    seen: dict[str, None] = {}
    for step in scenario.steps:
        for n in actions.reported_names(step):
            seen.setdefault(sym_name(n), None)  # as the record's head reads
    return list(seen)


def plan_scenario(scenario: Scenario, lines: dict, source: str, btf_funcs: dict[str, Any],
                  sid: str | None = None, kernel: KernelSeries | None = None) -> PlannedScenario:
    """Turn ``scenario`` into agent steps for the kernel series ``kernel`` (default 6.1: it decides
    how the direct-call module is written); InputError (``FILE:LINE``) if the oracle cannot
    replay it."""
    kernel = kernel or kernels.get(kernels.DEFAULT)
    steps: list[dict[str, Any]] = []
    modules: list[ModuleSource] = []
    direct_names: dict[str, str] = {}

    def where(i: int) -> str:
        return f"{source}:{lines.get(('steps', i), 1)}"

    if scenario.kernel.arch != "x86_64":
        raise InputError(f"the oracle runs x86_64 only (the scenario asks for {scenario.kernel.arch})",
                         f"{source}:{lines.get(('kernel',), 1)}")
    if scenario.kernel.catalogue not in ("embedded", "oracle-guest"):
        raise InputError("the oracle replays on the real kernel: use the embedded catalogue (or oracle-guest, "
                         "with the guest's modules)", f"{source}:{lines.get(('kernel',), 1)}")
    ctx = _Planning(kernel, btf_funcs, modules, direct_names)
    for i, step in enumerate(scenario.steps):
        planner = PLANNERS.get(actions.kind_of(step).key)
        if planner is None:
            raise InputError(f"the oracle cannot replay {type(step).__name__} steps", where(i))
        st: dict[str, Any] = {"action": describe(step)}
        st.update(planner(ctx, step, where(i)))
        steps.append(st)
    return PlannedScenario(sid or source, source, steps, touched_functions(scenario), modules)


@dataclass
class _Planning:
    """What the planners of one scenario share."""

    kernel: KernelSeries
    btf_funcs: dict[str, Any]
    modules: list[ModuleSource]
    direct_names: dict[str, str]


def _plan_livepatch(ctx: _Planning, step: LivepatchStep, where: str) -> dict[str, Any]:
    if step.livepatch == "disable":
        return {"op": "livepatch_disable", "patch": step.patch}
    if step.hold:
        raise InputError("the oracle cannot hold a task in a live-patched function (hold)", where)
    funcs = []
    for f in step.funcs:
        if f.name not in CALLABLE:
            raise InputError(f"the oracle can live-patch only {', '.join(CALLABLE)} (not {f.name!r})", where)
        if f.sympos > 1:
            raise InputError(f"{f.name!r} is unique: sympos {f.sympos} does not exist", where)
        funcs.append((f.name, f.sympos))
    mod = livepatch_module(step.patch, funcs, replace=step.livepatch == "replace")
    ctx.modules.append(mod)
    return {"op": "livepatch_enable", "patch": step.patch, "module": mod.name,
            "replace": step.livepatch == "replace", "funcs": [f for f, _ in funcs]}


def _plan_bpf(ctx: _Planning, step: BpfStep, where: str) -> dict[str, Any]:
    if step.bpf != "attach":
        return {"op": "bpf_detach", "prog": step.prog}
    assert step.target is not None and step.kind is not None
    if step.target.sympos > 1:
        raise InputError("BPF attaches by BTF id: sympos is not supported", where)
    if step.target.name not in ctx.btf_funcs:
        raise InputError(f"{step.target.name!r} has no BTF in the guest kernel (a BPF program cannot attach to it)",
                         where)
    return {"op": "bpf_attach", "prog": step.prog, "kind": step.kind, "target": step.target.name, "ret": step.ret}


def _plan_kprobe(ctx: _Planning, step: KprobeStep, where: str) -> dict[str, Any]:
    label = step.name or step.target.name
    if step.kprobe != "add":
        return {"op": "kprobe_remove", "label": label}
    if step.target.sympos > 1:
        raise InputError("the oracle's kprobe module names its target by symbol: sympos is not supported", where)
    mod = kprobe_module(label, step.target.name, step.post)
    ctx.modules.append(mod)
    return {"op": "kprobe_add", "label": label, "module": mod.name, "target": step.target.name, "post": step.post}


def _plan_direct(ctx: _Planning, step: DirectStep, where: str) -> dict[str, Any]:
    if step.tramp not in DIRECT_TRAMPS:
        raise InputError(f"the oracle's direct client has trampolines {', '.join(DIRECT_TRAMPS)} "
                         f"(not {step.tramp!r})", where)
    if step.direct == "register" and any(f.sympos > 1 for f in step.targets):
        raise InputError("the oracle's direct module finds its targets by name: sympos is not supported", where)
    if step.direct == "register":
        mod = direct_module(step.name, ctx.kernel.direct_api)
        ctx.modules.append(mod)
        ctx.direct_names[step.name] = mod.name
        return {"op": "direct_register", "name": step.name, "module": mod.name,
                "targets": [f.name for f in step.targets], "tramp": step.tramp}
    if step.direct == "modify":
        return {"op": "direct_modify", "name": step.name, "tramp": step.tramp}
    return {"op": "direct_unregister", "name": step.name}


def _plan_ops(ctx: _Planning, step: OpsStep, where: str) -> dict[str, Any]:
    if step.ops != "register":
        return {"op": "ops_unregister", "name": step.name}
    if any(f.sympos > 1 for f in step.funcs):
        raise InputError("the oracle's ops module filters by name: sympos is not supported", where)
    mod = ops_module(step.name, step.ipmodify, step.save_regs)
    ctx.modules.append(mod)
    return {"op": "ops_register", "name": step.name, "module": mod.name, "targets": [f.name for f in step.funcs]}


def _plan_call(ctx: _Planning, step: CallStep, where: str) -> dict[str, Any]:
    c = CALLABLE.get(step.call)
    if c is None:
        raise InputError(f"the oracle can call only {', '.join(CALLABLE)} (not {step.call!r})", where)
    return {"op": "call", "func": step.call, "how": c.how}


#: How the agent replays each kind of step (the registry's keys; a kind missing here is one the
#: oracle cannot replay, and says so).
PLANNERS: dict[str, Callable[[_Planning, Any, str], dict[str, Any]]] = {
    "livepatch": _plan_livepatch,
    "transition": lambda ctx, step, where: {"op": "transition"},
    "bpf": _plan_bpf,
    "kprobe": _plan_kprobe,
    "tracer": lambda ctx, step, where: {"op": "tracer", "tracer": step.tracer, "filter": list(step.filter),
                                        "notrace": list(step.notrace)},
    "direct": _plan_direct,
    "ops": _plan_ops,
    "call": _plan_call,
    "show": lambda ctx, step, where: {"op": "show", "view": step.show},
}


def btf_subset(btf: dict[str, Any], scenarios: list[PlannedScenario]) -> dict[str, Any]:
    """The part of the kernel's BTF table the plan needs (the BPF targets)."""
    names = {st["target"] for p in scenarios for st in p.steps if st["op"] == "bpf_attach"}
    return {"sha256": btf["sha256"], "funcs": {n: btf["funcs"][n] for n in sorted(names)}}
