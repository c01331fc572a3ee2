"""``ftlab preflight``: rebuild a real machine's ftrace state from a snapshot, then predict actions.

Three parts:

1. :func:`load_snapshot` -- read and check a JSON file written by ``ftlab snapshot``
   (:mod:`ftlab.snapshot`), its catalogue (the machine's own available_filter_functions) and the
   policy its kernel version implies (<= 5.19: ``linux-5.18``; >= 6.0: ``linux-6.1``).
2. :func:`reconstruct` -- work out which clients hold each enabled record and replay their
   actions into a model kernel. Sources, strongest first: the ``tramp: ... (OWNER)`` part of a
   record with one user (klp_ftrace_handler: a live patch; call_direct_funcs: a direct-call ops;
   kprobe_ftrace_handler: a kprobe; function_trace_call: the function tracer), the
   ``direct-->`` line (``bpf_trampoline_<key>``: a BPF trampoline; a module symbol: a plain
   direct-call client), /sys/kernel/livepatch (patch names, functions, enabled/transition;
   /proc/modules gives their load order), the BPF tracing links (kind, program name, target),
   current_tracer + set_ftrace_filter/notrace, and the kprobes list. Whatever count is left
   unexplained becomes an "unknown ftrace_ops" (a module's own ops, IPMODIFY / SAVE_REGS as the
   record's flags demand). Where the snapshot cannot decide (a direct trampoline whose owner is
   unknown, a BPF trampoline without program information) the reconstruction has *variants*,
   and every prediction is made once per variant.
3. :func:`preflight` -- parse the proposed actions (:func:`parse_action`, the scenario step
   syntax on one line), run them with the scenario runner's machinery on each variant and
   report per action: the result (or errno and the kernel rule, :func:`explain`), the records
   that change (enabled_functions lines), what a call of each touched function runs afterwards,
   and the guarantees (:func:`ftlab.model.invariants.check_all`) that break.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import itertools
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError, KernelOops
from .model import calls, views
from .model.catalogue import Catalogue, qualified_name
from .model.clients import bpf, direct_client, kprobes, livepatch, ops_client, tracer
from .model.errno import errno_name
from .model.flags import FTRACE_FL, FTRACE_OPS_FL
from .model.invariants import check_all
from .model.kernel import Kernel
from .model.policies.registry import POLICIES, policy_names
from . import actions
from .actions import (ACTION_SYNTAX, BpfStep, DirectStep, FuncRef, KprobeStep, LivepatchStep, OpsStep, RunContext,
                      TracerStep, TransitionStep, body_label, record_changes)
from . import catalogues

SNAPSHOT_FORMAT = 1
PREFLIGHT_FORMAT = 1
#: At most this many variants are run (the product of the open questions); the rest are named.
MAX_VARIANTS = 16

OWNER_FUNCS = {
    "klp_ftrace_handler": "livepatch",
    "call_direct_funcs": "direct",
    "kprobe_ftrace_handler": "kprobe",
    "function_trace_call": "tracer",
    "ftrace_graph_func": "tracer",
}


# ---------------------------------------------------------------------------------------------
# The snapshot
# ---------------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    path: str
    doc: dict[str, Any]
    release: str
    catalogue: Catalogue
    notes: list[str] = field(default_factory=list)

    def text(self, key: str) -> str | None:
        ent = self.doc.get("files", {}).get(key)
        if isinstance(ent, dict) and isinstance(ent.get("text"), str):
            return ent["text"]
        return None

    def error(self, key: str) -> str | None:
        ent = self.doc.get("files", {}).get(key)
        return ent.get("error") if isinstance(ent, dict) else "absent from the snapshot"


def _catalogue(doc: dict[str, Any], path: str, notes: list[str]) -> Catalogue:
    aff = doc.get("available_filter_functions")
    where = f"{path}: available_filter_functions"
    if not isinstance(aff, dict):
        raise InputError("missing", where)
    if "error" in aff:
        notes.append(f"the snapshot could not read available_filter_functions ({aff['error']}): "
                     "using the embedded Debian 6.1.0-56-amd64 catalogue instead")
        return catalogues.embedded()
    if aff.get("encoding") == "gzip+base64":
        try:
            text = gzip.decompress(base64.b64decode(str(aff.get("data", "")), validate=True)).decode()
        except (binascii.Error, OSError, EOFError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"cannot decode gzip+base64 data: {e}", where) from None
        if aff.get("sha256") and hashlib.sha256(text.encode()).hexdigest() != aff["sha256"]:
            raise InputError("sha256 does not match the data (truncated or edited file?)", where)
    elif aff.get("encoding") == "list" and isinstance(aff.get("names"), list):
        text = "".join(f"{n}\n" for n in aff["names"])
    else:
        raise InputError(f"unknown encoding {aff.get('encoding')!r} (expected gzip+base64 or list)", where)
    return Catalogue.from_text(text, f"{path}:available_filter_functions")


def load_snapshot(path: str) -> Snapshot:
    """Read a snapshot file; :class:`InputError` (``PATH: what``) for anything malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"not JSON: {e}", path) from None
    if not isinstance(doc, dict) or doc.get("kind") != "ftlab-snapshot":
        raise InputError("not an ftlab snapshot (no \"kind\": \"ftlab-snapshot\"; make one with ftlab snapshot)", path)
    if doc.get("format") != SNAPSHOT_FORMAT:
        raise InputError(f"snapshot format {doc.get('format')!r}, this ftlab reads format {SNAPSHOT_FORMAT}", path)
    if not isinstance(doc.get("files"), dict):
        raise InputError("no \"files\" object", path)
    uname = doc.get("uname") if isinstance(doc.get("uname"), dict) else {}
    release = str(uname.get("release") or "")
    notes: list[str] = []
    cat = _catalogue(doc, path, notes)
    return Snapshot(path, doc, release, cat, notes)


