"""What every ``ftlab`` subcommand shares: its record (:class:`Subcommand`), what it returns
(:class:`Output`), the argument parser whose errors are one line, the ``--catalogue`` and
``--json`` options, the JSON document wrapper, rich tables, and small argument types.

The command modules (:mod:`ftlab.cli.catalogue`, :mod:`ftlab.cli.scenario`, ...) import from here,
never from :mod:`ftlab.cli` itself, which imports them; this module imports no other of them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import catalogues
from ..errors import InputError
from ..model.catalogue import Catalogue

#: Version of the JSON documents printed with ``--json``.
JSON_FORMAT = 1
#: Above this many rows a terminal gets plain text too (rich needs seconds for ~40,000 rows).
RICH_MAX_ROWS = 2000


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


class UsageError(Exception):
    """Raised instead of argparse's print-usage-and-exit, so that the error is one line."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but an error raises :class:`UsageError` rather than printing usage."""

    def error(self, message: str) -> Any:
        sub = self.prog.split(None, 1)
        raise UsageError(sub[1] if len(sub) > 1 else "usage", message)


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


def non_negative_int(text: str) -> int:
    """An argparse type: a decimal integer, 0 or more."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value
