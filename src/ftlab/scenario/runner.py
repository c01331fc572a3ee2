"""Run a scenario on the model, step by step, and check its expectations.

The runner is a shell: it builds a :class:`~ftlab.model.kernel.Kernel` from the scenario's kernel
section, maps each step onto a client's API (live patching, BPF, kprobes, the function tracer,
the plain direct client, ``call``, views) and records, per step, the kernel's answer, which
records changed (as enabled_functions lines), the call trace, the view text, and the expectations
that did not hold. Names are checked against the catalogue before anything runs, so bad input
never leaves a half-run scenario behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, KernelOops
from ..model import calls, views
from ..model._copy import fast_deepcopy
from ..model.catalogue import Catalogue
from ..model.clients import bpf, direct_client, kprobes, livepatch, ops_client, tracer
from ..model.invariants import check_all
from ..model.errno import Errno, errno_name, parse_errno
from ..model.flags import FTRACE_FL
from ..model.kernel import Kernel
from ..model.policies import get_policy
from ..model.sched import Task, run_tasks
from .schema import (BpfStep, CallStep, ConcurrentStep, DirectStep, Expect, FuncRef, KernelSpec, KprobeStep, LivepatchStep, OpsStep,
                     Scenario, ShowStep, TracerStep, TransitionStep)
from .. import catalogues

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

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "line": self.line, "action": self.action, "result": self.result,
                "changes": self.changes, "trace": self.trace, "view": self.view,
                "events": self.events, "expect_ok": self.ok, "failures": self.failures}


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
    elif cat_spec == "embedded":
        cat = catalogues.embedded()
    elif cat_spec == "oracle-guest":
        cat = catalogues.oracle_guest()
    else:
        try:
            cat = catalogues.from_file(cat_spec)
        except InputError as e:  # point at the scenario's line; the message keeps the catalogue's place
            raise InputError(f"kernel.catalogue: {e}", where) from None
    return Kernel(cat, policy=get_policy(policy or spec.policy, spec.mutations), arch=arch or spec.arch)


def check_names(scenario: Scenario, cat: Catalogue, source: str, lines: dict[Path_, int]) -> None:
    """Every function a step names must be in the catalogue (with a valid sympos); every detach
    or remove must refer to something attached by an earlier step."""
    attached: set[str] = set()
    probes: set[str] = set()
    flat = [(i, sub) for i, step in enumerate(scenario.steps)
            for sub in (step.concurrent if isinstance(step, ConcurrentStep) else [step])]
    for i, step in flat:
        where = f"{source}:{lines.get(('steps', i), 1)}"
        refs = []
        if isinstance(step, LivepatchStep):
            refs = list(step.funcs)
            if step.livepatch != "disable" and not refs:
                raise InputError(f"steps[{i}]: livepatch {step.livepatch} needs funcs", where)
        elif isinstance(step, BpfStep):
            if step.bpf == "attach":
                if step.kind is None or step.target is None:
                    raise InputError(f"steps[{i}]: bpf attach needs kind and target", where)
                refs = [step.target]
                attached.add(step.prog)
            elif step.prog not in attached:
                raise InputError(f"steps[{i}]: no program {step.prog!r} was attached by an earlier step",
                                 where)
        elif isinstance(step, KprobeStep):
            refs = [step.target]
            label = step.name or step.target.name
            if step.kprobe == "add":
                probes.add(label)
            elif label not in probes:
                raise InputError(f"steps[{i}]: no kprobe {label!r} was added by an earlier step", where)
        elif isinstance(step, DirectStep):
            refs = list(step.targets)
            if step.direct == "register" and not refs:
                raise InputError(f"steps[{i}]: direct register needs targets", where)
        elif isinstance(step, OpsStep):
            refs = list(step.funcs)
            if step.ops == "register" and not refs:
                raise InputError(f"steps[{i}]: ops register needs funcs", where)
        elif isinstance(step, CallStep):
            refs = [FuncRef(name=step.call, sympos=step.sympos)]
        for ref in refs:
            idx = ref_indices(cat, ref, livepatch=isinstance(step, LivepatchStep))
            if not idx:
                raise InputError(cat.unknown_function(ref.name), where)
            if ref.sympos > len(idx):
                raise InputError(f"function {ref.name!r} has {len(idx)} occurrence(s); "
                                 f"sympos {ref.sympos} is out of range", where)


def ref_indices(cat: Catalogue, ref: FuncRef, livepatch: bool = False) -> tuple[int, ...]:
    """The records a step's function reference may name (its ``sympos`` counts in them): for a
    live patch a plain name is its vmlinux object's; other clients look names up as kallsyms
    does (vmlinux first, then modules); ``module:name`` is that module's."""
    if livepatch and ":" not in ref.name:
        return cat.object_indices(ref.name, None)
    return cat.scope_indices(ref.name)


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
def describe_step(step: Any) -> str:
    """A step in words, as results show it (``StepResult.action``); shared with the oracle and preflight."""
    if isinstance(step, LivepatchStep):
        funcs = ", ".join(f.name + (f",{f.sympos}" if f.sympos else "") for f in step.funcs)
        return f"livepatch {step.livepatch} {step.patch}" + (f" [{funcs}]" if funcs else "")
    if isinstance(step, TransitionStep):
        return "transition complete"
    if isinstance(step, BpfStep):
        if step.bpf == "attach":
            ret = f" ret={step.ret}" if step.kind == "fmod_ret" else ""
            return f"bpf attach {step.kind} {step.prog} -> {step.target.name}{ret}"  # type: ignore[union-attr]
        return f"bpf detach {step.prog}"
    if isinstance(step, KprobeStep):
        return f"kprobe {step.kprobe} {step.target.name}" + (" (post_handler)" if step.post else "")
    if isinstance(step, TracerStep):
        extra = (f" filter={step.filter}" if step.filter else "") + (f" notrace={step.notrace}" if step.notrace else "")
        return f"tracer {step.tracer}{extra}"
    if isinstance(step, DirectStep):
        targets = ", ".join(f.name for f in step.targets)
        return f"direct {step.direct} {step.name}" + (f" [{targets}]" if targets else "") + f" tramp={step.tramp}"
    if isinstance(step, OpsStep):
        flags = "".join(f" {f}" for f, on in (("IPMODIFY", step.ipmodify), ("SAVE_REGS", step.save_regs)) if on)
        funcs = ", ".join(f.name for f in step.funcs)
        return f"ops {step.ops} {step.name}" + (f" [{funcs}]" if funcs else "") + flags
    if isinstance(step, CallStep):
        return f"call {step.call}"
    if isinstance(step, ShowStep):
        return f"show {step.show}"
    if isinstance(step, ConcurrentStep):
        sched = f" schedule={step.schedule}" if step.schedule else ""
        return "concurrently " + " || ".join(describe_step(sub) for sub in step.concurrent) + sched
    return type(step).__name__  # pragma: no cover