def policy_for_release(release: str) -> str:
    """The policy whose registry ``series`` holds ``release``'s version (<= 5.19 linux-5.18,
    >= 6.0 linux-6.1); InputError for an unreadable version or one older than 5.15."""
    m = re.match(r"^(\d+)\.(\d+)", release)
    if not m:
        raise InputError(f"cannot tell the kernel version from uname -r {release!r}; give --policy", "snapshot")
    major, minor = int(m.group(1)), int(m.group(2))
    if (major, minor) < (5, 15):
        raise InputError(f"kernel {release} is older than 5.15 (ftlab models 5.18 and 6.1 rules); "
                         "give --policy to force one", "snapshot")
    for name in policy_names():
        series = POLICIES[name].series
        if series is not None and _version(series[0]) <= (major, minor) <= _version(series[1]):
            return name
    raise InputError(f"no policy stands for kernel {release}; give --policy", "snapshot")


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


# ---------------------------------------------------------------------------------------------
# enabled_functions
# ---------------------------------------------------------------------------------------------
@dataclass
class Record:
    """One parsed enabled_functions record."""

    name: str
    module: str | None
    count: int
    flags: frozenset[str]                 # R, I, D (and later kernels' O, M)
    tramps: list[tuple[str, str]]         # (trampoline, ops func symbol)
    direct: str | None                    # direct--> target, %pS text
    raw: str

    @property
    def owner_funcs(self) -> list[str]:
        return [f for _, f in self.tramps]

    @property
    def qname(self) -> str:
        """The model's name of the function: ``module:name`` for a module's record."""
        return self.name if self.module is None else f"{self.module}:{self.name}"


_HEAD = re.compile(r"^(?P<name>\S+)(?: \[(?P<mod>[^\]]+)\])? \((?P<count>\d+)\)(?P<rest>.*)$")
_TRAMP = re.compile(r"tramp: (\S+)(?: \[[^\]]+\])? \((\S+?)(?: \[[^\]]+\])?\)")


def _sym(pS: str) -> str:
    return pS.split("+", 1)[0]


def parse_enabled_functions(text: str, where: str = "enabled_functions") -> list[Record]:
    """The records of an enabled_functions text (InputError for a malformed line)."""
    recs: list[Record] = []
    text = text.replace(" \tdirect-->", "\n\tdirect-->")  # a record as one line (ftlab run's changes)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("\t"):
            s = line.strip()
            if not recs:
                raise InputError(f"continuation line before any record: {s[:60]!r}", f"{where}:{lineno}")
            if s.startswith("direct-->"):
                recs[-1].direct = s[len("direct-->"):].strip()
            recs[-1].raw += "\n" + line
            continue
        m = _HEAD.match(line)
        if not m:
            raise InputError(f"not an enabled_functions record: {line[:60]!r}", f"{where}:{lineno}")
        rest = m.group("rest")
        cut = min([i for i in (rest.find("\t"), rest.find(" ->")) if i >= 0], default=len(rest))
        flags = frozenset(ch for ch in rest[:cut] if ch.isalpha())
        tramps = [(t, _sym(f)) for t, f in _TRAMP.findall(rest)]
        recs.append(Record(m.group("name"), m.group("mod"), int(m.group("count")), flags, tramps, None, line))
    return recs


