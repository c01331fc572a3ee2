"""``ftlab oracle diff``: the model and the real kernel, step by step, on the same observables.

Both sides are raw step records of one shape; :func:`ftlab.oracle.observe.observe` turns each into
the compared observables with the same code, so the comparison is plain equality per key. A step
present on one side only (the model stopped with an error or an Oops, the guest hung) differs in
every key; a step in which the guest died or hung (the runner marks it ``synthetic``) is compared
on its result only (``Oops``, ``hung``, ``crashed``), since nothing else could be read.

The model runs the policy of the kernel's series (:mod:`ftlab.oracle.kernels`: ``linux-6.1`` for
6.1, ``linux-6.12`` for 6.12). While the model has no such policy, :func:`model_policy` stands in
with ``linux-6.1``, says so in the document (``"policy_note"``) and the comparison is loose (see
:mod:`ftlab.oracle.observe`: columns and sizes of the records are not compared then).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputError
from ..model.policies.registry import DEFAULT_POLICY
from . import kernels
from .observe import OBSERVED, model_steps, observe, sticky_m

MISSING = "(not run)"
#: The policy that stands in for a kernel whose own policy the model lacks: the registry's default.
STAND_IN_POLICY = DEFAULT_POLICY


def model_policy(series: str) -> tuple[str, str | None]:
    """The model policy a diff on kernel ``series`` runs, and a note when it is a stand-in."""
    from ..model.policies import policy_names

    own = kernels.get(series).policy
    if own is not None and own in policy_names():
        return own, None
    return STAND_IN_POLICY, (f"the model has no policy for kernel {series}: it is compared with {STAND_IN_POLICY} "
                             "(loose: record columns and sizes are not compared)")


def results_series(results: dict[str, Any]) -> str:
    """The kernel series of a results document (older documents name only the release)."""
    if results.get("series"):
        return str(results["series"])
    k = kernels.series_of(str(results.get("kernel", "")))
    return k.series if k is not None else kernels.DEFAULT


def compare_steps(model: list[dict[str, Any]], kernel: list[dict[str, Any]],
                  strict: bool = True, sticky: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Per step: ``{"index", "action", "agree", "differs": [key...], "model": obs, "kernel": obs}``
    (``sticky``: see :func:`ftlab.oracle.observe.observe`)."""
    rows = []
    for i in range(max(len(model), len(kernel))):
        m = observe(model[i], strict, sticky) if i < len(model) else None
        k = observe(kernel[i], strict, sticky) if i < len(kernel) else None
        if m is None or k is None:
            differs = list(OBSERVED)
        elif model[i].get("synthetic") or kernel[i].get("synthetic"):
            # the guest died or hung in this step: only its outcome (Oops, hung) is known
            differs = ["result"] if m.get("result") != k.get("result") else []
        else:
            differs = [key for key in OBSERVED if m.get(key) != k.get(key)]
        src = model[i] if i < len(model) else kernel[i]
        rows.append({"index": i + 1, "action": src.get("action", ""), "agree": not differs, "differs": differs,
                     "model": m, "kernel": k})
    return rows


def compare_scenario(source: str, model: list[dict[str, Any]], oracle: dict[str, Any],
                     strict: bool = True) -> dict[str, Any]:
    """One scenario's comparison; ``oracle`` is its entry of the results document."""
    rows = compare_steps(model, oracle.get("steps", []), strict, sticky_m(oracle.get("touched_before")))
    return {"source": source, "status": oracle.get("status"), "agree": all(r["agree"] for r in rows),
            "wall_s": oracle.get("wall_s"), "boot": oracle.get("boot"), "steps": rows}


