"""Load a scenario file (YAML or JSON) into a validated :class:`~ftlab.scenario.schema.Scenario`.

Every problem becomes one :class:`~ftlab.errors.InputError` whose text is ``FILE:LINE: what``:
unreadable files, directories, empty or oversized files, YAML syntax, duplicate keys, unknown
steps or fields, wrong types, unknown policies or arches, unparseable ``expect`` values. Line
numbers come from the YAML node tree, so an error points at the offending key or value.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import InputError
from .schema import ACTION_KEYS, Scenario

#: Larger scenario files are refused before parsing (PyYAML needs minutes for tens of MB).
MAX_BYTES = 4 * 1024 * 1024

Path_ = tuple[Any, ...]


def load_scenario(path: str | os.PathLike[str]) -> tuple[Scenario, dict[Path_, int]]:
    """Read and validate ``path``; returns the scenario and its (path -> line) map."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise InputError("is a directory, not a scenario file", p)
    try:
        size = os.path.getsize(p)
        if size > MAX_BYTES:
            raise InputError(f"scenario file too large ({size} bytes; the limit is {MAX_BYTES})", p)
        with open(p, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise InputError(f"cannot read scenario: {e.strerror}", p) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not a text file (byte {e.start} is not UTF-8)", f"{p}:1") from None
    return load_scenario_text(text, p)


def load_scenario_text(text: str, source: str = "<scenario>") -> tuple[Scenario, dict[Path_, int]]:
    """Validate scenario ``text``; ``source`` names it in errors."""
    if not text.strip():
        raise InputError("empty scenario file", f"{source}:1")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise InputError(f"YAML syntax: {e.problem or e.context}", f"{source}:{line}") from None
    except yaml.YAMLError as e:  # pragma: no cover - composer errors are all marked
        raise InputError(f"YAML: {e}", f"{source}:1") from None
    if node is None:
        raise InputError("empty scenario file", f"{source}:1")
    lines: dict[Path_, int] = {}
    data = _to_python(node, (), lines, source)
    if not isinstance(data, dict):
        raise InputError("a scenario is a mapping with 'kernel' and 'steps'", f"{source}:{lines[()]}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        path = _data_path(data, err["loc"])
        line = _line_for(lines, path)
        where = _render_path(path)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {path[-1]!r}" if path else msg
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        raise InputError(f"{where}: {msg}" if where else msg, f"{source}:{line}") from None
    return scenario, lines


_CONSTRUCTOR = yaml.SafeLoader("")  # only used to turn scalar nodes into Python values


def _to_python(node: yaml.Node, path: Path_, lines: dict[Path_, int], source: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = _to_python(knode, path + ("<key>",), {}, source)
            if isinstance(key, (dict, list)):
                raise InputError("a mapping key must be a plain value", f"{source}:{knode.start_mark.line + 1}")
            if key in out:
                raise InputError(f"duplicate key {key!r}", f"{source}:{knode.start_mark.line + 1}")
            lines[path + (key,)] = knode.start_mark.line + 1
            out[key] = _to_python(vnode, path + (key,), lines, source)
            lines[path + (key,)] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, path + (i,), lines, source) for i, v in enumerate(node.value)]
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    except yaml.YAMLError as e:
        raise InputError(f"bad value: {e}", f"{source}:{node.start_mark.line + 1}") from None


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
    """The part of a pydantic error location that exists in the data, plus a missing field's name.

    The step union's tag (``('steps', 3, 'bpf', ...)``: the action key) is dropped.
    """
    loc = tuple(loc)
    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int) and loc[2] in ACTION_KEYS:
        loc = loc[:2] + loc[3:]
    path: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        elif isinstance(part, str) and isinstance(cur, dict):
            path.append(part)  # a missing field: name it; the line is its mapping's
            break
        else:
            break
        path.append(part)
    return tuple(path)


def _line_for(lines: dict[Path_, int], path: Path_) -> int:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


def _render_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
