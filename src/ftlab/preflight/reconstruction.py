"""Which clients hold each enabled record of a snapshot, as actions to replay (see :mod:`ftlab.preflight`).

:func:`reconstruct` takes the evidence one source at a time, each a function of its own that adds
actions, questions and notes and counts the users it explains: live patches (/sys/kernel/livepatch,
records owned by klp_ftrace_handler), direct trampolines (BPF trampolines with the BPF links,
plain direct-call clients, owners it cannot tell), kprobes, the function tracer; whatever count is
left becomes unknown ftrace_ops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..model.catalogue import Catalogue
from ..model.clients import direct_client
from .load import Snapshot
from .records import Record, parse_enabled_functions, symbol_of
from .replay import Action, Question, Reconstruction

OWNER_FUNCS = {
    "klp_ftrace_handler": "livepatch",
    "call_direct_funcs": "direct",
    "kprobe_ftrace_handler": "kprobe",
    "function_trace_call": "tracer",
    "ftrace_graph_func": "tracer",
}


@dataclass
class _Evidence:
    """A reconstruction under way: the snapshot's records, the actions, questions and notes found
    so far, and per record how many of its users (and of their I, R, D flags) they explain."""

    snap: Snapshot
    records: list[Record]                 # every record of enabled_functions
    recs: dict[str, Record]               # those the catalogue has, by model name
    notes: list[str]
    actions: list[Action] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    explained: dict[str, dict[str, int]] = field(default_factory=dict)

    def explain(self, name: str, I: int = 0, R: int = 0, D: int = 0) -> None:  # noqa: E741
        """One more user of record ``name`` is explained (with these flags); other names are ignored."""
        e = self.explained.get(name)
        if e is not None:
            e["count"] += 1
            e["I"] += I
            e["R"] += R
            e["D"] += D


def reconstruct(snap: Snapshot, policy: str) -> Reconstruction:
    """Which clients hold what, as actions to replay (see :mod:`ftlab.preflight`): the evidence in
    turn -- live patches, direct trampolines (BPF links among them), kprobes, the function tracer
    -- and then, as unknown ftrace_ops, the users nothing explains."""
    ev = _enabled_records(snap)
    lp_funcs = _live_patches(ev)
    _direct_trampolines(ev)
    _kprobes(ev, lp_funcs)
    _function_tracer(ev)
    _unknown_ops(ev)
    return Reconstruction(policy, ev.actions, ev.questions, ev.notes, ev.records)


def _enabled_records(snap: Snapshot) -> _Evidence:
    """The snapshot's enabled_functions (InputError without it); records the catalogue does not
    have are noted and left out."""
    cat = snap.catalogue
    notes = list(snap.notes)
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
    explained = {n: {"count": 0, "I": 0, "R": 0, "D": 0} for n in recs}
    return _Evidence(snap, records, recs, notes, explained=explained)


# ---------------------------------------------------------------------------------------------
# Live patches
# ---------------------------------------------------------------------------------------------
def _live_patches(ev: _Evidence) -> set[str]:
    """Live patches: those of /sys/kernel/livepatch, then one per record owned by
    klp_ftrace_handler that no patch names. Returns the patched functions' model names."""
    lp_funcs = _sysfs_live_patches(ev)
    _unnamed_live_patches(ev, lp_funcs)
    _count_live_patches(ev, lp_funcs)
    return lp_funcs


def _sysfs_live_patches(ev: _Evidence) -> set[str]:
    """One action per patch of /sys/kernel/livepatch that holds a function, oldest first (the
    /proc/modules order); the model names of their functions."""
    doc = ev.snap.doc
    lp = doc.get("livepatch") if isinstance(doc.get("livepatch"), dict) else {}
    lp_funcs: set[str] = set()
    patches = lp.get("patches") if isinstance(lp.get("patches"), list) else None
    if patches is None:
        if any("livepatch" == OWNER_FUNCS.get(f) for r in ev.recs.values() for f in r.owner_funcs):
            ev.notes.append(f"/sys/kernel/livepatch was not readable ({lp.get('error')}); live patches are named "
                            "after their functions")
        patches = []
    modules = doc.get("modules") if isinstance(doc.get("modules"), list) else []
    for p in _patch_order([p for p in patches if isinstance(p, dict) and p.get("name")], modules):
        funcs = _patch_funcs(ev, p)
        if not funcs:
            continue
        state = _patch_state(ev, p)
        if state is None:
            continue
        ev.actions.append(Action("livepatch", {"name": p["name"], "funcs": funcs, "state": state,
                                               "replace": p.get("replace") == 1},
                                 f"/sys/kernel/livepatch/{p['name']} (enabled={p.get('enabled')}, "
                                 f"transition={p.get('transition')})"))
        lp_funcs.update(n for n, _ in funcs)
    return lp_funcs