class _Run:
    """A kernel and the scenario's names for what it attached (BPF programs by name)."""

    __deepcopy__ = fast_deepcopy

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.progs: dict[str, bpf.BpfProgram] = {}

    def apply(self, step: Any) -> tuple[int, dict[str, Any] | None, str | None]:
        k = self.k
        if isinstance(step, LivepatchStep):
            funcs = [(f.name, f.sympos) for f in step.funcs]
            if step.livepatch == "disable":
                ret = livepatch.livepatch_disable(k, step.patch)
                if ret == 0 and not livepatch.klp_in_transition(k):
                    livepatch.livepatch_unload(k, step.patch)
                return ret, None, None
            return livepatch.livepatch_enable(k, step.patch, funcs, replace=step.livepatch == "replace"), None, None
        if isinstance(step, TransitionStep):
            return livepatch.klp_transition_complete(k), None, None
        if isinstance(step, BpfStep):
            if step.bpf == "attach":
                assert step.kind is not None and step.target is not None
                prog = bpf.BpfProgram(step.prog, step.kind, step.target.name, step.target.sympos, step.ret)
                ret = bpf.bpf_attach(k, prog)
                if ret == 0:
                    self.progs[step.prog] = prog
                return ret, None, None
            prog = self.progs.get(step.prog)
            if prog is None:
                return bpf.bpf_detach(k, bpf.BpfProgram(step.prog, "fentry", "")), None, None
            ret = bpf.bpf_detach(k, prog)
            if ret == 0:
                del self.progs[step.prog]
            return ret, None, None
        if isinstance(step, KprobeStep):
            label = step.name or step.target.name
            if step.kprobe == "add":
                return kprobes.register_kprobe(k, step.target.name, step.post, label), None, None
            if label not in kprobes.kprobe_state(k).probes:
                return -Errno.EINVAL, None, None  # no such probe (its add failed): nothing to remove
            # unregister_kprobe() is void: whatever its top half answers, the caller sees success
            kprobes.unregister_kprobe(k, label)
            return 0, None, None
        if isinstance(step, TracerStep):
            if step.tracer == "nop":
                return tracer.current_tracer(k, "nop"), None, None
            ret = tracer.set_ftrace_filter(k, " ".join(step.filter))
            if ret == 0:
                ret = tracer.set_ftrace_notrace(k, " ".join(step.notrace))
            if ret == 0:
                ret = tracer.current_tracer(k, step.tracer)
            return ret, None, None
        if isinstance(step, DirectStep):
            if step.direct == "register":
                return direct_client.direct_client_load(k, step.name, [f.name for f in step.targets],
                                                        step.tramp), None, None
            if step.direct == "modify":
                return direct_client.direct_client_modify(k, step.name, step.tramp), None, None
            return direct_client.direct_client_unload(k, step.name), None, None
        if isinstance(step, OpsStep):
            if step.ops == "register":
                ips = [k.cat.lookup(f.name, f.sympos) if f.sympos else k.cat.ip(k.cat.indices(f.name)[0])
                       for f in step.funcs]
                return ops_client.ops_client_register(k, step.name, ips, step.ipmodify, step.save_regs), None, None
            return ops_client.ops_client_unregister(k, step.name), None, None
        if isinstance(step, CallStep):
            trace = calls.call(k, step.call, step.sympos)
            return 0, trace_dict(trace), None
        if isinstance(step, ShowStep):
            return 0, None, show_view(k, step.show)
        if isinstance(step, ConcurrentStep):
            return self.apply_concurrent(step)
        raise AssertionError(step)  # pragma: no cover

    def apply_concurrent(self, step: ConcurrentStep) -> tuple[Any, None, None]:
        """Run the sub-steps as concurrent tasks under ``step.schedule`` (:mod:`ftlab.model.sched`).

        Returns a text result instead of an errno: ``label: ok, label: EAGAIN``, or ``deadlock: ...``
        with its cycle, or ``livelock: ...``.
        """
        tasks = [Task(describe_step(sub), (lambda k, sub=sub: self.apply(sub)[0])) for sub in step.concurrent]
        run = run_tasks(self.k, tasks, list(step.schedule))
        if run.deadlock:
            return "deadlock: " + "; ".join(f"{t} holds {', '.join(h) or 'nothing'} and wants {w}"
                                            for t, h, w in run.deadlock), None, None
        if run.livelock:
            return f"livelock: {run.livelock}", None, None
        if run.error:
            return f"error: {run.error}", None, None
        return ", ".join(f"{name}: {errno_name(r) if isinstance(r, int) else r}"
                         for name, r in run.results.items()), None, None


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
    return {"function": trace.name, "body": body_label(trace.name, trace.body),
            "programs": list(trace.programs), "retval": trace.retval,
            "events": [{"kind": kd, "detail": d} for kd, d in trace.events],
            "warnings": [str(w) for w in trace.warnings]}


