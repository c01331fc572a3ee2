"""ftlab's command line: ``ftlab <command> [options]`` (console script ``ftlab = ftlab.cli:main``).

Contract shared by every subcommand
-----------------------------------
* Output is built as one string and written at once (nothing is printed half-way).
* Human output is a ``rich`` table only when stdout is a terminal (and the table is small enough
  to render quickly); otherwise plain text meant for pipes. ``--json`` prints one JSON document
  whose ``"format"`` field is 1 and whose ``"command"`` field names the subcommand.
* Bad input (unknown option, bad value, unreadable or malformed catalogue, bad regex...) prints
  exactly one line ``ftlab: <where>: <what>`` on stderr and exits 2; never a traceback.
* Exit codes: 0 success; 1 a filter selected nothing (for ``--glob`` this is the kernel failing
  the write with -EINVAL), or an expectation / comparison failed (``run``, ``compare``); 2 bad
  input (or stdout not writable); 3 an internal model error (a bug: please report it); 130
  interrupted; 141 stdout closed early (SIGPIPE).

Adding a subcommand
-------------------
Write ``configure(parser)`` to declare its options (reuse :func:`add_catalogue_option`,
:func:`add_json_option`) and ``run(args) -> Output``, and register them::

    @subcommand("replay", "replay a scenario file", configure=_configure_replay)
    def cmd_replay(args: argparse.Namespace) -> Output:
        cat = load_catalogue(args)
        ...
        return Output(json_document("replay", steps=...) if args.json else text, status)

``run`` raises :class:`~ftlab.errors.InputError` for bad input; its ``where`` defaults to the
subcommand's name.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError, ModelError
from .model.catalogue import Catalogue
from . import catalogues

#: Version of the JSON documents printed with ``--json``.
JSON_FORMAT = 1
#: Above this many rows a terminal gets plain text too (rich needs seconds for ~40,000 rows).
RICH_MAX_ROWS = 2000


# ---------------------------------------------------------------------------------------------
# Plumbing shared by subcommands
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """What a subcommand produced: the complete stdout text and the exit status."""

    text: str
    status: int = 0


@dataclass(frozen=True)
class Subcommand:
    """One ``ftlab <name>`` subcommand: its options (``configure``) and its body (``run``)."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Output]


#: The subcommand table, in the order ``ftlab --help`` lists them.
SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]
               ) -> Callable[[Callable[[argparse.Namespace], Output]], Callable[[argparse.Namespace], Output]]:
    """Register the decorated ``run(args) -> Output`` as ``ftlab <name>``."""

    def register(run: Callable[[argparse.Namespace], Output]) -> Callable[[argparse.Namespace], Output]:
        if name in SUBCOMMANDS:
            raise ValueError(f"subcommand {name!r} registered twice")
        SUBCOMMANDS[name] = Subcommand(name, help, configure, run)
        return run

    return register


class _UsageError(Exception):
    """Raised instead of argparse's print-usage-and-exit, so that the error is one line."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but an error raises :class:`_UsageError` rather than printing usage."""

    def error(self, message: str) -> Any:
        sub = self.prog.split(None, 1)
        raise _UsageError(sub[1] if len(sub) > 1 else "usage", message)


def add_catalogue_option(parser: argparse.ArgumentParser) -> None:
    """``--catalogue PATH``: another kernel's available_filter_functions (plain or .gz)."""
    parser.add_argument("--catalogue", metavar="PATH",
                        help="available_filter_functions of another kernel (plain or .gz), or "
                             "'oracle-guest' (the embedded one plus the oracle guest's virtio/9p modules); "
                             "default: the embedded Debian 6.1.0-56-amd64 catalogue")


def load_catalogue(args: argparse.Namespace) -> Catalogue:
    """The catalogue named by ``--catalogue`` (InputError if unusable), else the embedded one."""
    path = getattr(args, "catalogue", None)
    if path is None:
        return catalogues.embedded()
    if path == "":
        raise InputError("empty path", "--catalogue")
    if path == "oracle-guest" and not os.path.exists(path):
        return catalogues.oracle_guest()
    return catalogues.from_file(path)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: print one JSON document instead of text."""
    parser.add_argument("--json", action="store_true",
                        help=f"print one JSON document (\"format\": {JSON_FORMAT})")


def json_document(command: str, **fields: Any) -> str:
    """One JSON document: ``{"format": 1, "command": command, **fields}``, newline-terminated."""
    return json.dumps({"format": JSON_FORMAT, "command": command, **fields}, indent=2) + "\n"


def use_rich(rows: int = 0) -> bool:
    """Whether human output should be a rich table: stdout is a terminal and ``rows`` is small."""
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and rows <= RICH_MAX_ROWS


def rich_table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
               caption: str | None = None, show_header: bool = True) -> str:
    """Render a rich table to a string (for a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, caption=caption, show_header=show_header)
    for row in rows:
        table.add_row(*row)
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=shutil.get_terminal_size().columns).print(table)
    return buf.getvalue()