def _patch_order(patches: list[dict], modules: list[str]) -> list[dict]:
    """Oldest first: /proc/modules lists the newest module first."""
    pos = {m: i for i, m in enumerate(modules)}
    return sorted(patches, key=lambda p: (-pos.get(p["name"], -1) if p["name"] in pos else 10 ** 6, p["name"]))


def _patch_funcs(ev: _Evidence, p: dict[str, Any]) -> list[tuple[str, int]]:
    """A sysfs patch's functions as (model name, sympos); those the catalogue lacks are noted."""
    funcs = []
    for obj in p.get("objects", []):
        objname = obj.get("name") if obj.get("name") != "vmlinux" else None
        for f in obj.get("funcs", []):
            ref = _func_ref(ev.snap.catalogue, objname, f.get("name", ""), int(f.get("sympos") or 0))
            if ref is None:
                where = f" of module {objname}" if objname else ""
                ev.notes.append(f"live patch {p['name']}: {f.get('name')}{where} is not in the catalogue "
                                "(a module that is not loaded, or a function without a record), left out")
            else:
                funcs.append(ref)
    return funcs


def _func_ref(cat: Catalogue, obj: str | None, name: str, sympos: int) -> tuple[str, int] | None:
    """A live patch's function of object ``obj`` (None: vmlinux) as (model name, sympos)."""
    idx = cat.object_indices(name, obj)
    if not idx:
        return None
    return (name if obj is None else f"{obj}:{name}", 0 if len(idx) == 1 else max(1, sympos))


def _patch_state(ev: _Evidence, p: dict[str, Any]) -> str | None:
    """``enabled``, ``patching`` or ``unpatching`` from a patch's enabled and transition; None (and
    a note) for a disabled patch out of transition, which holds no function."""
    enabled, transition = p.get("enabled"), p.get("transition")
    if enabled == 1 and transition == 1:
        return "patching"
    if enabled == 0 and transition == 1:
        return "unpatching"
    if enabled == 0:
        ev.notes.append(f"live patch {p['name']} is disabled and out of transition: it holds no function, left out")
        return None
    return "enabled"


def _unnamed_live_patches(ev: _Evidence, lp_funcs: set[str]) -> None:
    """A patch of its own for each record owned by klp_ftrace_handler that no sysfs patch names."""
    for n, r in ev.recs.items():
        if "klp_ftrace_handler" in r.owner_funcs and n not in lp_funcs:
            ev.actions.append(Action("livepatch", {"name": f"unknown_patch_{n}", "funcs": [(n, 0)],
                                                   "state": "enabled", "replace": False},
                                     f"enabled_functions: {n} is owned by klp_ftrace_handler, no sysfs patch names it"))
            lp_funcs.add(n)


def _count_live_patches(ev: _Evidence, lp_funcs: set[str]) -> None:
    """Each patched function has one IPMODIFY user, however many patches patch it (one klp_ops)."""
    patches = [a for a in ev.actions if a.kind == "livepatch"]
    for a in patches:
        for n, _ in a.args["funcs"]:
            ev.explain(n, I=1)
    for n in lp_funcs:
        if n in ev.explained:
            e = ev.explained[n]
            k = sum(1 for a in patches if any(f == n for f, _ in a.args["funcs"]))
            e["count"] -= k - 1
            e["I"] -= k - 1


# ---------------------------------------------------------------------------------------------
# Direct trampolines: BPF trampolines (with the BPF links) and plain direct-call clients
# ---------------------------------------------------------------------------------------------
TRACING_KINDS = ("fentry", "fexit", "fmod_ret")


@dataclass
class _BpfLinks:
    """The snapshot's BPF links, and those (and the program names) the reconstruction has used."""

    source: Any
    links: list[dict[str, Any]]
    used: set[Any] = field(default_factory=set)
    prog_names: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, snap: Snapshot) -> _BpfLinks:
        bpfdoc = snap.doc.get("bpf") if isinstance(snap.doc.get("bpf"), dict) else {}
        return cls(bpfdoc.get("source"), [ln for ln in bpfdoc.get("links", []) if isinstance(ln, dict)])

    def on(self, name: str, target: str) -> list[dict[str, Any]]:
        """The tracing links on record ``name``, whose trampoline is ``target``: those naming it,
        or the BTF object and id that the trampoline's key encodes."""
        key = symbol_of(target)[len("bpf_trampoline_"):].split("_", 1)[0]
        btf = (int(key) >> 32, int(key) & 0x7FFFFFFF) if key.isdigit() else None
        mine = [ln for ln in self.links if (ln.get("target") == name)
                or (btf is not None and ((ln.get("target_obj_id") or 1), ln.get("target_btf_id")) == btf)]
        return [ln for ln in mine if ln.get("kind") in TRACING_KINDS]


