"""``ftlab explore``: every order of client actions and every interleaving, per policy.

JSON (``--json``), format 1: ``{"format": 1, "command": "explore", "universe", "depth",
"policies": [{"policy", "mutations", "states", "transitions", "elapsed_s", "states_per_s",
"complete", "violations": {name: {"count", "depth", "actions": [label], "messages",
"steps": [{"action", "result", "changes": [str]}], "traces": {function: [{"kind", "detail"}]}}},
"concurrent": [{"after", "together", "runs", "complete", "outcomes", "bad": [{"kind", "detail",
"order", "schedule", "segments": [{"task", "points", "from", "to"}], "traces", "results"}]}]}],
"mutation_score": null | {"killed", "total", "per": {...}}}``.
Exit: 0 nothing violated (or, with ``--mutations``, every mutation killed), 1 a violation (or a
surviving mutation), 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..bundled import bundled_universes, resolve_universe
from ..errors import InputError
from ..explorer.explore import PolicyReport, counterexample_scenario, dump_scenario, explore, interleaving_scenario
from ..explorer.universe import FtraceModel, UniverseSpec
from ..model.policies import policy_names
from ..model.policies.registry import MUTATIONS, mutation_applies
from ._base import Output, Subcommand, add_json_option, json_document, rich_table, use_rich


def _depth(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return v


def _positive(text: str) -> int:
    v = _depth(text)
    if v == 0:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return v


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("universe", metavar="UNIVERSE",
                   help="a universe file, the name of a bundled one, or 'all' (every bundled one)")
    p.add_argument("--policy", default=None, help="a policy, or 'all' (default: the universe's)")
    p.add_argument("--depth", type=_depth, default=6, help="action-sequence depth bound (default 6)")
    p.add_argument("--threads", type=_depth, default=2,
                   help="largest concurrent group to interleave (0 or 1: none; default 2)")
    p.add_argument("--preemptions", default="2", help="preemption bound per schedule, or 'all' (default 2)")
    p.add_argument("--mutation", action="append", default=[], choices=sorted(MUTATIONS),
                   help="explore with this mutation switched on (repeatable)")
    p.add_argument("--mutations", action="store_true",
                   help="run every mutation and print the mutation score (killed / total)")
    p.add_argument("--no-symmetry", action="store_true", help="do not merge states of interchangeable clients")
    p.add_argument("--jobs", type=_positive, default=None,
                   help="processes: explorations (policies, mutations) run side by side, or a single "
                        "one shares out its search (default: one per CPU)")
    p.add_argument("--max-states", type=_depth, default=None, help="stop after this many states")
    p.add_argument("--max-runs", type=_positive, default=5000,
                   help="interleavings tried per concurrent group at most (default 5000)")
    p.add_argument("--emit-scenario", metavar="FILE",
                   help="write the shortest counterexample as a scenario file that `ftlab run` replays")
    add_json_option(p)


def _progress_printer() -> Any:
    if not sys.stderr.isatty():
        return None

    def show(info: dict[str, Any]) -> None:
        sys.stderr.write(f"\r  depth {info['depth']}  states {info['states']}  frontier {info['frontier']}  "
                         f"{info['states_per_s']:.0f} states/s   ")
        sys.stderr.flush()

    return show


def cmd_explore(args: argparse.Namespace) -> Output:
    if args.universe == "all":
        if args.emit_scenario:
            raise InputError("give one universe to emit a counterexample from", "--emit-scenario")
        outs = [_explore_one(args, name) for name in bundled_universes()]
        status = max(o[1] for o in outs)
        score = _merge_scores([o[2] for o in outs])
        if args.json:
            return Output(json_document("explore", universes=[o[3] for o in outs], mutation_score=score), status)
        text = "\n".join(o[0] for o in outs)
        if score is not None:
            text += _render_score(score, "all bundled universes")
            status = 0 if score["killed"] == score["total"] else 1
        return Output(text, status)
    text, status, score, doc = _explore_one(args, args.universe)
    if args.json:
        return Output(json_document("explore", **doc, mutation_score=score), status)
    if score is not None:
        text += _render_score(score, doc["universe"])
    return Output(text, status)


def _merge_scores(scores: list[Any]) -> Any:
    if all(s is None for s in scores):
        return None
    per: dict[str, Any] = {}
    for s in scores:
        for key, v in (s or {"per": {}})["per"].items():
            cur = per.setdefault(key, {"killed": False, "new_violations": []})
            if v["killed"]:
                cur["killed"] = True
                cur["new_violations"] = sorted(set(cur["new_violations"]) | set(v["new_violations"]))
    return {"per": per, "killed": sum(v["killed"] for v in per.values()), "total": len(per)}


def _render_score(score: Any, where: str) -> str:
    out = [f"\nmutation score ({where}): {score['killed']}/{score['total']} killed\n"]
    for key, v in score["per"].items():
        out.append(f"  {key}: {'killed by ' + ', '.join(v['new_violations']) if v['killed'] else 'SURVIVED'}\n")
    return "".join(out)


def _explore_one(args: argparse.Namespace, universe: str) -> tuple[str, int, Any, dict[str, Any]]:
    spec, source = resolve_universe(universe)
    if args.policy in (None, ""):
        policies = [spec.policy]
    elif args.policy == "all":
        policies = policy_names()
    elif args.policy in policy_names(variants=True):
        policies = [args.policy]
    else:
        raise InputError(f"unknown policy {args.policy!r} (known: {', '.join(policy_names(variants=True))}, all)",
                         "--policy")
    if args.preemptions == "all":
        pb = None
    else:
        try:
            pb = int(args.preemptions)
            if pb < 0:
                raise ValueError
        except ValueError:
            raise InputError(f"not a number or 'all': {args.preemptions!r}", "--preemptions") from None
    FtraceModel(spec)  # bad input (an unknown function, clashing names) is reported here, not in a worker
    jobs = args.jobs or os.cpu_count() or 1
    common = dict(symmetry=not args.no_symmetry, threads=args.threads, preemption_bound=pb,
                  max_states=args.max_states, max_runs=args.max_runs)
    todo = [(p, frozenset(args.mutation)) for p in policies]
    if args.mutations:
        todo += [(p, frozenset([m])) for p in policies for m in MUTATIONS if mutation_applies(m, p)]
    progress = _progress_printer() if jobs == 1 or len(todo) == 1 else None
    done = run_explorations(spec, args.depth, todo, common, jobs, progress)
    reports = done[:len(policies)]
    score = None
    if args.mutations:
        score = {"per": {}, "killed": 0, "total": 0}
        for (p, muts), r in zip(todo[len(policies):], done[len(policies):]):
            base = reports[policies.index(p)]
            new = sorted(set(r.violated) - set(base.violated))
            killed = bool(new)
            score["per"][f"{p}:{next(iter(muts))}"] = {"killed": killed, "new_violations": new}
            score["killed"] += killed
            score["total"] += 1
    if progress is not None:
        sys.stderr.write("\r" + " " * 78 + "\r")
    if args.emit_scenario:
        _emit(reports, args.emit_scenario)
    bad = any(r.violated for r in reports)
    status = 1 if (bad if score is None else score["killed"] < score["total"]) else 0
    doc = {"universe": source, "depth": args.depth, "policies": [_report_dict(r) for r in reports]}
    return render(source, spec, reports, args.depth), status, score, doc


def _explore_job(job: tuple[Any, ...]) -> PolicyReport:
    spec, depth, policy, mutations, common = job
    return explore(spec, policy, depth, mutations=mutations, **common)


def run_explorations(spec: UniverseSpec, depth: int, todo: list[tuple[str, frozenset[str]]],
                     common: dict[str, Any], jobs: int, progress: Any = None) -> list[PolicyReport]:
    """Explore ``spec`` once per (policy, mutations) of ``todo``, in order; with ``jobs`` > 1 in
    that many forked processes side by side, or, for a single exploration, with the search itself
    shared out between ``jobs`` processes (:meth:`Checker.workers`). Each exploration is
    deterministic, so the reports are the same either way, but for their timings."""
    if jobs == 1 or len(todo) == 1:
        return [explore(spec, p, depth, mutations=m, progress=progress, workers=jobs, **common) for p, m in todo]
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(jobs, len(todo))) as pool:
        return pool.map(_explore_job, [(spec, depth, p, m, common) for p, m in todo], chunksize=1)


def _emit(reports: list[PolicyReport], path: str) -> None:
    """Write the shortest counterexample (an action order, else a bad interleaving) to ``path``."""
    doc = None
    for r in reports:
        if r.result.violations:
            name, cx = min(r.result.violations.items(), key=lambda kv: kv[1].depth)
            doc = counterexample_scenario(r.model, cx, name)
            break
    else:
        bad = [(r, g) for r in reports for g in r.groups if g.bad]
        if bad:
            r, g = bad[0]
            doc = interleaving_scenario(r.model, g, g.bad[0])
    if doc is None:
        raise InputError("no counterexample to emit (nothing was violated)", "--emit-scenario")
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(dump_scenario(doc))
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror}", path) from None


def _report_dict(r: PolicyReport) -> dict[str, Any]:
    res = r.result
    return {
        "policy": r.policy, "mutations": r.mutations, "states": res.states, "transitions": res.transitions,
        "elapsed_s": round(res.elapsed, 3), "states_per_s": round(res.states_per_s, 1), "complete": res.complete,
        "violations": {name: {"count": res.violation_counts.get(name, 0), "depth": cx.depth,
                              "actions": [str(a) for a in cx.actions], "messages": cx.messages,
                              **r.explain(name).as_dict()}
                       for name, cx in res.violations.items()},
        "concurrent": [{"after": g.after, "together": g.together, "runs": g.runs, "complete": g.complete,
                        "elapsed_s": round(g.elapsed, 3), "outcomes": g.outcomes, "bad": g.bad}
                       for g in r.groups],
    }


def render(source: str, spec: UniverseSpec, reports: list[PolicyReport], depth: int) -> str:
    out = [f"universe: {source} ({len(spec.functions)} functions, {len(spec.clients)} clients), depth {depth}\n"]
    if spec.description:
        out.append(f"  {spec.description}\n")
    rows = []
    for r in reports:
        res = r.result
        viol = ", ".join(f"{n} ({res.violation_counts.get(n, 0)})" for n in res.violations) or "none"
        rows.append([r.policy + (f" +{','.join(r.mutations)}" if r.mutations else ""), str(res.states),
                     str(res.transitions), f"{res.states_per_s:.0f}", viol])
    header = ["policy", "states", "transitions", "states/s", "violations (states)"]
    if use_rich(len(rows)):
        out.append(rich_table(header, rows))
    else:
        w = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        out.append("  ".join(h.ljust(w[i]) for i, h in enumerate(header)).rstrip() + "\n")
        for row in rows:
            out.append("  ".join(c.ljust(w[i]) for i, c in enumerate(row)).rstrip() + "\n")
    for r in reports:
        for name, cx in r.result.violations.items():
            out.append(f"\n[{r.policy}] {name}: shortest counterexample, {cx.depth} step(s)\n")
            ex = r.explain(name)
            for i, st in enumerate(ex.steps, 1):
                out.append(f"  {i}. {st.action}: {st.result}\n")
                out.extend(f"       {c}\n" for c in st.changes)
            for func, events in ex.traces.items():
                out.append(f"  then a call of {func}:\n")
                out.extend(f"       {kind} {detail}\n" for kind, detail in events)
            for m in cx.messages[:3]:
                out.append(f"  -> {m}\n")
        for g in r.groups:
            comp = "" if g.complete else " (bounded)"
            out.append(f"\n[{r.policy}] concurrently {' || '.join(g.together)}"
                       + (f" after {', '.join(g.after)}" if g.after else "") + f": {g.runs} interleavings{comp}\n")
            for o in g.outcomes:
                res_txt = ", ".join(f"{n}: {v}" for n, v in o["results"].items())
                extra = " DEADLOCK" if o["deadlock"] else " LIVELOCK" if o["livelock"] else (
                    f" ERROR {o['error']}" if o["error"] else "")
                out.append(f"  {o['runs']:>5} runs: {res_txt}{extra}\n")
            for b in g.bad:
                out.append(f"  {b['kind']}: {b['detail']}\n")
                for i, seg in enumerate(b["segments"], 1):
                    span = seg["from"] if seg["points"] == 1 else f"{seg['from']} ... {seg['to']}"
                    out.append(f"    {i}. {seg['task']}: {span} ({seg['points']} point{'s' * (seg['points'] != 1)})\n")
                out.append(f"    results: {', '.join(f'{n}: {r}' for n, r in b['results'].items())}\n")
                for func, events in b["traces"].items():
                    out.append(f"    then a call of {func}:\n")
                    out.extend(f"       {e['kind']} {e['detail']}\n" for e in events)
    return "".join(out)


SUBCOMMANDS = (
    Subcommand("explore", "every order of client actions and every interleaving of concurrent ones",
               configure=_configure, run=cmd_explore),
)