# ---------------------------------------------------------------------------------------------
# Reconstruction
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


def _patch_order(patches: list[dict], modules: list[str]) -> list[dict]:
    """Oldest first: /proc/modules lists the newest module first."""
    pos = {m: i for i, m in enumerate(modules)}
    return sorted(patches, key=lambda p: (-pos.get(p["name"], -1) if p["name"] in pos else 10 ** 6, p["name"]))


def _func_ref(cat: Catalogue, obj: str | None, name: str, sympos: int) -> tuple[str, int] | None:
    """A live patch's function of object ``obj`` (None: vmlinux) as (model name, sympos)."""
    idx = cat.object_indices(name, obj)
    if not idx:
        return None
    return (name if obj is None else f"{obj}:{name}", 0 if len(idx) == 1 else max(1, sympos))


def reconstruct(snap: Snapshot, policy: str) -> Reconstruction:
    """Which clients hold what, as actions to replay (see the module docstring)."""
    cat = snap.catalogue
    notes = list(snap.notes)
    actions: list[Action] = []
    questions: list[Question] = []
    ef = snap.text("enabled_functions")
    if ef is None:
        raise InputError(f"the snapshot has no enabled_functions ({snap.error('enabled_functions')}); "
                         "take it as root", snap.path)
    records = parse_enabled_functions(ef, f"{snap.path}: enabled_functions")
    by_name = {r.qname: r for r in records}
    for r in records:
        if not cat.indices(r.qname):
            notes.append(f"{r.qname}: not in the snapshot's available_filter_functions, left out")
    recs = {n: r for n, r in by_name.items() if cat.indices(n)}
    explained: dict[str, dict[str, int]] = {n: {"count": 0, "I": 0, "R": 0, "D": 0} for n in recs}

    def explain_rec(name: str, I: int = 0, R: int = 0, D: int = 0) -> None:  # noqa: E741
        e = explained.get(name)
        if e is not None:
            e["count"] += 1
            e["I"] += I
            e["R"] += R
            e["D"] += D

    # -- live patches ----------------------------------------------------------------------
    lp = snap.doc.get("livepatch") if isinstance(snap.doc.get("livepatch"), dict) else {}
    lp_funcs: set[str] = set()
    patches = lp.get("patches") if isinstance(lp.get("patches"), list) else None
    if patches is None:
        if any("livepatch" == OWNER_FUNCS.get(f) for r in recs.values() for f in r.owner_funcs):
            notes.append(f"/sys/kernel/livepatch was not readable ({lp.get('error')}); live patches are named "
                         "after their functions")
        patches = []
    modules = snap.doc.get("modules") if isinstance(snap.doc.get("modules"), list) else []
    for p in _patch_order([p for p in patches if isinstance(p, dict) and p.get("name")], modules):
        funcs = []
        for obj in p.get("objects", []):
            objname = obj.get("name") if obj.get("name") != "vmlinux" else None
            for f in obj.get("funcs", []):
                ref = _func_ref(cat, objname, f.get("name", ""), int(f.get("sympos") or 0))
                if ref is None:
                    where = f" of module {objname}" if objname else ""
                    notes.append(f"live patch {p['name']}: {f.get('name')}{where} is not in the catalogue "
                                 "(a module that is not loaded, or a function without a record), left out")
                else:
                    funcs.append(ref)
        if not funcs:
            continue
        enabled, transition = p.get("enabled"), p.get("transition")
        state = "enabled"
        if enabled == 1 and transition == 1:
            state = "patching"
        elif enabled == 0 and transition == 1:
            state = "unpatching"
        elif enabled == 0:
            notes.append(f"live patch {p['name']} is disabled and out of transition: it holds no function, left out")
            continue
        actions.append(Action("livepatch", {"name": p["name"], "funcs": funcs, "state": state,
                                            "replace": p.get("replace") == 1},
                              f"/sys/kernel/livepatch/{p['name']} (enabled={enabled}, transition={transition})"))
        for n, _ in funcs:
            lp_funcs.add(n)
    # Functions whose only owner is klp_ftrace_handler but no sysfs patch covers them
    for n, r in recs.items():
        if "klp_ftrace_handler" in r.owner_funcs and n not in lp_funcs:
            actions.append(Action("livepatch", {"name": f"unknown_patch_{n}", "funcs": [(n, 0)], "state": "enabled",
                                                "replace": False},
                                  f"enabled_functions: {n} is owned by klp_ftrace_handler, no sysfs patch names it"))
            lp_funcs.add(n)
    for a in actions:
        if a.kind == "livepatch":
            for n, _ in a.args["funcs"]:
                explain_rec(n, I=1)
    # A function patched by several patches has one klp_ops: count it once
    for n in lp_funcs:
        if n in explained:
            e = explained[n]
            k = sum(1 for a in actions if a.kind == "livepatch" and any(f == n for f, _ in a.args["funcs"]))
            e["count"] -= k - 1
            e["I"] -= k - 1

    # -- BPF trampolines and direct calls ----------------------------------------------------
    bpfdoc = snap.doc.get("bpf") if isinstance(snap.doc.get("bpf"), dict) else {}
    links = [ln for ln in bpfdoc.get("links", []) if isinstance(ln, dict)]
    used_links: set[Any] = set()
    prog_names: set[str] = set()
    direct_groups: dict[tuple[str, str], list[str]] = {}
    for n, r in recs.items():
        if "D" not in r.flags:
            continue
        target = r.direct
        if target is not None and _sym(target).startswith("bpf_trampoline_"):
            key = _sym(target)[len("bpf_trampoline_"):].split("_", 1)[0]
            btf = (int(key) >> 32, int(key) & 0x7FFFFFFF) if key.isdigit() else None
            mine = [ln for ln in links if (ln.get("target") == n)
                    or (btf is not None and ((ln.get("target_obj_id") or 1), ln.get("target_btf_id")) == btf)]
            mine = [ln for ln in mine if ln.get("kind") in ("fentry", "fexit", "fmod_ret")]
            explain_rec(n, R=1, D=1)
            if mine:
                for ln in sorted(mine, key=lambda x: x.get("id") or 0):
                    used_links.add(ln.get("id"))
                    name = ln.get("prog_name") or f"prog{ln.get('prog_id')}"
                    if name in prog_names:
                        name = f"{name}#{ln.get('prog_id') or ln.get('id')}"
                    prog_names.add(name)
                    if ln.get("kind") == "fmod_ret":
                        notes.append(f"{n}: fmod_ret program {name}: its return value is not in the snapshot; "
                                     "assumed 0 (the body runs)")
                    actions.append(Action("bpf", {"kind": ln["kind"], "prog": name, "target": n},
                                          f"BPF link {ln.get('id')} ({bpfdoc.get('source')}) on {n}"))
            else:
                why = ("no BPF link information in the snapshot" if not links
                       else "no BPF link of the snapshot targets it")
                questions.append(Question(
                    f"{n}: BPF trampoline {_sym(target)} with unknown programs ({why})",
                    [(f"{n}: one fentry program", [Action("bpf", {"kind": "fentry", "prog": f"unknown_fentry@{n}",
                                                                   "target": n}, "assumed")]),
                     (f"{n}: one fexit program", [Action("bpf", {"kind": "fexit", "prog": f"unknown_fexit@{n}",
                                                                  "target": n}, "assumed")])]))
        elif target is not None and not target.startswith("0x"):
            m = re.match(r"^(\S+?)\+\S+(?: \[([^\]]+)\])?$", target)
            sym, mod = (m.group(1), m.group(2)) if m else (_sym(target), None)
            explain_rec(n, R=1, D=1)
            direct_groups.setdefault((mod or "direct", sym), []).append(n)
        else:
            what = "a raw address" if target else "no direct--> line"
            explain_rec(n, R=1, D=1)
            questions.append(Question(
                f"{n}: direct trampoline with unknown owner ({what})",
                [(f"{n}: owner has ops_func (a BPF trampoline, one fentry program)",
                  [Action("bpf", {"kind": "fentry", "prog": f"unknown_fentry@{n}", "target": n}, "assumed")]),
                 (f"{n}: owner without ops_func (a plain direct-call client)",
                  [Action("direct", {"name": f"unknown_direct@{n}", "targets": [n], "tramp": "my_tramp_unknown"},
                          "assumed")])]))
    for i, ((mod, sym), funcs) in enumerate(sorted(direct_groups.items())):
        tramp = sym if sym.startswith(direct_client.TRAMP_PREFIX) else f"{direct_client.TRAMP_PREFIX}_{sym}"
        actions.append(Action("direct", {"name": mod if mod != "direct" else f"direct{i}", "targets": funcs,
                                         "tramp": tramp},
                              f"enabled_functions: direct-->{sym}" + (f" [{mod}]" if mod != "direct" else "")
                              + " is not a BPF image: a direct-call client without ops_func"))
    for ln in links:
        if ln.get("id") not in used_links and ln.get("kind") in ("fentry", "fexit", "fmod_ret"):
            notes.append(f"BPF link {ln.get('id')} ({ln.get('kind')} {ln.get('prog_name')} -> {ln.get('target')}) "
                         "matches no enabled record, left out")

    # -- kprobes -----------------------------------------------------------------------------
    kp_funcs: list[str] = []
    kl = snap.text("kprobes_list")
    if kl is not None:
        for line in kl.splitlines():
            parts = line.split()
            if len(parts) >= 3 and "[FTRACE]" in line and parts[2].endswith("+0x0"):
                fn = parts[2][:-4]
                if len(parts) > 3 and not parts[3].startswith("["):  # report_probe: "sym+0x0  module"
                    fn = f"{parts[3]}:{fn}"
                if fn in recs and fn not in kp_funcs:
                    kp_funcs.append(fn)
    for n, r in recs.items():
        if "kprobe_ftrace_handler" in r.owner_funcs and n not in kp_funcs:
            kp_funcs.append(n)
    for n in kp_funcs:
        r = recs[n]
        post = "I" in r.flags and n not in lp_funcs
        if kl is None and "kprobe_ftrace_handler" not in r.owner_funcs:
            continue
        actions.append(Action("kprobe", {"target": n, "post": post},
                              ("kprobes list" if kl is not None else "enabled_functions: kprobe_ftrace_handler")
                              + ("; I flag without a live patch: a post handler (kprobe_ipmodify_ops)" if post else "")))
        explain_rec(n, I=int(post), R=1)

    # -- function tracer -----------------------------------------------------------------------
    cur = (snap.text("current_tracer") or "").strip()
    if cur in ("function", "function_graph"):
        def names(key: str) -> tuple[list[str], set[str]]:
            """The filter's tokens, one per listed record, and the records' model names."""
            t = snap.text(key)
            if t is None:
                notes.append(f"{key} not readable ({snap.error(key)}): assumed empty")
                return [], set()
            tokens, qnames = [], set()
            seen: dict[str, int] = {}
            for ln in t.splitlines():
                words = ln.split()
                if not words or words[0].startswith("#"):
                    continue
                mod = words[1][1:-1] if len(words) > 1 and words[1].startswith("[") and words[1].endswith("]") else None
                q = words[0] if mod is None else f"{mod}:{words[0]}"
                idx = cat.object_indices(words[0], mod)
                if not idx:
                    notes.append(f"{key}: {q!r} is not a catalogue name, left out")
                    continue
                qnames.add(q)
                if len(idx) == len(cat.indices(words[0])):
                    if q not in seen:
                        tokens.append(words[0])              # the name selects exactly these records
                    seen[q] = 0
                else:
                    # the record by its index in available_filter_functions: a name would select
                    # the other objects' records too, and 6.1's ':mod:' cannot name a module that
                    # starts with a digit (filter_parse_regex makes it an index)
                    n = seen.get(q, 0)
                    seen[q] = n + 1
                    tokens.append(str(idx[min(n, len(idx) - 1)] + 1))
            return tokens, qnames

        filt, filt_names = names("set_ftrace_filter")
        notr, notr_names = names("set_ftrace_notrace")
        actions.append(Action("tracer", {"tracer": cur, "filter": filt, "notrace": notr,
                                         "filter_names": sorted(filt_names), "notrace_names": sorted(notr_names)},
                              f"current_tracer is {cur}"))
        covered = filt_names if filt else set(recs)
        for n in covered - notr_names:
            if n in explained:
                explain_rec(n)
    elif cur and cur != "nop":
        notes.append(f"current_tracer is {cur!r}: not modelled; its records count as unknown ftrace_ops")
    elif not cur:
        notes.append(f"current_tracer not readable ({snap.error('current_tracer')})")

    # -- what is left: unknown ftrace_ops ---------------------------------------------------
    groups: dict[tuple[bool, bool], list[str]] = {}
    for n, r in recs.items():
        e = explained[n]
        extra = r.count - e["count"]
        if extra <= 0:
            if extra < 0:
                notes.append(f"{n}: the snapshot counts {r.count} user(s), the evidence {e['count']}")
            continue
        ipm = "I" in r.flags and e["I"] == 0
        regs = "R" in r.flags and e["R"] == 0
        for j in range(extra):
            groups.setdefault((ipm and j == 0, regs and j == 0), []).append(n)
    for i, ((ipm, regs), funcs) in enumerate(sorted(groups.items())):
        owners = sorted({f for n in funcs for f in recs[n].owner_funcs if f not in OWNER_FUNCS})
        actions.append(Action("ops", {"name": f"unknown_ops{i + 1}", "funcs": funcs, "ipmodify": ipm,
                                      "save_regs": regs},
                              "record count not explained by the other evidence"
                              + (f" (tramp owner {', '.join(owners)})" if owners else "")))
    return Reconstruction(policy, actions, questions, notes, records)


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
            kind = "bpf" if _sym(d).startswith("bpf_trampoline_") else "direct"
        out[r.qname] = (r.count, r.flags, kind)
    return out


