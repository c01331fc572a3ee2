"""The scenario loader: ``FILE:LINE: what`` for every problem, at the right line, YAML and JSON alike."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
import yaml

from ftlab import catalogues
from ftlab.errors import InputError
from ftlab.model.catalogue import Catalogue
from ftlab.scenario import load_scenario, load_scenario_text, loader
from ftlab.scenario.runner import check_names
from ftlab.scenario.schema import BpfStep, CallStep, LivepatchStep

CAT = catalogues.embedded()


def error_of(text: str, source: str = "f.yaml") -> tuple[int, str]:
    """(line, what) of the error loading ``text`` (the text is dedented)."""
    with pytest.raises(InputError) as info:
        load_scenario_text(textwrap.dedent(text), source)
    err = info.value
    assert "\n" not in str(err)
    file, line = err.where.rsplit(":", 1)
    assert file == source
    return int(line), err.message


def names_error_of(text: str, source: str = "f.yaml") -> tuple[int, str]:
    """(line, what) of the check_names error of ``text`` (which must load)."""
    scenario, lines = load_scenario_text(textwrap.dedent(text), source)
    with pytest.raises(InputError) as info:
        check_names(scenario, CAT, source, lines)
    file, line = info.value.where.rsplit(":", 1)
    assert file == source
    return int(line), info.value.message


# -- line numbers at various depths ------------------------------------------------------------
def test_kernel_policy_block_style() -> None:
    line, what = error_of("""\
        description: x
        kernel:
          arch: x86_64
          policy: linux-9.9
        steps:
          - call: cmdline_proc_show
        """)
    assert line == 4
    assert what == "kernel.policy: Input should be 'linux-5.18', 'seed-v2', 'linux-6.1', 'linux-6.1.159', 'linux-6.12' or 'linux-6.12.58' (got 'linux-9.9')"


def test_kernel_arch_inside_a_flow_mapping_spanning_lines() -> None:
    line, what = error_of("""\
        kernel: {policy: seed-v2,
                 arch: mips}
        steps: [{call: cmdline_proc_show}]
        """)
    assert (line, what.split(":")[0]) == (2, "kernel.arch")
    assert "(got 'mips')" in what


def test_unknown_kernel_field() -> None:
    assert error_of("kernel:\n  policy: seed-v2\n  cpus: 4\nsteps: [{call: c}]\n") == \
        (3, "kernel.cpus: unknown field 'cpus'")


def test_unknown_step_field_points_at_its_key() -> None:
    assert error_of("""\
        steps:
          - call: cmdline_proc_show
          - livepatch: enable
            patch: p1
            funcs: [cmdline_proc_show]
            colour: red
        """) == (6, "steps[1].colour: unknown field 'colour'")


def test_missing_field_points_at_the_step() -> None:
    assert error_of("""\
        steps:
          - call: cmdline_proc_show

          - livepatch: enable
            funcs: [cmdline_proc_show]
        """) == (4, "steps[1].patch: Field required")


def test_wrong_type_points_at_the_field() -> None:
    assert error_of("""\
        steps:
          - kprobe: add
            target: cmdline_proc_show
            post: [1]
        """) == (4, "steps[0].post: Input should be a valid boolean")


def test_nested_list_item_field() -> None:
    line, what = error_of("""\
        steps:
          - livepatch: enable
            patch: p1
            funcs:
              - cmdline_proc_show
              - name: type_show
                sympos: -1
        """)
    assert (line, what) == (7, "steps[0].funcs[1].sympos: Input should be greater than or equal to 0")


def test_expect_result_unknown_errno() -> None:
    line, what = error_of("""\
        steps:
          - call: cmdline_proc_show
          - livepatch: enable
            patch: p1
            funcs: [cmdline_proc_show]
            expect:
              body: p1
              result: EWHAT
        """)
    assert line == 8
    assert what.startswith("steps[1].expect.result: ") and "EWHAT" in what


@pytest.mark.parametrize("expect,line,field", [
    ("expect: ok", 3, "steps[0].expect"),
    ("expect:\n      colour: 1", 4, "steps[0].expect.colour"),
    ("expect: {retval: x}", 3, "steps[0].expect.retval"),
    ("expect:\n      programs: [fx, 3]", 4, "steps[0].expect.programs[1]"),
    ("expect:\n      warnings: many", 4, "steps[0].expect.warnings"),
])
def test_unparseable_expect(expect: str, line: int, field: str) -> None:
    got_line, what = error_of(f"steps:\n  - call: c\n    {expect}\n")
    assert (got_line, what.split(": ")[0]) == (line, field)


@pytest.mark.parametrize("text,line", [
    ("steps:\n  - call: a\n    call: b\n", 3),                                    # in a step
    ("kernel: {policy: seed-v2}\nsteps: [{call: a}]\nkernel: {}\n", 3),           # top level
    ("steps:\n  - call: a\n    expect:\n      body: x\n      body: y\n", 5),      # in expect
    ('{"steps": [{"call": "a"}],\n "steps": []}\n', 2),                           # JSON
])
def test_duplicate_keys(text: str, line: int) -> None:
    got_line, what = error_of(text)
    assert got_line == line
    assert what.startswith("duplicate key ")


@pytest.mark.parametrize("text,line", [
    ("steps:\n  - call: cmdline_proc_show\n  - livepatch: [\n", 4),   # unclosed flow: at the end
    ("steps:\n\t- call: x\n", 2),                                        # tab indentation
    ("steps:\n  - call: x\n bad: indentation\n", 3),
    ("a: b: c\n", 1),
    ('description: "unterminated\nsteps: []\n', 3),
    ("steps: [{call: x}]\nx: *nowhere\n", 2),                           # undefined alias
])
def test_yaml_syntax(text: str, line: int) -> None:
    got_line, what = error_of(text)
    assert got_line == line
    assert what.startswith("YAML syntax: ")


@pytest.mark.parametrize("text,what", [
    ("", "empty scenario file"),
    ("  \n\n", "empty scenario file"),
    ("# only a comment\n", "empty scenario file"),
    ("- a\n- b\n", "a scenario is a mapping with 'kernel' and 'steps'"),
    ("hello\n", "a scenario is a mapping with 'kernel' and 'steps'"),
    ("steps: []\n", "steps: List should have at least 1 item after validation, not 0"),
    ("kernel: {}\n", "steps: Field required"),
])
def test_whole_document_problems_are_at_line_1(text: str, what: str) -> None:
    assert error_of(text) == (1, what)


def test_unknown_step_and_step_without_action() -> None:
    assert error_of("steps:\n  - call: c\n  - frob: x\n")[0] == 3
    line, what = error_of("steps:\n  - call: c\n  - show: ops\n    call: c\n")
    assert line == 3
    assert what.startswith("steps[1]: a step needs exactly one action key: livepatch, transition, bpf")


def test_union_member_tags_do_not_appear_in_the_path() -> None:
    assert error_of("kernel:\n  catalogue: {a: 1}\nsteps: [{call: c}]\n") == \
        (2, "kernel.catalogue: Input should be a valid string")


def test_a_long_bad_value_is_cut_short_in_the_message() -> None:
    _, what = error_of("kernel: {policy: " + "x" * 5000 + "}\nsteps: [{call: c}]\n")
    assert len(what) < 200 and what.endswith("...)")


@pytest.mark.parametrize("text,line,what", [
    ("steps: [{call: c}]\nwhen: 2024-02-30\n", 2, "bad value: day is out of range for month"),
    ("steps:\n  - call: c\n    sympos: !!float abc\n", 3, "bad value: could not convert string to float"),
    ("steps:\n  - call: c\n    sympos: " + "9" * 5000 + "\n", 3, "bad value: Exceeds the limit"),
    ("steps:\n  - !!python/object:os.system {}\n", 2, None),
    ("base: &b {call: c}\nsteps:\n  - <<: *b\n", 3, "bad value: could not determine a constructor"),
    ("steps:\n  - call: a\x00\n", 2, "YAML: special characters are not allowed (character #x0000)"),
])
def test_values_yaml_cannot_construct(text: str, line: int, what: str | None) -> None:
    got_line, got = error_of(text)
    assert got_line == line
    if what is not None:
        assert got.startswith(what), got


def test_deep_nesting_is_refused_at_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert error_of("steps:\n  - " + "[" * 101 + "]" * 101 + "\n") == (2, "nested more than 100 levels deep")
    # deeper than PyYAML's composer can recurse: found again with its (non-recursive) event parser
    rescans: list[str] = []
    deep_line = loader._deep_line
    monkeypatch.setattr(loader, "_deep_line", lambda text: rescans.append(text) or deep_line(text))
    assert error_of("x: 1\nsteps:\n  - " + "[" * 600 + "]" * 600 + "\n") == (3, "nested more than 100 levels deep")
    assert error_of("steps: " + "{a: " * 600 + "1" + "}" * 600 + "\n")[1] == "nested more than 100 levels deep"
    assert len(rescans) == 2


def test_recursive_alias_is_refused() -> None:
    assert error_of("steps: [{call: c}]\nx: &a [1, *a]\n") == (2, "a YAML alias refers to a node that contains it")


def test_alias_bomb_is_refused_quickly() -> None:
    text = "steps: [{call: c}]\nx0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    line, what = error_of(text)
    assert what == "YAML aliases expand to too many values"
    assert 2 <= line <= 11  # a node of the expansion (aliases share their anchor's node and line)


def test_plain_aliases_still_work() -> None:
    scenario, _ = load_scenario_text(textwrap.dedent("""\
        steps:
          - livepatch: enable
            patch: p1
            funcs: &f [cmdline_proc_show, version_proc_show]
          - livepatch: replace
            patch: p2
            funcs: *f
        """))
    assert scenario.steps[0].funcs == scenario.steps[1].funcs


def test_the_scalar_constructor_keeps_no_state_between_loads() -> None:
    load_scenario_text("steps: [{call: c, sympos: 1}]\n")
    with pytest.raises(InputError):
        load_scenario_text("steps: [{call: c, sympos: !!float x}]\n")
    assert not loader._CONSTRUCTOR.constructed_objects
    assert not loader._CONSTRUCTOR.recursive_objects


# -- JSON works as well as YAML ----------------------------------------------------------------
YAML_SCENARIO = """\
description: same in both
kernel: {policy: seed-v2, arch: arm64}
steps:
  - livepatch: enable
    patch: p1
    funcs: [cmdline_proc_show, {name: type_show, sympos: 3}]
  - bpf: attach
    prog: fx
    kind: fexit
    target: cmdline_proc_show
  - call: cmdline_proc_show
    expect: {body: p1, programs: [fx]}
