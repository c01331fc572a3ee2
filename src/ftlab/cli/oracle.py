"""``ftlab oracle``: replay scenarios on Debian 12's real Linux 6.1 (or 6.12) under QEMU and diff with the model.

Actions (``ftlab oracle ACTION``):

* ``setup``: install QEMU, the newest linux-image-6.1.*-amd64 and its headers, the newest
  bookworm-backports linux-image-6.12.*+deb12-amd64 and its headers, a static busybox and a
  compiler (Debian packages, as root); prints the kernel versions. Idempotent.
* ``run SCENARIO... [--out DIR]``: replay the scenarios in one guest (fresh guests only after a
  scenario leaves the kernel dirty or hangs); writes ``DIR/results.json``; prints per-scenario
  status and per-boot / per-scenario wall times. Exit 0 when every scenario ran to its end.
* ``diff SCENARIO... [--out DIR] [--results DIR] [--json]``: the same scenarios on the model
  (the kernel's policy, see :func:`ftlab.oracle.diff.model_policy`) and on the kernel (or from an
  earlier run's ``--results``); per step, agreement or both values. Exit 0 only if every
  observable of every step agrees.
* ``run`` and ``diff`` take ``--kernel 6.1|6.12|all`` (default 6.1); ``all`` runs each kernel in
  turn, with its results in ``DIR/<series>``; ``--json`` then gives ``"runs"`` / ``"diffs"``, lists
  of the per-kernel documents.
* ``gen --seed N --count K [--out DIR]``: seeded random scenarios over the callable functions.

A SCENARIO is a file, a bundled scenario name, ``oracle/NAME`` (one of examples/oracle), or
``oracle/`` for all of examples/oracle.

JSON (``--json``), format 1, ``"command": "oracle"`` and ``"action"`` naming the action: ``run``:
``{"format", "command", "action": "run", **results}`` (see :func:`ftlab.oracle.runner.run`);
``diff``: ``{"format", "command", "action": "diff", "kernel", "series",
"policy", "policy_note", "strict", "agree", "scenarios": [{"source", "status", "agree", "wall_s", "boot", "steps":
[{"index", "action", "agree", "differs", "model": obs, "kernel": obs}]}], "oracle": results}``;
``setup``: ``{"format", "command", "action": "setup", "kernel": {...} (6.1's), "kernels": [{...}...], "log": [...]}``;
``gen``:
``{"format", "command", "action": "gen", "seed", "files": [...]}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..bundled import resolve_items
from ..errors import InputError, OracleError
from ..oracle import kernels
from ._base import Output, Subcommand, add_json_option, json_document, non_negative_int

POLICY = kernels.get(kernels.DEFAULT).policy  # the default kernel's (ftlab.oracle.kernels has each kernel's)
DEFAULT_OUT = os.path.join("out", "oracle")


def _progress(quiet: bool) -> Any:
    if quiet:
        return None

    def say(text: str) -> None:
        sys.stderr.write(f"oracle: {text}\n")
        sys.stderr.flush()

    return say


def _configure(p: argparse.ArgumentParser) -> None:
    subs = p.add_subparsers(dest="oracle_action", metavar="ACTION", required=True)
    s = subs.add_parser("setup", help="install QEMU, the 6.1 and 6.12 kernels and headers, busybox, a compiler")
    add_json_option(s)
    for name, helptext in (("run", "replay scenarios on the real kernel under QEMU"),
                           ("diff", "run scenarios on the model and the real kernel and compare")):
        r = subs.add_parser(name, help=helptext)
        r.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                       help="a file, a bundled name, oracle/NAME, or oracle/ for all oracle scenarios")
        r.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
        r.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
        r.add_argument("--kernel", default=kernels.DEFAULT, choices=[*kernels.KERNELS, "all"],
                       help=f"the real kernel series (default {kernels.DEFAULT}; all: each in turn, "
                            "results in a subfolder of --out per kernel)")
        add_json_option(r)
        if name == "diff":
            r.add_argument("--results", metavar="DIR",
                           help="compare with an earlier 'oracle run' instead of booting a guest")
    g = subs.add_parser("gen", help="write seeded random scenarios over the callable functions")
    g.add_argument("--seed", type=non_negative_int, required=True)
    g.add_argument("--count", type=non_negative_int, required=True)
    g.add_argument("--out", metavar="DIR", default=os.path.join("out", "oracle-gen"))
    add_json_option(g)


def _oracle_error(e: OracleError) -> InputError:
    return InputError(str(e), "oracle")


def cmd_oracle(args: argparse.Namespace) -> Output:
    try:
        return _ACTIONS[args.oracle_action](args)
    except OracleError as e:
        raise _oracle_error(e) from None


def _setup(args: argparse.Namespace) -> Output:
    from ..oracle import install

    log: list[str] = []
    infos = install.ensure_all(log)
    if args.json:
        return Output(json_document("oracle", action="setup", kernel=infos[0].as_dict(),
                                    kernels=[i.as_dict() for i in infos], log=log))
    return Output("".join(f"{ln}\n" for ln in log) + "".join(
        f"kernel {i.version} ({i.vmlinuz}; headers {i.kbuild_dir})\n" for i in infos))


def _run(args: argparse.Namespace) -> Output:
    from ..oracle import runner
    from ..oracle.diff import timings_text

    items = resolve_items(args.scenarios)
    series = [k.series for k in kernels.select(args.kernel)]
    docs = runner.run_kernels(items, args.out, series, progress=_progress(args.quiet))
    status = 0 if all(s["status"] in ("clean", "dirty") for d in docs.values() for s in d["scenarios"]) else 1
    if args.json:
        if len(docs) == 1:
            return Output(json_document("oracle", action="run", **docs[series[0]]), status)
        return Output(json_document("oracle", action="run", runs=list(docs.values())), status)
    out = []
    for ser, doc in docs.items():
        where = runner.kernel_out_dir(os.path.abspath(args.out), ser, len(docs) > 1)
        out.append(f"kernel {doc['kernel']}; results in {os.path.join(where, 'results.json')}\n")
        for s in doc["scenarios"]:
            out.append(f"{s['status']:<8} {s['source']} ({len(s['steps'])} steps)"
                       + (f": {'; '.join(s['problems'])}" if s["problems"] else "") + "\n")
        out.append(timings_text(doc))
    return Output("".join(out), status)


def _diff(args: argparse.Namespace) -> Output:
    from ..oracle import runner
    from ..oracle.diff import diff_document, render

    items = resolve_items(args.scenarios)
    series = [k.series for k in kernels.select(args.kernel)]
    several = len(series) > 1
    docs = []
    for ser in series:
        if args.results:
            results = runner.load_results(runner.kernel_out_dir(args.results, ser, several))
        else:
            results = runner.run(items, runner.kernel_out_dir(args.out, ser, several),
                                 progress=_progress(args.quiet), kernel=ser)
        docs.append(diff_document(items, results))
    status = 0 if all(d["agree"] for d in docs) else 1
    if args.json:
        if not several:
            return Output(json_document("oracle", action="diff", **docs[0]), status)
        return Output(json_document("oracle", action="diff", agree=status == 0, diffs=docs), status)
    return Output("\n".join(render(d) for d in docs), status)


def _gen(args: argparse.Namespace) -> Output:
    from ..oracle.gen import generate_files

    files = generate_files(args.seed, args.count)
    os.makedirs(args.out, exist_ok=True)
    paths = []
    for name, text in files:
        path = os.path.join(args.out, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        paths.append(path)
    if args.json:
        return Output(json_document("oracle", action="gen", seed=args.seed, files=paths))
    return Output("".join(f"{p}\n" for p in paths))


_ACTIONS = {"setup": _setup, "run": _run, "diff": _diff, "gen": _gen}


SUBCOMMANDS = (
    Subcommand("oracle", "replay scenarios on the real Linux 6.1 or 6.12 kernel under QEMU and diff with the model",
               configure=_configure, run=cmd_oracle),
)