def diff_document(items: list[Any], results: dict[str, Any]) -> dict[str, Any]:
    """The diff of ``items`` (oracle runner items) with one kernel's ``results``: ``{"kernel",
    "series", "policy", "policy_note", "strict", "agree", "scenarios", "oracle"}``; InputError
    for an item the results lack."""
    series = results_series(results)
    policy, note = model_policy(series)
    strict = note is None
    by_source = {s["source"]: s for s in results["scenarios"]}
    by_base: dict[str, list[dict[str, Any]]] = {}
    for s in results["scenarios"]:
        by_base.setdefault(os.path.basename(s["source"]), []).append(s)
    scenarios = []
    for it in items:
        oracle = by_source.get(it.source)
        if oracle is None and len(by_base.get(os.path.basename(it.source), [])) == 1:
            oracle = by_base[os.path.basename(it.source)][0]  # the same file named another way
        if oracle is None:
            raise InputError("not in the oracle results (run it with 'ftlab oracle run')", it.source)
        model = model_steps(it.scenario, it.lines, it.source, policy=policy)
        scenarios.append(compare_scenario(it.source, model, oracle, strict))
    return {"kernel": results["kernel"], "series": series, "policy": policy, "policy_note": note,
            "strict": strict, "agree": all(s["agree"] for s in scenarios), "scenarios": scenarios,
            "oracle": results}


def _fmt(v: Any) -> list[str]:
    if v is None:
        return ["-"]
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v) and any("\n" in x or len(x) > 40 for x in v):
        out = []
        for rec in v:
            out.extend(rec.split("\n"))
        return out
    if isinstance(v, list) and not v:
        return ["[]"]
    return [str(v)]


def render(doc: dict[str, Any]) -> str:
    """Human text of a diff document (:mod:`ftlab.cli.oracle` builds it)."""
    out = [f"kernel {doc['kernel']} vs model policy {doc['policy']}\n"]
    if doc.get("policy_note"):
        out.append(f"note: {doc['policy_note']}\n")
    for sc in doc["scenarios"]:
        mark = "agree" if sc["agree"] else "DIFFER"
        wall = f", {sc['wall_s']:.1f} s" if isinstance(sc.get("wall_s"), (int, float)) else ""
        out.append(f"\n== {sc['source']}: {mark} (guest: {sc['status']}, boot {sc['boot']}{wall})\n")
        for r in sc["steps"]:
            out.append(f"  {'ok  ' if r['agree'] else 'DIFF'} [{r['index']}] {r['action']}\n")
            if r["agree"]:
                continue
            for key in r["differs"]:
                mv = MISSING if r["model"] is None else r["model"].get(key)
                kv = MISSING if r["kernel"] is None else r["kernel"].get(key)
                ml, kl = _fmt(mv), _fmt(kv)
                if len(ml) == 1 and len(kl) == 1 and len(ml[0]) + len(kl[0]) < 90:
                    out.append(f"       {key}: model={ml[0]}  kernel={kl[0]}\n")
                else:
                    out.append(f"       {key}:\n")
                    out.extend(f"         model : {ln}\n" for ln in ml)
                    out.extend(f"         kernel: {ln}\n" for ln in kl)
    nsc = len(doc["scenarios"])
    nagree = sum(1 for s in doc["scenarios"] if s["agree"])
    nsteps = sum(len(s["steps"]) for s in doc["scenarios"])
    ndiff = sum(1 for s in doc["scenarios"] for r in s["steps"] if not r["agree"])
    out.append(f"\n{nagree}/{nsc} scenarios agree; {ndiff} of {nsteps} steps differ\n")
    out.append(timings_text(doc.get("oracle") or {}))
    return "".join(out)


def timings_text(results: dict[str, Any]) -> str:
    """Per-boot and per-scenario wall times of an oracle results document."""
    if not results:
        return ""
    out = [f"timings: total {results.get('wall_s', 0):.1f} s (build {results.get('build_s', 0):.1f} s)\n"]
    for b in results.get("boots", []):
        ready = b.get("ready_s")
        out.append(f"  boot {b['index']}: {b['wall_s']:.1f} s wall, ready after "
                   f"{'-' if ready is None else f'{ready:.1f}'} s, {len(b.get('scenarios', []))} scenario(s), "
                   f"{b['ended']}\n")
    for s in results.get("scenarios", []):
        w = s.get("wall_s")
        out.append(f"  {s['id']}: {'-' if w is None else f'{w:.2f}'} s ({s['status']}, boot {s['boot']})\n")
    return "".join(out)