"""


def test_json_file_loads_to_the_same_scenario(tmp_path: Path) -> None:
    data = yaml.safe_load(YAML_SCENARIO)
    y, j = tmp_path / "s.yaml", tmp_path / "s.json"
    y.write_text(YAML_SCENARIO)
    j.write_text(json.dumps(data, indent=2))
    sy, _ = load_scenario(y)
    sj, lines = load_scenario(j)
    assert sy == sj
    assert sj.kernel.policy == "seed-v2" and isinstance(sj.steps[1], BpfStep)
    text = j.read_text().splitlines()
    assert [text[lines[("steps", i)] - 1].strip() for i in range(3)] == ["{", "{", "{"]
    assert text[lines[("steps", 1, "kind")] - 1].strip() == '"kind": "fexit",'


def test_json_errors_name_the_right_line() -> None:
    text = textwrap.dedent("""\
        {
          "kernel": {"policy": "seed-v2"},
          "steps": [
            {"call": "cmdline_proc_show"},
            {
              "livepatch": "enable",
              "patch": "p1",
              "funcs": ["cmdline_proc_show"],
              "expect": {"result": 5}
            }
          ]
        }
        """)
    assert error_of(text, "s.json") == (9, "steps[1].expect.result: Input should be a valid string")
    no_patch = text.replace('"patch": "p1",\n', "").replace("5", '"ok"')
    assert error_of(no_patch, "s.json") == (5, "steps[1].patch: Field required")
    assert error_of('{"steps": [{"call": "c"}],\n "kernel": {"policy": "linux-4"}}', "s.json")[0] == 2
    assert error_of('{"steps": [{"call": "c"}\n', "s.json")[1].startswith("YAML syntax: ")


def test_json_check_names_points_at_the_step_object() -> None:
    text = '{\n  "steps": [\n    {"call": "cmdline_proc_show"},\n    {\n      "call": "nosuch_fn"\n    }\n  ]\n}\n'
    assert names_error_of(text, "s.json") == \
        (4, "unknown function 'nosuch_fn' (not in catalogue debian-6.1.0-56-amd64)")


def test_every_bundled_example_loads_and_passes_check_names() -> None:
    from ftlab.bundled import bundled

    examples = bundled()
    assert len(examples) >= 12
    for name, entry in examples.items():
        scenario, lines = load_scenario_text(entry.read_text(encoding="utf-8"), name)
        own = scenario.kernel.catalogue
        check_names(scenario, Catalogue.synthetic(own) if isinstance(own, list) else CAT, name, lines)
        assert all(lines[("steps", i)] >= 1 for i in range(len(scenario.steps)))


# -- check_names: errors point at the step's line ----------------------------------------------
@pytest.mark.parametrize("step", [
    "call: nosuch_fn",
    "livepatch: enable\n    patch: p9\n    funcs: [cmdline_proc_show, nosuch_fn]",
    "bpf: attach\n    prog: fx\n    kind: fentry\n    target: nosuch_fn",
    "kprobe: add\n    target: {name: nosuch_fn}",
    "direct: register\n    targets: nosuch_fn",
])
def test_unknown_function_points_at_the_step(step: str) -> None:
    text = f"steps:\n  - call: cmdline_proc_show\n\n  - {step}\n  - show: ops\n"
    assert names_error_of(text) == (4, "unknown function 'nosuch_fn' (not in catalogue debian-6.1.0-56-amd64)")


def test_sympos_out_of_range_points_at_the_step() -> None:
    n = len(CAT.indices("type_show"))
    assert n == 17
    ok = f"steps:\n  - call: type_show\n    sympos: {n}\n"
    scenario, lines = load_scenario_text(ok)
    check_names(scenario, CAT, "f.yaml", lines)
    assert names_error_of(f"steps:\n  - show: ops\n  - call: type_show\n    sympos: {n + 1}\n") == \
        (3, f"function 'type_show' has {n} occurrence(s); sympos {n + 1} is out of range")
    assert names_error_of("steps:\n  - livepatch: enable\n    patch: p\n    funcs:\n"
                          "      - {name: cmdline_proc_show, sympos: 2}\n") == \
        (2, "function 'cmdline_proc_show' has 1 occurrence(s); sympos 2 is out of range")


def test_detach_of_a_never_attached_program_points_at_the_step() -> None:
    text = textwrap.dedent("""\
        kernel: {policy: seed-v2}
        steps:
          - bpf: attach
            prog: fx
            kind: fexit
            target: cmdline_proc_show
          - bpf: detach
            prog: fx
          - bpf: detach
            prog: fe
        """)
    assert names_error_of(text) == (9, "steps[2]: no program 'fe' was attached by an earlier step")
    # detaching before attaching is the same mistake
    assert names_error_of("steps:\n  - bpf: detach\n    prog: fx\n  - bpf: attach\n    prog: fx\n"
                          "    kind: fexit\n    target: vfs_read\n") == \
        (2, "steps[0]: no program 'fx' was attached by an earlier step")


def test_remove_of_a_never_added_kprobe_and_incomplete_steps() -> None:
    assert names_error_of("steps:\n  - kprobe: add\n    target: vfs_read\n  - kprobe: remove\n"
                          "    target: vfs_read\n    name: other\n") == \
        (4, "steps[1]: no kprobe 'other' was added by an earlier step")
    assert names_error_of("steps:\n  - livepatch: enable\n    patch: p\n") == \
        (2, "steps[0]: livepatch enable needs funcs")
    assert names_error_of("steps:\n  - show: ops\n  - bpf: attach\n    prog: p\n    target: vfs_read\n") == \
        (3, "steps[1]: bpf attach needs kind and target")
    assert names_error_of("steps:\n  - direct: register\n") == (2, "steps[0]: direct register needs targets")


def test_valid_scenario_passes_check_names() -> None:
    scenario, lines = load_scenario_text(YAML_SCENARIO)
    check_names(scenario, CAT, "f.yaml", lines)
    assert isinstance(scenario.steps[0], LivepatchStep) and isinstance(scenario.steps[2], CallStep)


# -- files: directories, unreadable, empty, huge, pipes -----------------------------------------
def file_error(path: str | os.PathLike[str]) -> tuple[str, str]:
    with pytest.raises(InputError) as info:
        load_scenario(path)
    return info.value.where, info.value.message


def test_directory(tmp_path: Path) -> None:
    assert file_error(tmp_path) == (f"{tmp_path}:1", "is a directory, not a scenario file")


def test_missing_file_and_broken_symlink(tmp_path: Path) -> None:
    assert file_error(tmp_path / "nope.yaml") == (f"{tmp_path / 'nope.yaml'}:1",
                                                  "cannot read scenario: No such file or directory")
    link = tmp_path / "broken.yaml"
    link.symlink_to(tmp_path / "nowhere")
    assert file_error(link)[1] == "cannot read scenario: No such file or directory"


def test_unix_socket_cannot_be_opened_even_by_root() -> None:
    """chmod 000 does not stop root (CAP_DAC_OVERRIDE); open(2) of a socket fails with ENXIO for
    everyone, so it stands for an unreadable file here."""
    d = tempfile.mkdtemp(prefix="ftlab-")  # short: a socket path has at most 107 bytes
    try:
        path = os.path.join(d, "s.yaml")
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path)
            assert file_error(path) == (f"{path}:1", "cannot read scenario: No such device or address")
    finally:
        shutil.rmtree(d)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "e.yaml"
    p.write_bytes(b"")
    assert file_error(p) == (f"{p}:1", "empty scenario file")


def test_50_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    with open(p, "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: no disk, no read
    where, what = file_error(p)
    assert where == f"{p}:1"
    assert what == f"scenario file too large ({50 * 1024 * 1024} bytes; the limit is {loader.MAX_BYTES})"


def test_endless_device_is_refused_after_the_limit() -> None:
    assert file_error("/dev/zero") == ("/dev/zero:1", f"scenario file too large (more than {loader.MAX_BYTES} bytes)")


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "b.yaml"
    p.write_bytes(b"steps: [{call: \xff}]\n")
    assert file_error(p) == (f"{p}:1", "not a text file (byte 15 is not UTF-8)")


def test_fifo_without_a_writer_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "f.yaml"
    os.mkfifo(fifo)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(_catch(fifo)), daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_scenario blocked on a FIFO without a writer")
    assert result == [(f"{fifo}:1", "empty scenario file")]


def _catch(path: Path) -> object:
    try:
        load_scenario(path)
    except InputError as e:
        return (e.where, e.message)
    return None


def test_a_pipe_with_a_writer_is_read_to_its_end() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"steps:\n  - call: cmdline_proc_show\n")
        os.close(w)
        scenario, lines = load_scenario(f"/dev/fd/{r}")
        assert isinstance(scenario.steps[0], CallStep) and lines[("steps", 0)] == 2
    finally:
        os.close(r)


# -- expect.result: every spelling the schema accepts compares as the same errno -----------------
@pytest.mark.parametrize("ok,busy", [("ok", "EBUSY"), ("OK", "ebusy"), ("0", "-16"), ("ok", "16"), ("ok", " EBUSY ")])
def test_expect_result_spellings(ok: str, busy: str) -> None:
    from ftlab.scenario.runner import run_scenario

    text = textwrap.dedent(f"""\
        kernel: {{catalogue: [cmdline_proc_show, version_proc_show]}}
        steps:
          - kprobe: add
            target: cmdline_proc_show
            post: true
            expect: {{result: "{ok}"}}
          - livepatch: enable
            patch: p1
            funcs: [cmdline_proc_show]
            expect: {{result: "{busy}"}}
        """)
    scenario, lines = load_scenario_text(text)
    result = run_scenario(scenario, lines, "f.yaml")
    assert [s.result for s in result.steps] == ["ok", "EBUSY"]
    assert result.ok, [s.failures for s in result.steps]
