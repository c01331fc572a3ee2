"""Bundled examples, and what a command-line argument naming a scenario or a universe stands for.

* :func:`bundled`, :func:`resolve`: the scenarios of ``examples/`` (and ``examples/oracle/``); a
  scenario argument (a file, a bundled name, ``oracle/NAME``) loaded.
* :func:`bundled_universes`, :func:`resolve_universe`: the universes of ``examples/universes/``;
  a universe argument loaded.
* :func:`oracle_bundled`, :func:`resolve_items`: the oracle's scenario arguments (files, folders,
  bundled names, ``oracle/NAME``, ``oracle/``) as items for :mod:`ftlab.oracle.runner`.

The command line (:mod:`ftlab.cli`), the benchmarks (:mod:`ftlab.bench`) and the preflight oracle
(:mod:`ftlab.preflight.oracle`) share these; this module imports none of them.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from .errors import InputError
from .explorer.universe import UniverseSpec, load_universe, load_universe_text
from .scenario import load_scenario, load_scenario_text
from .scenario.schema import Scenario


def bundled(folder: str | None = None) -> dict[str, Any]:
    """Bundled example scenarios (of ``examples/FOLDER``, e.g. ``oracle``): name -> resource path."""
    root = resources.files("ftlab.examples")
    if folder is not None:
        root = root.joinpath(folder)
    out = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml", ".json")):
            out[entry.name.rsplit(".", 1)[0]] = entry
    return out


def resolve(arg: str) -> tuple[Scenario, dict, str]:
    """A scenario file path, the name of a bundled scenario, or ``oracle/NAME`` (examples/oracle)."""
    if os.path.exists(arg):
        scenario, lines = load_scenario(arg)
        return scenario, lines, arg
    if arg.startswith("oracle/"):
        name = arg[len("oracle/"):]
        entry = bundled("oracle").get(name.rsplit(".", 1)[0] if name.endswith((".yaml", ".yml")) else name)
        if entry is None:
            raise InputError("no such file, and no oracle scenario of that name (see examples/oracle)", arg)
        source = f"examples/oracle/{entry.name}"
        scenario, lines = load_scenario_text(entry.read_text(encoding="utf-8"), source)
        return scenario, lines, source
    entry = bundled().get(arg)
    if entry is None:
        raise InputError("no such file, and no bundled scenario of that name (ftlab run lists them)", arg)
    source = f"examples/{entry.name}"
    scenario, lines = load_scenario_text(entry.read_text(encoding="utf-8"), source)
    return scenario, lines, source


def bundled_universes() -> dict[str, Any]:
    root = resources.files("ftlab.examples").joinpath("universes")
    return {e.name.rsplit(".", 1)[0]: e for e in sorted(root.iterdir(), key=lambda e: e.name)
            if e.name.endswith((".yaml", ".yml", ".json"))}


def resolve_universe(arg: str) -> tuple[UniverseSpec, str]:
    if os.path.exists(arg):
        return load_universe(arg), arg
    entry = bundled_universes().get(arg)
    if entry is None:
        raise InputError("no such file, and no bundled universe of that name "
                         f"(bundled: {', '.join(bundled_universes())})", arg)
    source = f"examples/universes/{entry.name}"
    return load_universe_text(entry.read_text(encoding="utf-8"), source), source


def oracle_bundled() -> dict[str, Any]:
    """examples/oracle: name -> resource."""
    return bundled("oracle")


def resolve_items(args: list[str]) -> list[Any]:
    """Scenario arguments -> oracle items (files, folders of files, bundled names, ``oracle/NAME``,
    ``oracle/``)."""
    from .oracle.runner import Item

    items = []
    for arg in args:
        if arg in ("oracle", "oracle/") and not os.path.exists(arg):
            for entry in oracle_bundled().values():
                source = f"examples/oracle/{entry.name}"
                sc, lines = load_scenario_text(entry.read_text(encoding="utf-8"), source)
                items.append(Item(sc, lines, source))
            continue
        if os.path.isdir(arg):  # a folder of scenarios (examples/oracle/, the output of `oracle gen`)
            files = sorted(f for f in os.listdir(arg) if f.endswith((".yaml", ".yml", ".json")))
            if not files:
                raise InputError("no scenario files (*.yaml, *.yml, *.json) in this folder", arg)
            for f in files:
                sc, lines, source = resolve(os.path.join(arg, f))
                items.append(Item(sc, lines, source))
            continue
        sc, lines, source = resolve(arg)
        items.append(Item(sc, lines, source))
    if not items:
        raise InputError("give at least one scenario", "oracle")
    return items
