"""Proposed actions on a rebuilt machine: parse them, run them on each variant, and say per action
what happens (the result or the kernel rule that refuses it, :func:`explain`; the records that
change; what a call of each touched function runs; the guarantees that break); :func:`preflight`
is the whole of it."""

from __future__ import annotations

from typing import Any

from .. import actions
from ..actions import BpfStep, DirectStep, KprobeStep, LivepatchStep, OpsStep, body_label, record_changes
from ..errors import KernelOops
from ..model import calls
from ..model.catalogue import Catalogue, qualified_name
from ..model.clients import bpf, livepatch
from ..model.errno import errno_name
from ..model.flags import FTRACE_FL, FTRACE_OPS_FL
from ..model.invariants import check_all
from ..model.kernel import Kernel
from .load import choose_policy, load_snapshot
from .reconstruction import reconstruct
from .replay import Rebuilt, rebuild

PREFLIGHT_FORMAT = 1


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
            return ("-E2BIG: the trampoline has BPF_MAX_TRAMP_LINKS (38) programs "
                    "(trampoline.c: bpf_trampoline_link_prog)")
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
    choice = choose_policy(snap, policy)
    pol = choice.policy
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
    return {"snapshot": snapshot_path, "kernel": snap.release, "policy": pol,
            "policy_from": "option" if choice.forced else "kernel build", "validated": choice.validated,
            "build": {"release": snap.release, "version": snap.package_version, "uname_v": snap.uname_v,
                      "how": choice.build.how if choice.build is not None else None},
            "notes": list(choice.notes) + rec.notes,
            "questions": [{"text": q.text, "options": [lbl for lbl, _ in q.options]} for q in rec.questions],
            "variants": variants, "ok": ok}
