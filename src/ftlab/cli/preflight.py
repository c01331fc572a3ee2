"""``ftlab snapshot`` and ``ftlab preflight``: record a real machine's ftrace state, predict actions on it.

* ``snapshot [--out FILE] [--no-bpftool]``: run on the machine (root): see :mod:`ftlab.snapshot`
  (standard library only; the file also runs alone: ``python3 snapshot.py --out x.json``).
* ``preflight SNAPSHOT ACTION... [--policy P] [--json]``: see :mod:`ftlab.preflight`. The policy is
  the one the registry says stands for the snapshot's exact kernel build (``uname -r`` + the Debian
  version of ``uname -v``; ``ftlab policies`` lists them); any other build is refused (one line
  naming the build and the nearest policy, exit 2) unless ``--policy`` forces one, and then the
  text and ``"validated": false`` say it was not validated on that build. Each ACTION is
  one argument (quote it): ``'livepatch enable --func cmdline_proc_show'``, ``'bpf attach fexit
  cmdline_proc_show'``, ``'kprobe add version_proc_show --post'``, ``'tracer function --filter
  vfs_*'``, ... Exit 0: every action succeeds and breaks no guarantee in every variant; 1: some
  action fails or breaks a guarantee (or the snapshot cannot be rebuilt); 2: bad input (an unknown
  build without ``--policy`` too).

JSON (``--json``), format 1: ``{"format": 1, "command": "preflight", "snapshot", "kernel",
"policy", "policy_from": "kernel build" | "option", "validated": bool, "build": {"release",
"version", "uname_v", "how"}, "notes": [str], "questions": [{"text", "options": [str]}], "ok",
"variants": [{"label", "replay": [{"action", "why", "result"}], "replay_ok", "mismatches": [str],
"actions": [{"index", "action", "step", "result", "why", "changes": [enabled_functions line],
"calls": [{"function", "body", "programs", "hooks", "warnings", "unmodelled"}], "broken": [str],
"events": [str], "safe"}]}]}``.
"""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..model.policies import policy_names
from ._base import Output, Subcommand, add_json_option, json_document


def _configure_snapshot(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="FILE", help="write the snapshot here (default: stdout)")
    p.add_argument("--no-bpftool", action="store_true", help="do not run bpftool; read /proc/*/fdinfo")


def cmd_snapshot(args: argparse.Namespace) -> Output:
    from .. import snapshot

    doc = snapshot.take_snapshot(use_bpftool=not args.no_bpftool)
    if args.out in (None, "-"):
        import json
        return Output(json.dumps(doc, indent=1) + "\n")
    if args.out == "":
        raise InputError("empty path", "--out")
    try:
        snapshot.write_snapshot(doc, args.out)
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror}", args.out) from None
    return Output(f"snapshot: {args.out}: kernel {doc['uname']['release']}, "
                  f"{len(doc['errors'])} item(s) not readable" + "".join(f"\n  {e}" for e in doc["errors"]) + "\n")


def _configure_preflight(p: argparse.ArgumentParser) -> None:
    p.add_argument("snapshot", metavar="SNAPSHOT", help="a JSON file written by ftlab snapshot")
    p.add_argument("actions", metavar="ACTION", nargs="+",
                   help="a proposed action, quoted as one argument, e.g. 'bpf attach fexit cmdline_proc_show'")
    p.add_argument("--policy", choices=policy_names(variants=True),
                   help="the rules to apply (default: the policy that stands for the snapshot's exact kernel "
                        "build, see ftlab policies; on any other build this forces one, not validated)")
    add_json_option(p)


def cmd_preflight(args: argparse.Namespace) -> Output:
    from ..preflight import preflight, render

    doc = preflight(args.snapshot, list(args.actions), policy=args.policy)
    status = 0 if doc["ok"] else 1
    if args.json:
        return Output(json_document("preflight", **doc), status)
    return Output(render(doc), status)


SUBCOMMANDS = (
    Subcommand("snapshot", "record this machine's ftrace state (run as root on the machine) for ftlab preflight",
               configure=_configure_snapshot, run=cmd_snapshot),
    Subcommand("preflight", "predict what proposed actions do on the machine a snapshot was taken on",
               configure=_configure_preflight, run=cmd_preflight),
)
