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

Layout
------
:mod:`ftlab.cli._base` holds what the subcommands share (:class:`Output`, :class:`Subcommand`,
the one-line-error parser, :func:`json_document`, the option helpers). Each command module
(:mod:`~ftlab.cli.catalogue`, :mod:`~ftlab.cli.bench`, :mod:`~ftlab.cli.explore`,
:mod:`~ftlab.cli.scenario`, :mod:`~ftlab.cli.oracle`, :mod:`~ftlab.cli.preflight`,
:mod:`~ftlab.cli.policies`) imports
``_base`` and no other module of this package, and exports its subcommands as data, a tuple
``SUBCOMMANDS``; this module lists those modules in :data:`COMMAND_MODULES` and builds the parser
from them. What a scenario or universe argument names is :mod:`ftlab.bundled`'s.

Adding a subcommand
-------------------
Write ``configure(parser)`` to declare its options (reuse :func:`add_catalogue_option`,
:func:`add_json_option`) and ``run(args) -> Output``, and list them in its module's
``SUBCOMMANDS`` (a new module also goes into :data:`COMMAND_MODULES`)::

    def cmd_replay(args: argparse.Namespace) -> Output:
        cat = load_catalogue(args)
        ...
        return Output(json_document("replay", steps=...) if args.json else text, status)

    SUBCOMMANDS = (Subcommand("replay", "replay a scenario file", configure=_configure_replay,
                              run=cmd_replay),)

``run`` raises :class:`~ftlab.errors.InputError` for bad input; its ``where`` defaults to the
subcommand's name.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import InputError, ModelError
from . import bench, catalogue, explore, oracle, policies, preflight, scenario
from ._base import (
    JSON_FORMAT,
    ArgumentParser,
    Output,
    Subcommand,
    UsageError,
    add_catalogue_option,
    add_json_option,
    json_document,
    load_catalogue,
)

__all__ = ["COMMAND_MODULES", "JSON_FORMAT", "SUBCOMMANDS", "Output", "Subcommand", "add_catalogue_option",
           "add_json_option", "build_parser", "json_document", "load_catalogue", "main"]

#: The command modules, in the order ``ftlab --help`` lists their subcommands.
COMMAND_MODULES = (catalogue, bench, explore, scenario, oracle, preflight, policies)


def _subcommand_table() -> dict[str, Subcommand]:
    table: dict[str, Subcommand] = {}
    for module in COMMAND_MODULES:
        for sc in module.SUBCOMMANDS:
            if sc.name in table:
                raise ValueError(f"subcommand {sc.name!r} defined twice")
            table[sc.name] = sc
    return table


#: The subcommand table, in the order ``ftlab --help`` lists them.
SUBCOMMANDS: dict[str, Subcommand] = _subcommand_table()


def build_parser() -> argparse.ArgumentParser:
    """The ``ftlab`` parser with one sub-parser per subcommand of :data:`SUBCOMMANDS`."""
    parser = ArgumentParser(prog="ftlab", description="An executable model of the Linux ftrace hook core.")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for sc in SUBCOMMANDS.values():
        sp = subs.add_parser(sc.name, help=sc.help, description=sc.help)
        sc.configure(sp)
        sp.set_defaults(_subcommand=sc)
    return parser


def _one_line(where: str, what: str) -> str:
    return f"ftlab: {where}: {what}".replace("\r", " ").replace("\n", " ") + "\n"


def _err(where: str, what: str) -> None:
    """The one error line on stderr, if there is a stderr to write it to."""
    if sys.stderr is not None:
        try:
            sys.stderr.write(_one_line(where, what))
        except OSError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ftlab`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    command = "usage"
    try:
        args, extras = parser.parse_known_args(argv)
        command = args.command
        if extras:  # argparse would blame the top-level parser; name the subcommand instead
            raise UsageError(command, f"unrecognized arguments: {' '.join(extras)}")
        sc: Subcommand = args._subcommand
        out = sc.run(args)
    except UsageError as e:
        _err(e.where, e.message)
        return 2
    except InputError as e:
        _err(e.where or command, e.message)
        return 2
    except ModelError as e:  # a model bug, not bad input: one line, its own exit code
        _err(command, f"internal model error: {e}")
        return 3
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        _err(command, "interrupted")
        return 130
    if sys.stdout is None:  # started with stdout closed (``ftlab run x >&-``): nowhere to answer
        _err("stdout", "closed: nowhere to write the output")
        return 2
    try:
        sys.stdout.write(out.text)
        sys.stdout.flush()
    except OSError as e:
        # The reader went away (``ftlab catalogue | head``) or the output cannot be written:
        # point stdout at /dev/null so that the interpreter's final flush stays silent.
        _discard_stdout()
        if isinstance(e, BrokenPipeError):
            return 141
        _err("stdout", e.strerror or str(e))
        return 2
    return out.status


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
