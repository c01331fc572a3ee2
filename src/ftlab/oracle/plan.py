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

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..model.catalogue import sym_name
from ..scenario.runner import describe_step
from ..scenario.schema import (BpfStep, CallStep, DirectStep, KprobeStep, LivepatchStep, OpsStep, Scenario, ShowStep,
                               TracerStep, TransitionStep)
from . import kernels
from .kernels import KernelSeries
from .modgen import ModuleSource, direct_module, kprobe_module, livepatch_module, ops_module
from .targets import CALLABLE, DIRECT_TRAMPS

#: ``ops`` steps (a module's own ftrace_ops), where the schema has them.

_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


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
    return describe_step(step)


def touched_functions(scenario: Scenario) -> list[str]:
    """Functions whose records are reported after each step, in first-mention order, as
    enabled_functions names them (``name [module]`` for a module's)."""
    seen: dict[str, None] = {}
    for step in scenario.steps:
        if isinstance(step, LivepatchStep):
            names = [f.name for f in step.funcs]
        elif isinstance(step, (BpfStep, KprobeStep)):
            names = [step.target.name] if step.target is not None else []
        elif isinstance(step, DirectStep):
            names = [f.name for f in step.targets]
        elif isinstance(step, OpsStep):
            names = [f.name for f in step.funcs]
        elif isinstance(step, CallStep):
            names = [step.call]
        elif isinstance(step, TracerStep):
            names = [t for t in step.filter + step.notrace if _PLAIN_NAME.match(t)]
        else:
            names = []
        for n in names:
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

    def need_btf(name: str, i: int) -> None:
        if name not in btf_funcs:
            raise InputError(f"{name!r} has no BTF in the guest kernel (a BPF program cannot attach to it)", where(i))

    if scenario.kernel.arch != "x86_64":
        raise InputError(f"the oracle runs x86_64 only (the scenario asks for {scenario.kernel.arch})",
                         f"{source}:{lines.get(('kernel',), 1)}")
    if scenario.kernel.catalogue not in ("embedded", "oracle-guest"):
        raise InputError("the oracle replays on the real kernel: use the embedded catalogue (or oracle-guest, "
                         "with the guest's modules)", f"{source}:{lines.get(('kernel',), 1)}")
    for i, step in enumerate(scenario.steps):
        st: dict[str, Any] = {"action": describe(step)}
        if isinstance(step, LivepatchStep):
            if step.livepatch == "disable":
                st.update(op="livepatch_disable", patch=step.patch)
            else:
                funcs = []
                for f in step.funcs:
                    if f.name not in CALLABLE:
                        raise InputError(f"the oracle can live-patch only {', '.join(CALLABLE)} (not {f.name!r})",
                                         where(i))
                    if f.sympos > 1:
                        raise InputError(f"{f.name!r} is unique: sympos {f.sympos} does not exist", where(i))
                    funcs.append((f.name, f.sympos))
                mod = livepatch_module(step.patch, funcs, replace=step.livepatch == "replace")
                modules.append(mod)
                st.update(op="livepatch_enable", patch=step.patch, module=mod.name,
                          replace=step.livepatch == "replace", funcs=[f for f, _ in funcs])
        elif isinstance(step, TransitionStep):
            st.update(op="transition")
        elif isinstance(step, BpfStep):
            if step.bpf == "attach":
                assert step.target is not None and step.kind is not None
                if step.target.sympos > 1:
                    raise InputError("BPF attaches by BTF id: sympos is not supported", where(i))
                need_btf(step.target.name, i)
                st.update(op="bpf_attach", prog=step.prog, kind=step.kind, target=step.target.name, ret=step.ret)
            else:
                st.update(op="bpf_detach", prog=step.prog)
        elif isinstance(step, KprobeStep):
            label = step.name or step.target.name
            if step.kprobe == "add":
                mod = kprobe_module(label, step.target.name, step.post)
                modules.append(mod)
                st.update(op="kprobe_add", label=label, module=mod.name, target=step.target.name, post=step.post)
            else:
                st.update(op="kprobe_remove", label=label)
        elif isinstance(step, TracerStep):
            st.update(op="tracer", tracer=step.tracer, filter=list(step.filter), notrace=list(step.notrace))
        elif isinstance(step, DirectStep):
            if step.tramp not in DIRECT_TRAMPS:
                raise InputError(f"the oracle's direct client has trampolines {', '.join(DIRECT_TRAMPS)} "
                                 f"(not {step.tramp!r})", where(i))
            if step.direct == "register":
                mod = direct_module(step.name, kernel.direct_api)
                modules.append(mod)
                direct_names[step.name] = mod.name
                st.update(op="direct_register", name=step.name, module=mod.name,
                          targets=[f.name for f in step.targets], tramp=step.tramp)
            elif step.direct == "modify":
                st.update(op="direct_modify", name=step.name, tramp=step.tramp)
            else:
                st.update(op="direct_unregister", name=step.name)
        elif isinstance(step, OpsStep):
            if step.ops == "register":
                if any(f.sympos > 1 for f in step.funcs):
                    raise InputError("the oracle's ops module filters by name: sympos is not supported", where(i))
                mod = ops_module(step.name, step.ipmodify, step.save_regs)
                modules.append(mod)
                st.update(op="ops_register", name=step.name, module=mod.name, targets=[f.name for f in step.funcs])
            else:
                st.update(op="ops_unregister", name=step.name)
        elif isinstance(step, CallStep):
            c = CALLABLE.get(step.call)
            if c is None:
                raise InputError(f"the oracle can call only {', '.join(CALLABLE)} (not {step.call!r})", where(i))
            st.update(op="call", func=step.call, how=c.how)
        elif isinstance(step, ShowStep):
            st.update(op="show", view=step.show)
        else:
            raise InputError(f"the oracle cannot replay {type(step).__name__} steps", where(i))
        steps.append(st)
    return PlannedScenario(sid or source, source, steps, touched_functions(scenario), modules)


def btf_subset(btf: dict[str, Any], scenarios: list[PlannedScenario]) -> dict[str, Any]:
    """The part of the kernel's BTF table the plan needs (the BPF targets)."""
    names = {st["target"] for p in scenarios for st in p.steps if st["op"] == "bpf_attach"}
    return {"sha256": btf["sha256"], "funcs": {n: btf["funcs"][n] for n in sorted(names)}}