def _direct_trampolines(ev: _Evidence) -> None:
    """The records with D: a ``bpf_trampoline_`` target is a BPF trampoline (its programs from the
    links), a module symbol a plain direct-call client, anything else an open question."""
    links = _BpfLinks.of(ev.snap)
    groups: dict[tuple[str, str], list[str]] = {}
    for n, r in ev.recs.items():
        if "D" not in r.flags:
            continue
        ev.explain(n, R=1, D=1)
        target = r.direct
        if target is not None and symbol_of(target).startswith("bpf_trampoline_"):
            _bpf_trampoline(ev, links, n, target)
        elif target is not None and not target.startswith("0x"):
            m = re.match(r"^(\S+?)\+\S+(?: \[([^\]]+)\])?$", target)
            sym, mod = (m.group(1), m.group(2)) if m else (symbol_of(target), None)
            groups.setdefault((mod or "direct", sym), []).append(n)
        else:
            ev.questions.append(_unknown_direct_owner(n, target))
    _direct_clients(ev, groups)
    _unused_links(ev, links)


def _bpf_trampoline(ev: _Evidence, links: _BpfLinks, n: str, target: str) -> None:
    """The BPF trampoline on ``n``: one program per link on it, oldest link first; without any
    link, the question whether it runs an fentry or an fexit program."""
    mine = links.on(n, target)
    if not mine:
        why = ("no BPF link information in the snapshot" if not links.links
               else "no BPF link of the snapshot targets it")
        ev.questions.append(Question(
            f"{n}: BPF trampoline {symbol_of(target)} with unknown programs ({why})",
            [(f"{n}: one fentry program", [Action("bpf", {"kind": "fentry", "prog": f"unknown_fentry@{n}",
                                                           "target": n}, "assumed")]),
             (f"{n}: one fexit program", [Action("bpf", {"kind": "fexit", "prog": f"unknown_fexit@{n}",
                                                          "target": n}, "assumed")])]))
        return
    for ln in sorted(mine, key=lambda x: x.get("id") or 0):
        links.used.add(ln.get("id"))
        name = ln.get("prog_name") or f"prog{ln.get('prog_id')}"
        if name in links.prog_names:
            name = f"{name}#{ln.get('prog_id') or ln.get('id')}"
        links.prog_names.add(name)
        if ln.get("kind") == "fmod_ret":
            ev.notes.append(f"{n}: fmod_ret program {name}: its return value is not in the snapshot; "
                            "assumed 0 (the body runs)")
        ev.actions.append(Action("bpf", {"kind": ln["kind"], "prog": name, "target": n},
                                 f"BPF link {ln.get('id')} ({links.source}) on {n}"))


def _unknown_direct_owner(n: str, target: str | None) -> Question:
    """A direct trampoline on ``n`` without a symbol: BPF (an owner with ops_func) or not?"""
    what = "a raw address" if target else "no direct--> line"
    return Question(
        f"{n}: direct trampoline with unknown owner ({what})",
        [(f"{n}: owner has ops_func (a BPF trampoline, one fentry program)",
          [Action("bpf", {"kind": "fentry", "prog": f"unknown_fentry@{n}", "target": n}, "assumed")]),
         (f"{n}: owner without ops_func (a plain direct-call client)",
          [Action("direct", {"name": f"unknown_direct@{n}", "targets": [n], "tramp": "my_tramp_unknown"},
                  "assumed")])])


def _direct_clients(ev: _Evidence, groups: dict[tuple[str, str], list[str]]) -> None:
    """One plain direct-call client per (module, trampoline symbol) of the direct--> lines."""
    for i, ((mod, sym), funcs) in enumerate(sorted(groups.items())):
        tramp = sym if sym.startswith(direct_client.TRAMP_PREFIX) else f"{direct_client.TRAMP_PREFIX}_{sym}"
        ev.actions.append(Action("direct", {"name": mod if mod != "direct" else f"direct{i}", "targets": funcs,
                                            "tramp": tramp},
                                 f"enabled_functions: direct-->{sym}" + (f" [{mod}]" if mod != "direct" else "")
                                 + " is not a BPF image: a direct-call client without ops_func"))


def _unused_links(ev: _Evidence, links: _BpfLinks) -> None:
    """Tracing links that no enabled record's trampoline took are noted."""
    for ln in links.links:
        if ln.get("id") not in links.used and ln.get("kind") in TRACING_KINDS:
            ev.notes.append(f"BPF link {ln.get('id')} ({ln.get('kind')} {ln.get('prog_name')} -> {ln.get('target')}) "
                            "matches no enabled record, left out")