def compare_records(k: Kernel, snap_records: list[Record]) -> list[str]:
    """Where the rebuilt model's enabled_functions differs from the snapshot (count, flags, direct kind)."""
    model = _rec_key(views.enabled_functions(k))
    out = []
    for r in snap_records:
        if not k.cat.indices(r.qname):
            continue
        kind = None if r.direct is None else ("bpf" if _sym(r.direct).startswith("bpf_trampoline_") else "direct")
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


# ---------------------------------------------------------------------------------------------
# Proposed actions
# ---------------------------------------------------------------------------------------------
def parse_action(text: str, n: int, counters: dict[str, int]) -> Any:
    """Proposed action ``n`` in its command-line form (:data:`ftlab.actions.ACTION_SYNTAX`) -> a
    scenario step; InputError ``action N: ...``."""
    return actions.parse_action(text, f"action {n}", counters)


def check_action_names(step: Any, cat: Catalogue, where: str) -> None:
    """The functions ``step`` names are in the snapshot's catalogue."""
    actions.check_functions(step, cat, where, "the snapshot's available_filter_functions")


def step_functions(step: Any) -> list[str]:
    """The names of the functions ``step`` names."""
    return [f.name for f in actions.step_functions(step)]


# ---------------------------------------------------------------------------------------------
# Why an action fails: the kernel rule, in one sentence
# ---------------------------------------------------------------------------------------------
def _flags_of(k: Kernel, name: str) -> int:
    idx = k.cat.indices(name)
    return k.get_flags(idx[0]) if idx else 0


