"""Which clients hold each enabled record of a snapshot, as actions to replay (see :mod:`ftlab.preflight`)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError
from ..model.catalogue import Catalogue
from ..model.clients import direct_client
from .load import Snapshot
from .records import parse_enabled_functions, symbol_of
from .replay import Action, Question, Reconstruction

OWNER_FUNCS = {
    "klp_ftrace_handler": "livepatch",
    "call_direct_funcs": "direct",
    "kprobe_ftrace_handler": "kprobe",
    "function_trace_call": "tracer",
    "ftrace_graph_func": "tracer",
}


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
        if target is not None and symbol_of(target).startswith("bpf_trampoline_"):
            key = symbol_of(target)[len("bpf_trampoline_"):].split("_", 1)[0]
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
                    f"{n}: BPF trampoline {symbol_of(target)} with unknown programs ({why})",
                    [(f"{n}: one fentry program", [Action("bpf", {"kind": "fentry", "prog": f"unknown_fentry@{n}",
                                                                   "target": n}, "assumed")]),
                     (f"{n}: one fexit program", [Action("bpf", {"kind": "fexit", "prog": f"unknown_fexit@{n}",
                                                                  "target": n}, "assumed")])]))
        elif target is not None and not target.startswith("0x"):
            m = re.match(r"^(\S+?)\+\S+(?: \[([^\]]+)\])?$", target)
            sym, mod = (m.group(1), m.group(2)) if m else (symbol_of(target), None)
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