# ---------------------------------------------------------------------------------------------
# Kprobes
# ---------------------------------------------------------------------------------------------
def _kprobes(ev: _Evidence, lp_funcs: set[str]) -> None:
    """One kprobe per function of the kprobes list (ftrace-based, at the entry) or owned by
    kprobe_ftrace_handler; an I flag that no live patch explains means a post handler."""
    kl = ev.snap.text("kprobes_list")
    kp_funcs = _listed_kprobes(kl, ev.recs) if kl is not None else []
    for n, r in ev.recs.items():
        if "kprobe_ftrace_handler" in r.owner_funcs and n not in kp_funcs:
            kp_funcs.append(n)
    for n in kp_funcs:
        r = ev.recs[n]
        post = "I" in r.flags and n not in lp_funcs
        if kl is None and "kprobe_ftrace_handler" not in r.owner_funcs:
            continue
        ev.actions.append(Action("kprobe", {"target": n, "post": post},
                                 ("kprobes list" if kl is not None else "enabled_functions: kprobe_ftrace_handler")
                                 + ("; I flag without a live patch: a post handler (kprobe_ipmodify_ops)"
                                    if post else "")))
        ev.explain(n, I=int(post), R=1)


def _listed_kprobes(text: str, recs: dict[str, Record]) -> list[str]:
    """The functions of the kprobes list with an ftrace-based probe at their entry (``sym+0x0``,
    ``[FTRACE]``; a module's as ``module:name``), those with a record, once each."""
    kp_funcs: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and "[FTRACE]" in line and parts[2].endswith("+0x0"):
            fn = parts[2][:-4]
            if len(parts) > 3 and not parts[3].startswith("["):  # report_probe: "sym+0x0  module"
                fn = f"{parts[3]}:{fn}"
            if fn in recs and fn not in kp_funcs:
                kp_funcs.append(fn)
    return kp_funcs


# ---------------------------------------------------------------------------------------------
# The function tracer
# ---------------------------------------------------------------------------------------------
def _function_tracer(ev: _Evidence) -> None:
    """current_tracer function or function_graph: the tracer, with set_ftrace_filter and
    set_ftrace_notrace; another tracer is noted (its records count as unknown ftrace_ops)."""
    snap = ev.snap
    cur = (snap.text("current_tracer") or "").strip()
    if cur in ("function", "function_graph"):
        filt, filt_names = _filter_tokens(ev, "set_ftrace_filter")
        notr, notr_names = _filter_tokens(ev, "set_ftrace_notrace")
        ev.actions.append(Action("tracer", {"tracer": cur, "filter": filt, "notrace": notr,
                                            "filter_names": sorted(filt_names), "notrace_names": sorted(notr_names)},
                                 f"current_tracer is {cur}"))
        covered = filt_names if filt else set(ev.recs)
        for n in covered - notr_names:
            ev.explain(n)
    elif cur and cur != "nop":
        ev.notes.append(f"current_tracer is {cur!r}: not modelled; its records count as unknown ftrace_ops")
    elif not cur:
        ev.notes.append(f"current_tracer not readable ({snap.error('current_tracer')})")


def _filter_tokens(ev: _Evidence, key: str) -> tuple[list[str], set[str]]:
    """A filter file's tokens, one per listed record, and the records' model names."""
    cat = ev.snap.catalogue
    t = ev.snap.text(key)
    if t is None:
        ev.notes.append(f"{key} not readable ({ev.snap.error(key)}): assumed empty")
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
            ev.notes.append(f"{key}: {q!r} is not a catalogue name, left out")
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


# ---------------------------------------------------------------------------------------------
# What is left: unknown ftrace_ops
# ---------------------------------------------------------------------------------------------
def _unknown_ops(ev: _Evidence) -> None:
    """Users of a record that no evidence explains: unknown ftrace_ops, grouped by the IPMODIFY and
    SAVE_REGS that the record's flags still demand (the first extra user of a record has them)."""
    groups: dict[tuple[bool, bool], list[str]] = {}
    for n, r in ev.recs.items():
        e = ev.explained[n]
        extra = r.count - e["count"]
        if extra <= 0:
            if extra < 0:
                ev.notes.append(f"{n}: the snapshot counts {r.count} user(s), the evidence {e['count']}")
            continue
        ipm = "I" in r.flags and e["I"] == 0
        regs = "R" in r.flags and e["R"] == 0
        for j in range(extra):
            groups.setdefault((ipm and j == 0, regs and j == 0), []).append(n)
    for i, ((ipm, regs), funcs) in enumerate(sorted(groups.items())):
        owners = sorted({f for n in funcs for f in ev.recs[n].owner_funcs if f not in OWNER_FUNCS})
        ev.actions.append(Action("ops", {"name": f"unknown_ops{i + 1}", "funcs": funcs, "ipmodify": ipm,
                                         "save_regs": regs},
                                 "record count not explained by the other evidence"
                                 + (f" (tramp owner {', '.join(owners)})" if owners else "")))
