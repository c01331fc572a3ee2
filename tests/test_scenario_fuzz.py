"""Fuzzing the scenario loader: every malformed scenario is one stderr line ``ftlab: FILE:LINE: what``
and exit 2, never a traceback.

Most documents are generated as a valid scenario plus one mutation whose place is known, so the
test checks the line number and the message too; the others (broken YAML, arbitrary text and
bytes, random structures) check the contract only. Documents are written to a file and run with
the in-process ``ftlab.cli.main`` (fast); a handful go through the real console script. About 500
documents per run; ``FTLAB_FUZZ_SCALE=10`` runs ten times as many.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_cli_catalogue import FTLAB

from ftlab import catalogues
from ftlab.cli import main
from ftlab.model.errno import parse_errno
from ftlab.scenario.schema import Scenario

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: FTLAB_FUZZ_SCALE=10 runs ten times as many examples (a longer local soak; CI runs scale 1).
SCALE = float(os.environ.get("FTLAB_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, round(n * SCALE))


ERROR_LINE = re.compile(r"^ftlab: (?P<file>.+?):(?P<line>[0-9]+): (?P<what>\S.*)\n$")
WORKDIR = tempfile.mkdtemp(prefix="ftlab-fuzz-")
atexit.register(shutil.rmtree, WORKDIR, True)
CAT = catalogues.embedded()
SCENARIO_SCHEMA = Scenario.model_json_schema()


# ---------------------------------------------------------------------------------------------
# Documents: block mappings keep one key per line, so every key's line is known
# ---------------------------------------------------------------------------------------------
@dataclass
class Block:
    """A mapping emitted one key per line; a list of pairs, so that a key can repeat."""

    pairs: list[tuple[Any, Any]] = field(default_factory=list)

    def keys(self) -> list[Any]:
        return [k for k, _ in self.pairs]

    def get(self, key: Any) -> Any:
        return next(v for k, v in self.pairs if k == key)

    def set(self, key: Any, value: Any) -> None:
        self.pairs = [(k, value if k == key else v) for k, v in self.pairs]

    def drop(self, key: Any) -> None:
        self.pairs = [(k, v) for k, v in self.pairs if k != key]


@dataclass
class Steps:
    """The step list, emitted one item per entry (each a Block, or any value in flow style)."""

    items: list[Any]


def emit(doc: Block, fmt: str) -> tuple[str, dict[tuple[Any, ...], int]]:
    """``doc`` as YAML (block style, flow values) or JSON (one key per line), and the line of
    every path: a key's line, ``(..., '#', j)`` for the j-th pair, a step's own line as the loader
    sees it (its first key in YAML, its ``{`` in JSON)."""
    out: list[str] = []
    lines: dict[tuple[Any, ...], int] = {}

    def put(text: str, path: tuple[Any, ...] | None = None) -> None:
        out.append(text)
        if path is not None:
            lines.setdefault(path, len(out))

    def flow(v: Any) -> str:
        return json.dumps(v)

    if fmt == "yaml":
        def block(b: Block, path: tuple[Any, ...], indent: str, first_prefix: str | None = None) -> None:
            for j, (k, v) in enumerate(b.pairs):
                prefix = first_prefix if (j == 0 and first_prefix is not None) else indent
                kp = path + (k,)
                if isinstance(v, Block) and v.pairs:
                    put(f"{prefix}{flow(k)}:", kp)
                    lines[path + ("#", j)] = len(out)
                    block(v, kp, indent + "  ")
                elif isinstance(v, Steps):
                    put(f"{prefix}{flow(k)}:", kp)
                    lines[path + ("#", j)] = len(out)
                    for i, item in enumerate(v.items):
                        if isinstance(item, Block) and item.pairs:
                            lines[kp + (i,)] = len(out) + 1
                            block(item, kp + (i,), indent + "    ", first_prefix=indent + "  - ")
                        else:
                            put(f"{indent}  - {flow(_plain(item))}", kp + (i,))
                else:
                    put(f"{prefix}{flow(k)}: {flow(_plain(v))}", kp)
                    lines[path + ("#", j)] = len(out)

        block(doc, (), "")
    else:
        def jblock(b: Block, path: tuple[Any, ...], indent: str, head: str, tail: str) -> None:
            put(f"{head}{{", path)
            for j, (k, v) in enumerate(b.pairs):
                comma = "," if j < len(b.pairs) - 1 else ""
                kp = path + (k,)
                key = json.dumps(k if isinstance(k, str) else str(k))
                if isinstance(v, Block) and v.pairs:
                    lines[path + ("#", j)] = len(out) + 1
                    jblock(v, kp, indent + "  ", f"{indent}  {key}: ", "}" + comma)
                elif isinstance(v, Steps):
                    put(f"{indent}  {key}: [", kp)
                    lines[path + ("#", j)] = len(out)
                    for i, item in enumerate(v.items):
                        c2 = "," if i < len(v.items) - 1 else ""
                        if isinstance(item, Block) and item.pairs:
                            jblock(item, kp + (i,), indent + "    ", f"{indent}    ", "}" + c2)
                        else:
                            put(f"{indent}    {flow(_plain(item))}{c2}", kp + (i,))
                    put(f"{indent}  ]{comma}")
                else:
                    put(f"{indent}  {key}: {flow(_plain(v))}{comma}", kp)
                    lines[path + ("#", j)] = len(out)
            put(f"{indent}{tail}")

        jblock(doc, (), "", "", "}")
    return "\n".join(out) + "\n", lines


def _plain(v: Any) -> Any:
    if isinstance(v, Block):
        return {str(k): _plain(x) for k, x in v.pairs}
    if isinstance(v, Steps):
        return [_plain(x) for x in v.items]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------------------------
# Valid scenarios
# ---------------------------------------------------------------------------------------------
POLICIES = ["linux-5.18", "seed-v2", "linux-6.1"]
ARCHES = ["x86_64", "arm64", "ppc64le", "s390x"]
FUNCS = ["cmdline_proc_show", "version_proc_show", "security_task_getsid", "vfs_read"]

STEP_TEMPLATES: list[list[tuple[str, Any]]] = [
    [("livepatch", "enable"), ("patch", "p1"), ("funcs", ["cmdline_proc_show"])],
    [("livepatch", "replace"), ("patch", "p2"), ("funcs", ["version_proc_show", {"name": "type_show", "sympos": 2}])],
    [("livepatch", "disable"), ("patch", "p1")],
    [("transition", "complete")],
    [("bpf", "attach"), ("prog", "fx"), ("kind", "fexit"), ("target", "cmdline_proc_show")],
    [("bpf", "attach"), ("prog", "deny"), ("kind", "fmod_ret"), ("target", "security_task_getsid"), ("ret", -1)],
    [("kprobe", "add"), ("target", "cmdline_proc_show"), ("post", True)],
    [("tracer", "function"), ("filter", ["*_proc_show"]), ("notrace", ["version_proc_show"])],
    [("tracer", "nop")],
    [("direct", "register"), ("name", "d1"), ("targets", ["vfs_read"])],
    [("call", "cmdline_proc_show"), ("expect", Block([("body", "original"), ("programs", [])]))],
    [("call", "version_proc_show"), ("sympos", 1)],
    [("show", "enabled_functions"), ("expect", Block([("contains", ["cmdline_proc_show"])]))],
    [("show", "locks")],
]

#: Fields that name functions (check_names looks them up), per action key.
FUNC_FIELDS = {"livepatch": "funcs", "bpf": "target", "kprobe": "target", "direct": "targets", "call": "call"}
#: Required fields besides the action key.
REQUIRED = {"livepatch": ["patch"], "bpf": ["prog"], "kprobe": ["target"]}
ACTIONS = ["livepatch", "transition", "bpf", "kprobe", "tracer", "direct", "call", "show"]


def _copy(v: Any) -> Any:
    if isinstance(v, Block):
        return Block([(k, _copy(x)) for k, x in v.pairs])
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


@st.composite
def valid_scenarios(draw: st.DrawFn) -> Block:
    steps = [Block(_copy(draw(st.sampled_from(STEP_TEMPLATES)))) for _ in range(draw(st.integers(1, 6)))]
    pairs: list[tuple[Any, Any]] = []
    if draw(st.booleans()):
        pairs.append(("description", draw(st.text(BMP, max_size=30))))
    kernel = []
    if draw(st.booleans()):
        kernel.append(("policy", draw(st.sampled_from(POLICIES))))
    if draw(st.booleans()):
        kernel.append(("arch", draw(st.sampled_from(ARCHES))))
    if kernel:
        pairs.append(("kernel", Block(kernel)))
    pairs.append(("steps", Steps(steps)))
    return Block(pairs)


# ---------------------------------------------------------------------------------------------
# Mutations: each makes the scenario wrong in one known place
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    doc: Block
    fmt: str
    where: tuple[Any, ...] | None  # the path whose line the error must name (None: any line)
    what: str                     # a regex the message must match


BOGUS = st.from_regex(r"x_[a-z][a-z0-9_]{0,10}", fullmatch=True)
#: Basic-plane text: json.dumps escapes it as \\uXXXX, which YAML decodes to the same string
#: (astral characters would become surrogate pairs, which YAML does not join).
BMP = st.characters(codec="utf-8", exclude_categories=["Cs"], max_codepoint=0xFFFF)
ODD_TEXT = st.text(BMP, min_size=1, max_size=12)
WRONG_SCALARS = st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(BOGUS, st.integers(), max_size=1))


def _steps(doc: Block) -> list[Any]:
    return doc.get("steps").items


def _action(step: Block) -> str:
    return next(k for k in step.keys() if k in ACTIONS)


def m_unknown_field(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc)) - 1))
    key = draw(BOGUS)
    _steps(doc)[i].pairs.insert(draw(st.integers(1, len(_steps(doc)[i].pairs))), (key, draw(st.integers())))
    return ("steps", i, key), f"^steps\\[{i}\\]\\.{key}: unknown field '{key}'$"


def m_unknown_action(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc)) - 1))
    _steps(doc)[i] = Block([(draw(BOGUS), draw(st.text(max_size=8)))])
    return ("steps", i), f"^steps\\[{i}\\]: a step needs exactly one action key: "


def m_two_actions(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc)) - 1))
    step = _steps(doc)[i]
    other = draw(st.sampled_from([a for a in ACTIONS if a != _action(step)]))
    step.pairs.insert(draw(st.integers(0, len(step.pairs))), (other, "enable"))
    return ("steps", i), f"^steps\\[{i}\\]: a step needs exactly one action key: "


def m_not_a_mapping(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc)) - 1))
    _steps(doc)[i] = draw(st.one_of(st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3),
                                    st.none()))
    return ("steps", i), f"^steps\\[{i}\\]: a step needs exactly one action key: "


def m_missing_field(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    candidates = [i for i, s in enumerate(_steps(doc)) if _action(s) in REQUIRED]
    assume(candidates)
    i = draw(st.sampled_from(candidates))
    name = draw(st.sampled_from(REQUIRED[_action(_steps(doc)[i])]))
    _steps(doc)[i].drop(name)
    return ("steps", i), f"^steps\\[{i}\\]\\.{name}: Field required$"


#: field -> values that can never validate there
WRONG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "patch": st.one_of(st.integers(), WRONG_SCALARS, st.just("")),
    "prog": st.one_of(st.integers(), WRONG_SCALARS, st.just("")),
    "funcs": st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), min_size=1, max_size=2)),
    "target": st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.just({"name": ""}),
                        st.just({"name": "vfs_read", "sympos": -1})),
    "targets": st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)),
    "kind": st.one_of(st.integers(), BOGUS),
    "ret": st.one_of(BOGUS, WRONG_SCALARS),
    "post": st.one_of(BOGUS, st.lists(st.booleans(), max_size=2), st.integers(2, 99)),
    "filter": st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)),
    "notrace": st.one_of(st.integers(), st.dictionaries(BOGUS, st.integers(), max_size=1)),
    "name": st.one_of(st.integers(), WRONG_SCALARS),
    "sympos": st.one_of(BOGUS, st.integers(max_value=-1), WRONG_SCALARS),
    "expect": st.one_of(st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=2)),
    # action keys: a value outside their literal set (or of the wrong type)
    "livepatch": st.one_of(BOGUS, st.integers()), "transition": st.one_of(BOGUS, st.integers()),
    "bpf": st.one_of(BOGUS, st.integers()), "kprobe": st.one_of(BOGUS, st.integers()),
    "tracer": st.one_of(BOGUS, st.integers()), "direct": st.one_of(BOGUS, st.integers()),
    "call": st.one_of(st.integers(), WRONG_SCALARS, st.just("")), "show": st.one_of(BOGUS, st.integers()),
}


def m_wrong_type(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc)) - 1))
    step = _steps(doc)[i]
    name = draw(st.sampled_from([k for k in step.keys() if k in WRONG_VALUES]))
    step.set(name, draw(WRONG_VALUES[name]))
    return ("steps", i, name), f"^steps\\[{i}\\]\\.{name}(\\[[0-9]+\\])?(\\.(name|sympos))?: \\S"


EXPECT_BAD: list[tuple[str, st.SearchStrategy[Any], str]] = [
    ("result", st.from_regex(r"E[A-Z]{6,9}", fullmatch=True).filter(lambda v: not _is_errno(v)),
     r"unknown errno name"),
    ("result", st.one_of(st.integers(), WRONG_SCALARS), r"Input should be a valid string"),
    ("body", st.one_of(st.integers(), WRONG_SCALARS), r"Input should be a valid string"),
    ("programs", st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)), r"Input should be"),
    ("retval", st.one_of(BOGUS, WRONG_SCALARS), r"Input should be a valid integer"),
    ("events", st.one_of(st.integers(), st.text(max_size=4)), r"Input should be a valid list"),
    ("warnings", st.one_of(BOGUS, WRONG_SCALARS), r"Input should be a valid integer"),
    ("ftrace_dead", st.one_of(BOGUS, WRONG_SCALARS), r"Input should be a valid boolean"),
    ("contains", st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)), r"Input should be"),
]


def _is_errno(name: str) -> bool:
    try:
        parse_errno(name)
    except ValueError:
        return False
    return True


def m_bad_expect(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc)) - 1))
    step = _steps(doc)[i]
    if draw(st.booleans()):
        key = draw(BOGUS)
        exp = Block([("result", "ok"), (key, 1)])
        what = f"^steps\\[{i}\\]\\.expect\\.{key}: unknown field '{key}'$"
    else:
        key, values, msg = draw(st.sampled_from(EXPECT_BAD))
        exp = Block([(key, draw(values))])
        what = f"^steps\\[{i}\\]\\.expect\\.{key}(\\[[0-9]+\\])?: .*{msg}"
    if "expect" in step.keys():
        step.set("expect", exp)
    else:
        step.pairs.append(("expect", exp))
    return ("steps", i, "expect", key), what


def _with_kernel(doc: Block) -> Block:
    if "kernel" not in doc.keys():
        doc.pairs.insert(0, ("kernel", Block([("policy", "linux-6.1")])))
    return doc.get("kernel")


def m_bad_policy_or_arch(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    kernel = _with_kernel(doc)
    key = draw(st.sampled_from(["policy", "arch"]))
    value = draw(st.one_of(ODD_TEXT, st.integers(), st.sampled_from(["linux-6.2", "Linux-6.1", "x86-64", "mips"])))
    assume(value not in POLICIES + ARCHES)
    if key in kernel.keys():
        kernel.set(key, value)
    else:
        kernel.pairs.append((key, value))
    return ("kernel", key), f"^kernel\\.{key}: Input should be .*\\(got .*\\)$"


def m_kernel_field(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    kernel = _with_kernel(doc)
    key = draw(BOGUS)
    kernel.pairs.append((key, draw(st.integers())))
    return ("kernel", key), f"^kernel\\.{key}: unknown field '{key}'$"


def m_top_level(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    choice = draw(st.sampled_from(["field", "steps-empty", "steps-type", "kernel-type", "description-type"]))
    if choice == "field":
        key = draw(BOGUS)
        doc.pairs.insert(draw(st.integers(0, len(doc.pairs))), (key, draw(st.integers())))
        return (key,), f"^{key}: unknown field '{key}'$"
    if choice == "steps-empty":
        doc.set("steps", [])
        return ("steps",), r"^steps: List should have at least 1 item"
    if choice == "steps-type":
        doc.set("steps", draw(st.one_of(st.integers(), st.text(max_size=5), WRONG_SCALARS.filter(
            lambda v: not isinstance(v, list)))))
        return ("steps",), r"^steps: Input should be a valid list"
    if choice == "kernel-type":
        _with_kernel(doc)
        doc.set("kernel", draw(st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))))
        return ("kernel",), r"^kernel: Input should be a valid dictionary"
    if "description" not in doc.keys():
        doc.pairs.insert(0, ("description", ""))
    doc.set("description", draw(st.one_of(st.integers(), WRONG_SCALARS)))
    return ("description",), r"^description: Input should be a valid string"


def m_duplicate_key(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc)) - 1))
    step = _steps(doc)[i]
    j = draw(st.integers(0, len(step.pairs) - 1))
    key, value = step.pairs[j]
    at = draw(st.integers(j + 1, len(step.pairs)))
    step.pairs.insert(at, (key, _copy(value)))
    return ("steps", i, "#", at), f"^duplicate key '{key}'$"


def m_unknown_function(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    candidates = [i for i, s in enumerate(_steps(doc)) if _action(s) in FUNC_FIELDS
                  and FUNC_FIELDS[_action(s)] in s.keys()]
    assume(candidates)
    i = draw(st.sampled_from(candidates))
    step = _steps(doc)[i]
    name = draw(st.from_regex(r"nosuch_[a-z0-9_]{1,20}", fullmatch=True))
    assume(not CAT.indices(name))
    fieldname = FUNC_FIELDS[_action(step)]
    value = step.get(fieldname)
    step.set(fieldname, [name] + value[1:] if isinstance(value, list) else name)
    return ("steps", i), f"^unknown function '{name}' \\(not in catalogue "


def m_sympos_out_of_range(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc))))
    func = draw(st.sampled_from(["cmdline_proc_show", "type_show"]))
    n = len(CAT.indices(func))
    sympos = draw(st.integers(n + 1, n + 1000))
    if draw(st.booleans()):
        step = Block([("call", func), ("sympos", sympos)])
    else:
        step = Block([("livepatch", "enable"), ("patch", "px"), ("funcs", [{"name": func, "sympos": sympos}])])
    _steps(doc).insert(i, step)
    return ("steps", i), f"^function '{func}' has {n} occurrence\\(s\\); sympos {sympos} is out of range$"


def m_never_attached(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc))))
    name = draw(st.from_regex(r"never_[a-z0-9]{1,8}", fullmatch=True))
    if draw(st.booleans()):
        _steps(doc).insert(i, Block([("bpf", "detach"), ("prog", name)]))
        return ("steps", i), f"^steps\\[{i}\\]: no program '{name}' was attached by an earlier step$"
    _steps(doc).insert(i, Block([("kprobe", "remove"), ("target", "version_proc_show"), ("name", name)]))
    return ("steps", i), f"^steps\\[{i}\\]: no kprobe '{name}' was added by an earlier step$"


def m_incomplete_step(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    i = draw(st.integers(0, len(_steps(doc))))
    kind = draw(st.sampled_from(["livepatch", "bpf", "direct"]))
    if kind == "livepatch":
        step = Block([("livepatch", draw(st.sampled_from(["enable", "replace"]))), ("patch", "px"), ("funcs", [])])
        what = "needs funcs"
    elif kind == "bpf":
        pairs = [("bpf", "attach"), ("prog", "px"), ("kind", "fentry"), ("target", "vfs_read")]
        pairs.pop(draw(st.integers(2, 3)))
        step, what = Block(pairs), "needs kind and target"
    else:
        step, what = Block([("direct", "register"), ("name", "dx")]), "needs targets"
    _steps(doc).insert(i, step)
    return ("steps", i), f"^steps\\[{i}\\]: .*{what}$"


def m_catalogue(draw: st.DrawFn, doc: Block) -> tuple[tuple[Any, ...], str]:
    kernel = _with_kernel(doc)
    kernel.drop("catalogue")
    if draw(st.booleans()):
        kernel.pairs.append(("catalogue", draw(st.one_of(st.integers(), st.just([]),
                                                          st.lists(st.integers(), min_size=1, max_size=2)))))
        return ("kernel", "catalogue"), r"^(kernel\.catalogue\S*: |a catalogue needs)"
    # a synthetic catalogue without the functions the steps name: the first step naming one fails
    kernel.pairs.append(("catalogue", ["only_this_function"]))
    named = [i for i, s in enumerate(_steps(doc)) if _action(s) in FUNC_FIELDS and FUNC_FIELDS[_action(s)] in s.keys()]
    assume(named)
    return ("steps", named[0]), r"^unknown function '\w+' \(not in catalogue "


MUTATIONS = [m_unknown_field, m_unknown_action, m_two_actions, m_not_a_mapping, m_missing_field, m_wrong_type,
             m_bad_expect, m_bad_policy_or_arch, m_kernel_field, m_top_level, m_duplicate_key, m_unknown_function,
             m_sympos_out_of_range, m_never_attached, m_incomplete_step, m_catalogue]


@st.composite
def bad_documents(draw: st.DrawFn) -> Case:
    doc = draw(valid_scenarios())
    mutate = draw(st.sampled_from(MUTATIONS))
    where, what = mutate(draw, doc)
    return Case(doc, draw(st.sampled_from(["yaml", "json"])), where, what)


SYNTAX_BREAKERS = ["a: b: c", '"unterminated', "[unclosed", "{unclosed: 1", "@reserved", "`backtick",
                   "- x\n y: - z", "key: 'bad''' quote'", "%YAML 1.1", "*undefined_alias", "&", "? [a\n: b"]


@st.composite
def broken_yaml(draw: st.DrawFn) -> tuple[str, int]:
    text, _ = emit(draw(valid_scenarios()), draw(st.sampled_from(["yaml", "json"])))
    lines = text.splitlines()
    at = draw(st.integers(0, len(lines)))
    indent = " " * draw(st.sampled_from([0, 2, 4]))
    lines.insert(at, indent + draw(st.sampled_from(SYNTAX_BREAKERS)))
    text = "\n".join(lines) + "\n"
    return text, text.count("\n")


# ---------------------------------------------------------------------------------------------
# Running a document
# ---------------------------------------------------------------------------------------------
def run_in_process(data: str | bytes, name: str = "scenario.yaml") -> tuple[int, str, str, str]:
    path = os.path.join(WORKDIR, name)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["run", path])
    return rc, out.getvalue(), err.getvalue(), path


def assert_contract(rc: int, out: str, err: str, path: str, nlines: int) -> tuple[int, str]:
    """Exit 2, nothing on stdout, one stderr line ``ftlab: PATH:LINE: what`` with LINE in the file."""
    assert rc == 2, (rc, out, err)
    assert out == ""
    m = ERROR_LINE.match(err)
    assert m is not None, err
    assert m["file"] == path, err
    line = int(m["line"])
    assert 1 <= line <= max(nlines, 1) + 1, (line, nlines, err)
    return line, m["what"]


@settings(FAST, max_examples=examples(250))
@given(bad_documents())
def test_each_mutation_gives_one_line_at_its_place(case: Case) -> None:
    text, lines = emit(case.doc, case.fmt)
    rc, out, err, path = run_in_process(text, "scenario." + case.fmt)
    line, what = assert_contract(rc, out, err, path, text.count("\n"))
    assert re.search(case.what, what), (what, case.what, text)
    if case.where is not None:
        assert line == lines[case.where], (line, case.where, err, text)


@settings(FAST, max_examples=examples(60))
@given(broken_yaml())
def test_broken_yaml_gives_one_line(doc: tuple[str, int]) -> None:
    text, nlines = doc
    rc, out, err, path = run_in_process(text)
    assert_contract(rc, out, err, path, nlines)


YAMLISH = st.text(st.one_of(st.sampled_from(list(":-[]{},#&*!|>'\"%@`? \t\n\r\\")),
                            st.characters(codec="utf-8", exclude_categories=["Cs"])), max_size=120)


def _breaks(text: str) -> int:
    """An upper bound of the lines YAML sees (it also breaks lines at NEL, LS and PS)."""
    return sum(text.count(c) for c in "\n\r\x85\u2028\u2029")


@settings(FAST, max_examples=examples(60))
@given(YAMLISH)
def test_arbitrary_text_gives_one_line(text: str) -> None:
    assume("steps" not in text)  # without a steps key no document is valid
    rc, out, err, path = run_in_process(text)
    assert_contract(rc, out, err, path, _breaks(text))


@settings(FAST, max_examples=examples(30))
@given(st.binary(max_size=80))
def test_arbitrary_bytes_give_one_line(data: bytes) -> None:
    assume(b"steps" not in data)
    rc, out, err, path = run_in_process(data)
    assert_contract(rc, out, err, path, _breaks(data.decode("utf-8", "replace")))


KEYS = st.sampled_from(["description", "kernel", "steps", "policy", "arch", "catalogue", "livepatch", "bpf",
                        "kprobe", "call", "show", "tracer", "direct", "transition", "patch", "funcs", "name",
                        "sympos", "target", "targets", "prog", "kind", "ret", "post", "expect", "result",
                        "body", "programs", "retval", "events", "contains", "warnings", "x_bad"])
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "ok", "enable", "fexit",
                                                                             "cmdline_proc_show", "linux-6.1"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12)


@settings(FAST, max_examples=examples(100))
@given(st.dictionaries(KEYS, VALUES, max_size=5), st.sampled_from(["yaml", "json"]))
def test_random_structures_give_one_line(doc: dict[str, Any], fmt: str) -> None:
    doc["x_bad"] = 1  # an unknown top-level field: never a valid scenario
    pairs = [(k, Block(list(v.items())) if isinstance(v, dict) and v else v) for k, v in doc.items()]
    text, _ = emit(Block(pairs), fmt)
    rc, out, err, path = run_in_process(text)
    assert_contract(rc, out, err, path, text.count("\n"))


# ---------------------------------------------------------------------------------------------
# A handful through the real console script
# ---------------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=5, suppress_health_check=[HealthCheck.too_slow])
@given(bad_documents())
def test_console_script_gives_one_line_at_the_same_place(case: Case) -> None:
    text, lines = emit(case.doc, case.fmt)
    path = os.path.join(WORKDIR, "console." + case.fmt)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    proc = subprocess.run([FTLAB, "run", path], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr
    line, what = assert_contract(proc.returncode, proc.stdout, proc.stderr, path, text.count("\n"))
    assert re.search(case.what, what), (what, case.what)
    if case.where is not None:
        assert line == lines[case.where]


# ---------------------------------------------------------------------------------------------
# The generator itself: unmutated documents are valid, and load with the lines emit() predicts
# ---------------------------------------------------------------------------------------------
@settings(FAST, max_examples=examples(40))
@given(valid_scenarios(), st.sampled_from(["yaml", "json"]))
def test_generated_valid_scenarios_load_with_the_predicted_lines(doc: Block, fmt: str) -> None:
    from ftlab.scenario import load_scenario_text
    from ftlab.scenario.runner import check_names

    text, lines = emit(doc, fmt)
    if fmt == "json":
        json.loads(text)
    jsonschema.Draft202012Validator(SCENARIO_SCHEMA).validate(_plain(doc))  # ftlab schema agrees
    scenario, got = load_scenario_text(text, "gen")
    check_names(scenario, CAT, "gen", got)
    for path, line in lines.items():
        if "#" not in path and path:
            assert got.get(path) == line, (path, got.get(path), line, text)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_emit_predicts_step_lines(fmt: str) -> None:
    doc = Block([("kernel", Block([("policy", "seed-v2")])),
                 ("steps", Steps([Block([("call", "vfs_read")]), Block([("show", "ops"), ("x", 1)])]))])
    text, lines = emit(doc, fmt)
    n = lines[("steps", 1)]
    assert ('"show"' in text.splitlines()[n - 1]) == (fmt == "yaml")