def _direct_owner_has_ops_func(k: Kernel, name: str) -> bool | None:
    ip = k.cat.ip(k.cat.indices(name)[0])
    for op in k.ftrace_ops_list:
        if op.flags & FTRACE_OPS_FL.DIRECT and op.hash.filter_hash is not None and ip in op.hash.filter_hash.ips:
            return op.ops_func is not None
    return None


def explain(k: Kernel, step: Any, errno: str, policy: str) -> str:
    """One sentence naming the kernel rule behind ``errno`` for ``step`` on state ``k`` (before)."""
    funcs = step_functions(step)
    if errno == "Oops":
        return "the kernel oopses (see the model's events)"
    if k.ftrace_disabled:
        return f"-{errno}: ftrace is dead (ftrace_kill ran), every registration fails (ftrace.c: ftrace_disabled)"
    ipm = [f for f in funcs if _flags_of(k, f) & FTRACE_FL.IPMODIFY]
    drc = [f for f in funcs if _flags_of(k, f) & FTRACE_FL.DIRECT]
    wants_ipmodify = (isinstance(step, LivepatchStep) or (isinstance(step, KprobeStep) and step.post)
                      or (isinstance(step, OpsStep) and step.ipmodify))
    wants_direct = isinstance(step, (BpfStep, DirectStep)) and getattr(step, "bpf", "attach") == "attach"
    direct_is_ipmodify = bool(k.policy.MULTI_FLAGS & FTRACE_OPS_FL.IPMODIFY)  # before the series
    if isinstance(step, LivepatchStep) and errno == "EBUSY" and livepatch.klp_in_transition(k):
        return "-EBUSY: another live patch transition is in progress (kernel/livepatch/core.c: klp_enable_patch)"
    if wants_ipmodify and errno == "EBUSY":
        if ipm:
            return (f"-EBUSY: a second IPMODIFY ops on {ipm[0]} (ftrace.c: __ftrace_hash_update_ipmodify)")
        if drc and direct_is_ipmodify:
            return (f"-EBUSY: {drc[0]} already has a DIRECT ops, which is IPMODIFY too before 6.0 "
                    "(ftrace.c: __ftrace_hash_update_ipmodify)")
        if drc:
            return (f"-EBUSY: {drc[0]} has a DIRECT ops without ops_func, which cannot share with IPMODIFY "
                    "(ftrace.c: prepare_direct_functions_for_ipmodify)")
    if wants_ipmodify and errno == "EAGAIN":
        return (f"-EAGAIN: the BPF trampoline on {drc[0] if drc else funcs[0]} could not take its mutex to agree "
                "to share (trampoline.c: bpf_tramp_ftrace_ops_func, mutex_trylock)")
    if wants_direct:
        if isinstance(step, BpfStep) and errno == "EINVAL" and step.kind == "fmod_ret":
            return (f"-EINVAL: fmod_ret needs an error-injectable or security_* function, not {funcs[0]} "
                    "(verifier.c: check_attach_modify_return)")
        if isinstance(step, BpfStep) and errno == "EINVAL":
            return f"-EINVAL: {funcs[0]} is on the verifier's deny list (verifier.c: btf_id_deny)"
        if isinstance(step, BpfStep) and errno == "E2BIG":
            return "-E2BIG: the trampoline has BPF_MAX_TRAMP_LINKS (38) programs (trampoline.c: bpf_trampoline_link_prog)"
        if isinstance(step, BpfStep) and errno == "EBUSY" and bpf.bpf_trampoline_of(k, funcs[0]) is not None \
                and any(p.name == step.prog for p in k.subsys["bpf"].links):
            return "-EBUSY: this program is already linked (trampoline.c: bpf_trampoline_link_prog)"
        if errno == "EBUSY" and drc and isinstance(step, DirectStep):
            return (f"-EBUSY: {drc[0]} already has a direct trampoline; one per function "
                    "(ftrace.c: register_ftrace_direct_multi)")
        if errno == "EBUSY" and ipm and direct_is_ipmodify:
            return (f"-EBUSY: {ipm[0]} has an IPMODIFY ops and a DIRECT ops is IPMODIFY too before 6.0 "
                    "(ftrace.c: __ftrace_hash_update_ipmodify)")
        if errno == "EBUSY" and ipm:
            return (f"-EBUSY: a DIRECT ops without ops_func meets the IPMODIFY ops on {ipm[0]} "
                    "(ftrace.c: __ftrace_hash_update_ipmodify, ENABLE_SHARE_IPMODIFY_SELF needs ops_func)")
        if errno == "EAGAIN" and ipm:
            return (f"-EAGAIN: {ipm[0]} has an IPMODIFY ops; the direct ops must enable sharing and retry, which "
                    "only an ops with ops_func can (ftrace.c: __ftrace_hash_update_ipmodify)")
    if isinstance(step, (KprobeStep, OpsStep, DirectStep)) and errno == "EINVAL":
        return f"-{errno}: the client refuses (already registered, or not registered)"
    if errno == "ENOENT":
        return "-ENOENT: nothing of that name is loaded/attached"
    return f"-{errno}: returned by the model of {actions.describe(step)} (see ftlab run on an equivalent scenario)"


