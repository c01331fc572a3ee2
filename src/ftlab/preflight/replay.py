"""Replaying a reconstruction. :class:`Action` is one client action the snapshot shows,
:class:`Question` one thing it leaves open, :class:`Reconstruction` both and their variants;
:func:`rebuild` replays one variant into a model kernel and :func:`compare_records` says where the
model's enabled_functions then differs from the machine's."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ..actions import (
    BpfStep,
    DirectStep,
    FuncRef,
    KprobeStep,
    LivepatchStep,
    OpsStep,
    RunContext,
    TracerStep,
    TransitionStep,
)
from ..errors import KernelOops
from ..model import views
from ..model.clients import livepatch
from ..model.errno import errno_name
from ..model.kernel import Kernel
from .load import Snapshot
from .records import Record, parse_enabled_functions, symbol_of

#: At most this many variants are run (the product of the open questions); the rest are named.
MAX_VARIANTS = 16


# ---------------------------------------------------------------------------------------------
# What the reconstruction finds
# ---------------------------------------------------------------------------------------------
@dataclass
class Action:
    """One replayed client action: ``kind`` and its arguments; ``why`` says what evidence it rests on."""

    kind: str       # livepatch | bpf | kprobe | direct | tracer | ops
    args: dict[str, Any]
    why: str

    def apply(self, run: RunContext) -> int:
        """Replay this action as the scenario steps it stands for (:mod:`ftlab.actions`); the
        kernel's answer. A live patch found in transition is enabled with a task held in one of
        its functions (``patching``), or enabled and then disabled so (``unpatching``)."""
        a = self.args
        if self.kind == "livepatch":
            funcs = [FuncRef(name=n, sympos=p) for n, p in a["funcs"]]
            verb = "replace" if a.get("replace", False) else "enable"
            ret = run.apply(LivepatchStep(livepatch=verb, patch=a["name"], funcs=funcs,
                                          hold=a["state"] == "patching")).ret
            if ret == 0 and a["state"] == "unpatching":
                if livepatch.klp_in_transition(run.k):
                    run.apply(TransitionStep(transition="complete"))
                ret = run.apply(LivepatchStep(livepatch="disable", patch=a["name"], hold=True)).ret
            assert isinstance(ret, int)
            return ret
        step: Any
        if self.kind == "bpf":
            step = BpfStep(bpf="attach", prog=a["prog"], kind=a["kind"], target=FuncRef(name=a["target"]))
        elif self.kind == "kprobe":
            step = KprobeStep(kprobe="add", target=FuncRef(name=a["target"]), post=a["post"])
        elif self.kind == "direct":
            step = DirectStep(direct="register", name=a["name"], targets=[FuncRef(name=t) for t in a["targets"]],
                              tramp=a["tramp"])
        elif self.kind == "tracer":
            step = TracerStep(tracer=a.get("tracer", "function"), filter=a["filter"], notrace=a["notrace"])
        elif self.kind == "ops":
            step = OpsStep(ops="register", name=a["name"], funcs=[FuncRef(name=f) for f in a["funcs"]],
                           ipmodify=a["ipmodify"], save_regs=a["save_regs"])
        else:  # pragma: no cover - a development error
            raise AssertionError(self.kind)
        ret = run.apply(step).ret
        assert isinstance(ret, int)
        return ret

    def describe(self) -> str:
        a = self.args
        if self.kind == "livepatch":
            funcs = ", ".join(f"{n}" + (f",{p}" if p else "") for n, p in a["funcs"])
            state = "" if a.get("state", "enabled") == "enabled" else f" ({a['state']})"
            return f"livepatch {a['name']} [{funcs}]{state}"
        if self.kind == "bpf":
            return f"bpf {a['kind']} {a['prog']} -> {a['target']}"
        if self.kind == "kprobe":
            return f"kprobe {a['target']}" + (" (post_handler)" if a["post"] else "")
        if self.kind == "direct":
            return f"direct client {a['name']} [{', '.join(a['targets'])}] tramp={a['tramp']}"
        if self.kind == "tracer":
            filt, notr = a.get("filter_names", a["filter"]), a.get("notrace_names", a["notrace"])
            return (f"tracer {a.get('tracer', 'function')} filter={filt or 'all'}"
                    + (f" notrace={notr}" if notr else ""))
        if self.kind == "ops":
            fl = "".join(f" {f}" for f, on in (("IPMODIFY", a["ipmodify"]), ("SAVE_REGS", a["save_regs"])) if on)
            return f"unknown ftrace_ops {a['name']} [{', '.join(a['funcs'])}]{fl}"
        return f"{self.kind} {a}"


@dataclass
class Question:
    """Something the snapshot does not decide: alternatives, each a list of actions."""

    text: str
    options: list[tuple[str, list[Action]]]


@dataclass
class Reconstruction:
    policy: str
    actions: list[Action]                 # certain
    questions: list[Question]
    notes: list[str]
    records: list[Record]

    def variants(self) -> list[tuple[str, list[Action]]]:
        """Every combination of the questions' options (at most MAX_VARIANTS)."""
        if not self.questions:
            return [("as recorded", list(self.actions))]
        out = []
        for combo in itertools.product(*[q.options for q in self.questions]):
            label = "; ".join(lbl for lbl, _ in combo)
            acts = list(self.actions) + [a for _, al in combo for a in al]
            out.append((label, acts))
            if len(out) >= MAX_VARIANTS:
                break
        return out