def show_view(k: Kernel, name: str) -> str:
    """The text of view ``name``."""
    if name == "enabled_functions":
        return views.enabled_functions(k)
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
    """BPF trampolines: target, programs per kind, image and its flags."""
    out = []
    describe = getattr(bpf, "describe_trampoline", None)
    for tr in bpf.trampolines(k):
        out.append(describe(k, tr) if describe is not None else _describe_trampoline(tr))
    return "".join(line + "\n" for line in out)


def _describe_trampoline(tr: Any) -> str:
    """One line per trampoline: ``FUNC fentry=[..] fexit=[..] fmod_ret=[..] image=ADDR flags=..``."""
    kinds = ("fentry", "fexit", "fmod_ret")
    hl = getattr(tr, "progs_hlist", [[], [], []])
    progs = " ".join(f"{kind}=[{', '.join(link.prog.name for link in hl[i])}]" for i, kind in enumerate(kinds))
    im = getattr(tr, "cur_image", None)
    image = f"image={im.addr} flags={getattr(im.flags, 'name', None) or im.flags}" if im is not None else "image=-"
    return f"{getattr(tr, 'func_name', '?')} {progs} {image} refcnt={getattr(tr, 'refcnt', '?')}"


def record_changes(k: Kernel, before: dict[int, int]) -> list[str]:
    """Records whose flags or count changed, as enabled_functions lines (``- name`` when disabled)."""
    after = k.recs
    out = []
    for i in sorted(set(before) | set(after)):
        if before.get(i) == after.get(i):
            continue
        ip = k.cat.ip(i)
        flags = k.get_flags(i)
        if flags & FTRACE_FL.ENABLED and not k.ftrace_disabled:
            out.append(views.print_enabled_record(k, ip, flags).replace("\n", " "))
        else:
            out.append(f"- {k.cat.sym_of_ip(ip)}")
    return out


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


def run_scenario(scenario: Scenario, lines: dict[Path_, int], source: str, *, policy: str | None = None,
                 arch: str | None = None, until: int | None = None) -> RunResult:
    """Run ``scenario`` (up to and including step ``until``, 1-based) and check its expectations."""
    k = build_kernel(scenario.kernel, source, lines, policy, arch)
    check_names(scenario, k.cat, source, lines)
    run = _Run(k)
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
        sr = StepResult(i + 1, lines.get(("steps", i), 1), describe_step(step), result,
                        record_changes(k, before), trace, view, [str(e) for e in k.events[nev:]])
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
