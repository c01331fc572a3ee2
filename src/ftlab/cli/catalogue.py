"""``ftlab catalogue``: list, count or filter the records of a function catalogue (see
:func:`cmd_catalogue` for the output and its JSON document)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import re2

from ..errors import InputError
from ._base import (
    Output,
    Subcommand,
    add_catalogue_option,
    add_json_option,
    json_document,
    load_catalogue,
    non_negative_int,
    rich_table,
    use_rich,
)


def compile_grep(pattern: str) -> re2._Regexp:
    """``--grep``'s pattern, compiled by RE2: time linear in the name's length whatever the pattern
    (a backtracking engine takes minutes on ``^(.*.*)*X$``), POSIX classes such as ``[[:alpha:]]``
    understood; a pattern RE2 refuses (a back-reference, a repetition over 1000) is bad input."""
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own message on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as e:
        detail = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise InputError(f"bad regular expression: {detail}", "--grep") from None


def _configure_catalogue(p: argparse.ArgumentParser) -> None:
    add_catalogue_option(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--summary", action="store_true",
                      help="print counts: records, unique names, duplicate names, invalid records")
    what.add_argument("--count", action="store_true", help="print only the number of selected records")
    p.add_argument("--grep", metavar="REGEX", help="keep records whose name matches this regular expression "
                        "(RE2 syntax, searched anywhere in the name)")
    p.add_argument("--glob", metavar="TOKEN",
                   help="keep what this set_ftrace_filter token selects (foo, foo*, *foo, *foo*, glob, "
                        "1-based index, leading '!'); selecting nothing exits 1, as the kernel's -EINVAL")
    p.add_argument("--limit", metavar="N", type=non_negative_int, help="list at most N records")
    add_json_option(p)
    p.epilog = ("Listing: one record per line, INDEX IP NAME, where INDEX is the 0-based record "
                "index (its tracefs index token is INDEX+1) and IP the record's synthetic address.")


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
    from ..model.glob import filter_parse_regex, match_records

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
        rx = compile_grep(args.grep)
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


SUBCOMMANDS = (
    Subcommand("catalogue", "list, count or filter the records of a function catalogue",
               configure=_configure_catalogue, run=cmd_catalogue),
)
