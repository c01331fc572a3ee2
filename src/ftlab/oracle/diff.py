"""``ftlab oracle diff``: the model and the real kernel, step by step, on the same observables.

Both sides are raw step records of one shape; :func:`ftlab.oracle.observe.observe` turns each into
the compared observables with the same code, so the comparison is plain equality per key. A step
present on one side only (the model stopped with an error or an Oops, the guest hung) differs in
every key; a step in which the guest died or hung (the runner marks it ``synthetic``) is compared
on its result only (``Oops``, ``hung``, ``crashed``), since nothing else could be read.
"""

from __future__ import annotations

from typing import Any

from .observe import OBSERVED, observe

MISSING = "(not run)"


def compare_steps(model: list[dict[str, Any]], kernel: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per step: ``{"index", "action", "agree", "differs": [key...], "model": obs, "kernel": obs}``."""
    rows = []
    for i in range(max(len(model), len(kernel))):
        m = observe(model[i]) if i < len(model) else None
        k = observe(kernel[i]) if i < len(kernel) else None
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


def compare_scenario(source: str, model: list[dict[str, Any]], oracle: dict[str, Any]) -> dict[str, Any]:
    """One scenario's comparison; ``oracle`` is its entry of the results document."""
    rows = compare_steps(model, oracle.get("steps", []))
    return {"source": source, "status": oracle.get("status"), "agree": all(r["agree"] for r in rows),
            "wall_s": oracle.get("wall_s"), "boot": oracle.get("boot"), "steps": rows}


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
    """Human text of a diff document (:func:`ftlab.cli_oracle` builds it)."""
    out = [f"kernel {doc['kernel']} vs model policy {doc['policy']}\n"]
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