def _non_negative_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _register_all() -> None:
    """Import the modules whose subcommands register themselves (run, show, compare, schema,
    explore, oracle). Done here rather than at import time so that importing any one of them
    first cannot hit a half-initialised module."""
    from . import cli_explore, cli_oracle, cli_preflight, cli_scenario  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    """The ``ftlab`` parser with one sub-parser per registered subcommand."""
    _register_all()
    parser = _ArgumentParser(prog="ftlab", description="An executable model of the Linux ftrace hook core.")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for sc in SUBCOMMANDS.values():
        sp = subs.add_parser(sc.name, help=sc.help, description=sc.help)
        sc.configure(sp)
        sp.set_defaults(_subcommand=sc)
    return parser


def _one_line(where: str, what: str) -> str:
    return f"ftlab: {where}: {what}".replace("\r", " ").replace("\n", " ") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ftlab`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    command = "usage"
    try:
        args, extras = parser.parse_known_args(argv)
        command = args.command
        if extras:  # argparse would blame the top-level parser; name the subcommand instead
            raise _UsageError(command, f"unrecognized arguments: {' '.join(extras)}")
        sc: Subcommand = args._subcommand
        out = sc.run(args)
    except _UsageError as e:
        sys.stderr.write(_one_line(e.where, e.message))
        return 2
    except InputError as e:
        sys.stderr.write(_one_line(e.where or command, e.message))
        return 2
    except ModelError as e:  # a model bug, not bad input: one line, its own exit code
        sys.stderr.write(_one_line(command, f"internal model error: {e}"))
        return 3
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        sys.stderr.write(_one_line(command, "interrupted"))
        return 130
    try:
        sys.stdout.write(out.text)
        sys.stdout.flush()
    except OSError as e:
        # The reader went away (``ftlab catalogue | head``) or the output cannot be written:
        # point stdout at /dev/null so that the interpreter's final flush stays silent.
        _discard_stdout()
        if isinstance(e, BrokenPipeError):
            return 141
        sys.stderr.write(_one_line("stdout", e.strerror or str(e)))
        return 2
    return out.status


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# ---------------------------------------------------------------------------------------------
# ftlab catalogue
# ---------------------------------------------------------------------------------------------
def _configure_catalogue(p: argparse.ArgumentParser) -> None:
    add_catalogue_option(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--summary", action="store_true",
                      help="print counts: records, unique names, duplicate names, invalid records")
    what.add_argument("--count", action="store_true", help="print only the number of selected records")
    p.add_argument("--grep", metavar="REGEX", help="keep records whose name matches this Python regex (re.search)")
    p.add_argument("--glob", metavar="TOKEN",
                   help="keep what this set_ftrace_filter token selects (foo, foo*, *foo, *foo*, glob, "
                        "1-based index, leading '!'); selecting nothing exits 1, as the kernel's -EINVAL")
    p.add_argument("--limit", metavar="N", type=_non_negative_int, help="list at most N records")
    add_json_option(p)
    p.epilog = ("Listing: one record per line, INDEX IP NAME, where INDEX is the 0-based record "
                "index (its tracefs index token is INDEX+1) and IP the record's synthetic address.")


@subcommand("catalogue", "list, count or filter the records of a function catalogue",
            configure=_configure_catalogue)
def cmd_catalogue(args: argparse.Namespace) -> Output:
    """``ftlab catalogue``: records of available_filter_functions, what a token selects.

    Plain text: one record per line, ``INDEX IP NAME`` (INDEX is the 0-based record index; the
    tracefs index token of a record is INDEX+1; IP is its synthetic address, ``0x%x``). With
    ``--glob``/``--grep`` a first comment line (``# ...``) gives the count; a truncated listing
    ends with a comment line. ``--summary`` prints ``key: value`` lines; ``--count`` a number.

    JSON (``--json``), format 1::

        {"format": 1, "command": "catalogue",
         "catalogue": {"source": str, "records": int, "unique_names": int,
                       "duplicate_names": int, "invalid_records": int},
         "filters": {"glob": null | {"token": str, "type": "MATCH_...", "search": str,
                                     "negate": bool},
                     "grep": null | str},
         "count": int,                  # records selected (all records without filters)
         "records": [{"index": int, "ip": "0x...", "name": str, "invalid": bool}, ...],
         "truncated": bool}             # records/truncated absent with --summary or --count

    ``ip`` is a hex string because it exceeds the integers JSON readers keep exactly. A negated
    token (``!foo``) lists what it would remove; ``negate`` says so.
    """
    from .model.glob import filter_parse_regex, match_records

    cat = load_catalogue(args)
    selected: Sequence[int] = range(len(cat))
    glob_info: dict[str, Any] | None = None
    if args.glob is not None:
        token = args.glob
        if not token or any(ch.isspace() for ch in token):
            raise InputError("give exactly one token (tracefs cuts a write into tokens at whitespace)",
                             "--glob")
        try:
            negate, indices = match_records(cat, token)
        except InputError as e:
            raise InputError(e.message, e.where or "--glob") from None
        func, _, command = token.partition(":")
        rtype, search, _ = filter_parse_regex(func)  # the function part of a func:mod:MODULE token
        module = command.partition(":")[2] if command.startswith("mod:") else None
        glob_info = {"token": token, "type": rtype.name, "search": search, "module": module, "negate": negate}
        selected = indices
    if args.grep is not None:
        try:
            rx = re.compile(args.grep)
        except re.error as e:
            raise InputError(f"bad regular expression: {e}", "--grep") from None
        names = cat.names
        selected = [i for i in selected if rx.search(names[i])]
    filtered = args.glob is not None or args.grep is not None
    status = 1 if filtered and not selected else 0
    count = len(selected)
    summary = {"source": cat.source, "records": len(cat), "unique_names": cat.unique_names(),
               "duplicate_names": cat.duplicate_names(), "invalid_records": len(cat.invalid)}
    shown = selected if args.limit is None else selected[:args.limit]
    truncated = len(shown) < count

    if args.json:
        fields: dict[str, Any] = {"catalogue": summary, "filters": {"glob": glob_info, "grep": args.grep},
                                  "count": count}
        if not (args.summary or args.count):
            invalid = cat.invalid
            fields["records"] = [{"index": i, "ip": f"0x{cat.ip(i):x}", "name": cat.names[i],
                                  "module": cat.module_of(i), "invalid": i in invalid} for i in shown]
            fields["truncated"] = truncated
        return Output(json_document("catalogue", **fields), status)

    describe = _describe_filters(glob_info, args.grep, count)
    if args.count:
        return Output(f"{count}\n", status)
    if args.summary:
        items = [(k.replace("_", " "), str(v)) for k, v in summary.items()]
        if filtered:
            items.append(("selected", str(count)))
        if use_rich(len(items)):
            return Output(rich_table(["", ""], items, title="catalogue", caption=describe or None,
                                     show_header=False), status)
        return Output("".join(f"{k}: {v}\n" for k, v in items), status)
    rows = [(str(i), f"0x{cat.ip(i):x}", cat.sym_of_ip(cat.ip(i))) for i in shown]
    footer = f"{count} records, first {len(shown)} shown (--limit {args.limit})" if truncated else ""
    if use_rich(len(rows)):
        caption = "; ".join(s for s in (describe, footer) if s) or None
        return Output(rich_table(["index", "ip", "name"], rows, caption=caption), status)
    lines = [f"# {describe}\n"] if describe else []
    lines.extend(f"{i} {ip} {name}\n" for i, ip, name in rows)
    if footer:
        lines.append(f"# {footer}\n")
    return Output("".join(lines), status)


def _describe_filters(glob_info: dict[str, Any] | None, grep: str | None, count: int) -> str:
    """``"73 records selected by --glob 'vfs_*' (MATCH_FRONT_ONLY)"``, or "" without filters."""
    parts = []
    if glob_info is not None:
        neg = ", '!': the token removes them" if glob_info["negate"] else ""
        mod = f" in module {glob_info['module']}" if glob_info.get("module") else ""
        parts.append(f"--glob {glob_info['token']!r} ({glob_info['type']}{mod}{neg})")
    if grep is not None:
        parts.append(f"--grep {grep!r}")
    if not parts:
        return ""
    return f"{count} record{'s' if count != 1 else ''} selected by {' and '.join(parts)}"


# ---------------------------------------------------------------------------------------------
# ftlab bench
# ---------------------------------------------------------------------------------------------
def _configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer runs per benchmark")
    p.add_argument("--explore", type=_non_negative_int, metavar="DEPTH", default=None,
                   help="also explore every bundled universe to DEPTH (seed-v2): states/s, peak memory")
    add_json_option(p)


@subcommand("bench", "time the model's hot paths (prints figures, never fails on them)",
            configure=_configure_bench)
def cmd_bench(args: argparse.Namespace) -> Output:
    """``ftlab bench``: median wall time of each registered benchmark (see :mod:`ftlab.bench`).

    JSON (``--json``), format 1: ``{"format": 1, "command": "bench", "runs": int,
    "results": [{"name": str, "runs": int, "median_s": float, "min_s": float, "max_s": float}]}``.
    """
    from .bench import explore_figures, format_explore, format_results, run_benchmarks

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