# ---------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------
def _changed_function(change: str) -> str:
    """The function of a record_changes line (``name [module] (n) ...`` or ``- name [module]``),
    as steps name it (``module:name``)."""
    return qualified_name(change.lstrip("- ").split(" (", 1)[0])


def _call_summary(k: Kernel, name: str) -> dict[str, Any]:
    kc = k.copy()
    try:
        trace = calls.call(kc, name)
    except KernelOops:
        return {"function": name, "oops": True}
    hooks = [f"{kd} {d}" for kd, d in trace.events
             if kd in ("kprobe_pre", "kprobe_post", "direct", "function", "function_graph", "ops")]
    unmodelled = [d for kd, d in trace.events if kd == "unmodelled"]
    return {"function": name, "body": body_label(name, trace.body), "programs": list(trace.programs),
            "hooks": hooks, "warnings": [str(w) for w in trace.warnings], "unmodelled": unmodelled}


def predict_variant(rb: Rebuilt, steps: list[Any], texts: list[str], policy: str) -> list[dict[str, Any]]:
    k, run = rb.kernel, rb.run
    baseline = set(check_all(k))
    out = []
    for n, (step, text) in enumerate(zip(steps, texts), 1):
        before_k = k.copy()
        before = dict(k.recs)
        nev = len(k.events)
        try:
            ret = run.apply(step).ret
            result = errno_name(ret) if isinstance(ret, int) else ret
        except KernelOops:
            result = "Oops"
        changes = record_changes(k, before)
        touched = list(dict.fromkeys(step_functions(step) + [_changed_function(c) for c in changes]))[:12]
        called = [_call_summary(k, f) for f in touched] if result != "Oops" else []
        now = set(check_all(k)) if result != "Oops" else set()
        broken = sorted(now - baseline)
        item = {"index": n, "action": text, "step": actions.describe(step), "result": result,
                "why": None if result == "ok" else explain(before_k, step, result, policy),
                "changes": changes, "calls": called, "broken": broken,
                "events": [str(e) for e in k.events[nev:]],
                "safe": result == "ok" and not broken and not k.ftrace_disabled}
        out.append(item)
        baseline = now
        if result == "Oops":
            break
    return out