# ---------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------
def _order(actions: list[Action]) -> list[Action]:
    """Replay order: direct clients and unknown ops, BPF, live patches, kprobes, tracer.

    Within a kind the snapshot's order (patches oldest first, links by id) is kept. Under
    linux-6.1 BPF before live patches is the order that works for both (a live patch after a
    trampoline asks it to share), and the end state is the same.
    """
    rank = {"ops": 0, "direct": 1, "bpf": 2, "livepatch": 3, "kprobe": 4, "tracer": 5}
    return sorted(actions, key=lambda a: rank.get(a.kind, 9))


def _rec_key(text: str) -> dict[str, tuple[int, frozenset[str], str | None]]:
    out = {}
    for r in parse_enabled_functions(text):
        d = r.direct
        kind = None
        if d is not None:
            kind = "bpf" if symbol_of(d).startswith("bpf_trampoline_") else "direct"
        out[r.qname] = (r.count, r.flags, kind)
    return out


def compare_records(k: Kernel, snap_records: list[Record]) -> list[str]:
    """Where the rebuilt model's enabled_functions differs from the snapshot (count, flags, direct kind)."""
    model = _rec_key(views.enabled_functions(k))
    out = []
    for r in snap_records:
        if not k.cat.indices(r.qname):
            continue
        kind = None if r.direct is None else ("bpf" if symbol_of(r.direct).startswith("bpf_trampoline_") else "direct")
        want = (r.count, r.flags & {"R", "I", "D"}, kind)
        got = model.get(r.qname)
        got = (got[0], got[1] & {"R", "I", "D"}, got[2]) if got else None
        if got != want:
            out.append(f"{r.qname}: machine ({want[0]}) {''.join(sorted(want[1])) or '-'}, model "
                       + (f"({got[0]}) {''.join(sorted(got[1])) or '-'}" if got else "no record"))
    names = {r.qname for r in snap_records}
    out.extend(f"{n}: the model has a record the machine does not" for n in model if n not in names)
    return out


@dataclass
class Rebuilt:
    label: str
    kernel: Kernel
    run: RunContext
    replay: list[dict[str, Any]]
    mismatches: list[str]


def rebuild(snap: Snapshot, rec: Reconstruction, label: str, actions: list[Action]) -> Rebuilt:
    k = Kernel(snap.catalogue, policy=rec.policy)
    run = RunContext(k)
    replay = []
    for a in _order(actions):
        try:
            ret = a.apply(run)
            res = errno_name(ret)
        except KernelOops:
            res = "Oops"
        replay.append({"action": a.describe(), "why": a.why, "result": res})
        if res == "Oops":
            break
    return Rebuilt(label, k, run, replay, compare_records(k, rec.records))
