"""``ftlab bench``: time the model's hot paths (prints figures, never fails on them)."""

from __future__ import annotations

import argparse

from ._base import Output, Subcommand, add_json_option, json_document, non_negative_int, rich_table, use_rich


def _configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer runs per benchmark")
    p.add_argument("--explore", type=non_negative_int, metavar="DEPTH", default=None,
                   help="also explore every bundled universe to DEPTH (seed-v2): states/s, peak memory")
    add_json_option(p)


def cmd_bench(args: argparse.Namespace) -> Output:
    """``ftlab bench``: median wall time of each registered benchmark (see :mod:`ftlab.bench`).

    JSON (``--json``), format 1: ``{"format": 1, "command": "bench", "runs": int,
    "results": [{"name": str, "runs": int, "median_s": float, "min_s": float, "max_s": float}]}``.
    """
    from ..bench import explore_figures, format_explore, format_results, run_benchmarks

    results = run_benchmarks(quick=args.quick)
    figs = explore_figures(args.explore) if args.explore is not None else None
    if args.json:
        extra = {"explore": [f.as_dict() for f in figs]} if figs is not None else {}
        return Output(json_document("bench", runs=results[0].runs if results else 0,
                                    results=[r.as_dict() for r in results], **extra))
    tail = ("\n" + format_explore(figs)) if figs is not None else ""
    if use_rich(len(results)):
        rows = [(r.name, f"{r.median_s:.6f}", f"{r.min_s:.6f}", str(r.runs)) for r in results]
        return Output(rich_table(["benchmark", "median s", "min s", "runs"], rows) + tail)
    return Output(format_results(results) + tail)


SUBCOMMANDS = (
    Subcommand("bench", "time the model's hot paths (prints figures, never fails on them)",
               configure=_configure_bench, run=cmd_bench),
)