def preflight(snapshot_path: str, action_texts: list[str], policy: str | None = None) -> dict[str, Any]:
    """The whole preflight: the document ``ftlab preflight --json`` prints (without format/command)."""
    snap = load_snapshot(snapshot_path)
    pol = policy or policy_for_release(snap.release)
    counters: dict[str, int] = {}
    steps = [parse_action(t, i, counters) for i, t in enumerate(action_texts, 1)]
    for i, st in enumerate(steps, 1):
        check_action_names(st, snap.catalogue, f"action {i}")
    rec = reconstruct(snap, pol)
    variants = []
    for label, acts in rec.variants():
        rb = rebuild(snap, rec, label, acts)
        bad_replay = [r for r in rb.replay if r["result"] != "ok"]
        variants.append({"label": label, "replay": rb.replay, "replay_ok": not bad_replay,
                         "mismatches": rb.mismatches,
                         "actions": predict_variant(rb, steps, action_texts, pol)})
    ok = all(v["replay_ok"] and all(a["safe"] for a in v["actions"]) for v in variants)
    return {"snapshot": snapshot_path, "kernel": snap.release, "policy": pol, "policy_from": "option" if policy
            else "kernel version", "notes": rec.notes,
            "questions": [{"text": q.text, "options": [lbl for lbl, _ in q.options]} for q in rec.questions],
            "variants": variants, "ok": ok}


