"""Load a scenario file (YAML or JSON) into a validated :class:`~ftlab.scenario.schema.Scenario`.

Every problem becomes one :class:`~ftlab.errors.InputError` whose text is ``FILE:LINE: what``:
unreadable files, directories, empty or oversized files, YAML syntax, duplicate keys, unknown
steps or fields, wrong types, unknown policies or arches, unparseable ``expect`` values. Line
numbers come from the YAML node tree, so an error points at the offending key or value; problems
with the file as a whole (unreadable, a directory, too large, not UTF-8, empty) name line 1.
Nesting deeper than :data:`MAX_DEPTH`, recursive aliases and aliases that expand to more values
than the text could spell out are refused too, as are scalars YAML cannot construct
(``2024-02-30``, ``!!float abc``, integers of more than 4300 digits).
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
#: Deeper nesting is refused (PyYAML's composer and the conversion below recurse per level).
MAX_DEPTH = 100

Path_ = tuple[Any, ...]

#: Tags of the explorer's client union (universe files share this loader's plumbing).
UNION_TAGS = frozenset({"livepatch", "bpf", "kprobe", "tracer", "direct", "ops"})


def load_scenario(path: str | os.PathLike[str]) -> tuple[Scenario, dict[Path_, int]]:
    """Read and validate ``path``; returns the scenario and its (path -> line) map."""
    p = os.fspath(path)
    where = f"{p}:1"
    if os.path.isdir(p):
        raise InputError("is a directory, not a scenario file", where)
    try:
        # O_NONBLOCK: opening a FIFO that has no writer must not hang (it then reads as empty);
        # reads block again once it is open, so a pipe with a writer is read to its end.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            os.set_blocking(fd, True)
            size = os.fstat(fd).st_size
            if size > MAX_BYTES:
                raise InputError(f"scenario file too large ({size} bytes; the limit is {MAX_BYTES})", where)
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise InputError(f"cannot read scenario: {e.strerror or e}", where) from None
    if len(raw) > MAX_BYTES:  # not a regular file (a pipe, a device): its size is only known now
        raise InputError(f"scenario file too large (more than {MAX_BYTES} bytes)", where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not a text file (byte {e.start} is not UTF-8)", f"{p}:1") from None
    return load_scenario_text(text, p)


def load_scenario_text(text: str, source: str = "<scenario>") -> tuple[Scenario, dict[Path_, int]]:
    """Validate scenario ``text``; ``source`` names it in errors."""
    data, lines = parse_document(text, source, "scenario")
    if not isinstance(data, dict):
        raise InputError("a scenario is a mapping with 'kernel' and 'steps'", f"{source}:{lines[()]}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, data, lines, source) from None
    return scenario, lines


def parse_document(text: str, source: str, what: str = "scenario") -> tuple[Any, dict[Path_, int]]:
    """YAML/JSON ``text`` as plain Python data plus its (path -> line) map; one-line errors."""
    if not text.strip():
        raise InputError(f"empty {what} file", f"{source}:1")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", f"{source}:{_deep_line(text)}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise InputError(f"YAML syntax: {e.problem or e.context}", f"{source}:{line}") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, most C0 controls)
        line = text.count("\n", 0, e.position) + 1
        ch = e.character if isinstance(e.character, int) else ord(e.character)
        raise InputError(f"YAML: {e.reason} (character #x{ch:04x})", f"{source}:{line}") from None
    except yaml.YAMLError as e:  # pragma: no cover - composer errors are all marked
        raise InputError(f"YAML: {e}", f"{source}:1") from None
    if node is None:
        raise InputError(f"empty {what} file", f"{source}:1")
    lines: dict[Path_, int] = {}
    budget = [max(10_000, len(text))]  # aliases must not expand past what plain text could hold
    try:
        data = _to_python(node, (), lines, source, budget, set())
    finally:
        _CONSTRUCTOR.constructed_objects.clear()
        _CONSTRUCTOR.recursive_objects.clear()
    return data, lines


def validation_error(e: ValidationError, data: Any, lines: dict[Path_, int], source: str) -> InputError:
    """The first pydantic error of ``e`` as a one-line ``FILE:LINE: where: what`` InputError."""
    err = e.errors()[0]
    path = _data_path(data, err["loc"], missing=err["type"] == "missing")
    line = _line_for(lines, path)
    where = _render_path(path)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown field {path[-1]!r}" if path else msg
    elif err["type"] == "literal_error":
        got = repr(err.get("input"))
        msg = f"{msg} (got {got if len(got) <= 60 else got[:57] + '...'})"
    return InputError(f"{where}: {msg}" if where else msg, f"{source}:{line}")


_CONSTRUCTOR = yaml.SafeLoader("")  # only used to turn scalar nodes into Python values


def _to_python(node: yaml.Node, path: Path_, lines: dict[Path_, int], source: str, budget: list[int],
               active: set[int]) -> Any:
    line = node.start_mark.line + 1
    lines[path] = line
    budget[0] -= 1
    if budget[0] < 0:
        raise InputError("YAML aliases expand to too many values", f"{source}:{line}")
    if len(path) > MAX_DEPTH:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", f"{source}:{line}")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if id(node) in active:
            raise InputError("a YAML alias refers to a node that contains it", f"{source}:{line}")
        active.add(id(node))
        try:
            return _collection(node, path, lines, source, budget, active)
        finally:
            active.discard(id(node))
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as e:
        raise InputError(f"bad value: {e.problem or e.context}", f"{source}:{line}") from None
    except (yaml.YAMLError, ValueError, OverflowError) as e:  # 2024-02-30, !!float abc, huge ints
        raise InputError(f"bad value: {e}", f"{source}:{line}") from None


def _collection(node: yaml.MappingNode | yaml.SequenceNode, path: Path_, lines: dict[Path_, int], source: str,
                budget: list[int], active: set[int]) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, path + (i,), lines, source, budget, active) for i, v in enumerate(node.value)]
    out: dict[Any, Any] = {}
    for knode, vnode in node.value:
        key = _to_python(knode, path + ("<key>",), {}, source, budget, active)
        if isinstance(key, (dict, list)):
            raise InputError("a mapping key must be a plain value", f"{source}:{knode.start_mark.line + 1}")
        if key in out:
            raise InputError(f"duplicate key {key!r}", f"{source}:{knode.start_mark.line + 1}")
        out[key] = _to_python(vnode, path + (key,), lines, source, budget, active)
        lines[path + (key,)] = knode.start_mark.line + 1
    return out


def _deep_line(text: str) -> int:
    """The line where ``text`` first nests deeper than :data:`MAX_DEPTH` (PyYAML's events do not recurse)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return event.start_mark.line + 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return 1


def _data_path(data: Any, loc: tuple[Any, ...], missing: bool = False) -> Path_:
    """The part of a pydantic error location that exists in the data, plus a missing field's name.

    The step union's tag (``('steps', 3, 'bpf', ...)``: the action key) is dropped, and so is any
    other part that is not in the data (a union member's tag, ``'str'`` / ``'list[str]'``) unless
    the error is a ``missing`` field.
    """
    loc = tuple(loc)
    if len(loc) >= 3 and isinstance(loc[1], int) and (
            (loc[0] == "steps" and loc[2] in ACTION_KEYS) or (loc[0] == "clients" and loc[2] in UNION_TAGS)):
        loc = loc[:2] + loc[3:]
    path: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        elif missing and isinstance(part, str) and isinstance(cur, dict):
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