def render(doc: dict[str, Any]) -> str:
    """Human-readable text of a preflight document."""
    out = [f"snapshot {doc['snapshot']}: kernel {doc['kernel']}, policy {doc['policy']} "
           f"(from the {doc['policy_from']})"]
    for n in doc["notes"]:
        out.append(f"  note: {n}")
    for q in doc["questions"]:
        out.append(f"  open question: {q['text']}: answering for each of: " + " | ".join(q["options"]))
    many = len(doc["variants"]) > 1
    for v in doc["variants"]:
        if many:
            out.append(f"== if {v['label']}")
        out.append("  rebuilt from the snapshot:")
        for r in v["replay"]:
            out.append(f"    {r['action']}: {r['result']}    [{r['why']}]")
        for m in v["mismatches"]:
            out.append(f"    ! differs from the machine: {m}")
        for a in v["actions"]:
            head = f"[{a['index']}] {a['action']}: "
            if a["result"] == "ok":
                head += "ok" + ("" if a["safe"] else " -- BUT a guarantee breaks")
            else:
                head += f"FAILS {a['why']}"
            out.append(head)
            for c in a["changes"]:
                out.append(f"    record: {c}")
            for c in a["calls"]:
                if c.get("oops"):
                    out.append(f"    call {c['function']}: Oops")
                    continue
                line = f"    call {c['function']}: body={c['body']} programs={c['programs'] or '-'}"
                if c["hooks"]:
                    line += f" hooks={c['hooks']}"
                out.append(line)
                for w in c["warnings"]:
                    out.append(f"      WARN {w}")
            for e in a["events"]:
                if not e.startswith("INFO"):
                    out.append(f"    kernel: {e}")
            for b in a["broken"]:
                out.append(f"    ! guarantee broken: {b}")
    out.append("verdict: " + ("every action succeeds safely" if doc["ok"]
                              else "some action fails or breaks a guarantee"))
    return "\n".join(out) + "\n"
