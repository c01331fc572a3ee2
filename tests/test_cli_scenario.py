"""``ftlab run / show / compare / schema`` through the installed console script (subprocess, stdout a
pipe: plain text), bundled examples against their own expectations, and golden human output.

Golden files live in tests/golden/; ``FTLAB_UPDATE_GOLDEN=1 python -m pytest tests/test_cli_scenario.py``
rewrites them from the current output (review the diff before committing).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_cli_catalogue import assert_one_line_error, ftlab

from ftlab.bundled import bundled
from ftlab.cli import SUBCOMMANDS
from ftlab.cli.scenario import SHOW_VIEWS
from ftlab.errors import ModelError
from ftlab.output_schemas import SCHEMAS, validate
from ftlab.scenario import load_scenario_text
from ftlab.scenario.runner import run_scenario
from ftlab.scenario.schema import BpfStep

GOLDEN = Path(__file__).with_name("golden")
EXAMPLES = bundled()


@functools.cache
def ftlab_once(*args: str) -> subprocess.CompletedProcess[str]:
    """``ftlab(*args)`` for commands whose output depends only on their arguments (run once)."""
    return ftlab(*args)


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


HOLDS = """\
    description: a live patch and a call (no BPF, so every policy runs it)
    kernel: {policy: linux-6.1}
    steps:
      - livepatch: enable
        patch: p1
        funcs: [cmdline_proc_show]
        expect: {result: ok}
      - call: cmdline_proc_show
        expect: {body: p1, programs: []}
    """

FAILS = """\
    description: the second expectation is wrong (p1 runs, not the original)
    kernel: {policy: linux-6.1}
    steps:
      - livepatch: enable
        patch: p1
        funcs: [cmdline_proc_show]
        expect: {result: ok}
      - call: cmdline_proc_show
        expect: {body: original}
      - show: livepatch
    """

DIFFERS = """\
    description: a live patch, then a plain direct client (seed v2 answers EAGAIN, the others EBUSY)
    steps:
      - livepatch: enable
        patch: p1
        funcs: [cmdline_proc_show]
      - direct: register
        name: sample
        targets: [cmdline_proc_show]
    """

SHOWN = """\
    description: a live patch, then a BPF fexit program on the same function
    kernel: {policy: seed-v2}
    steps:
      - livepatch: enable
        patch: p1
        funcs: [cmdline_proc_show]
      - bpf: attach
        prog: fx
        kind: fexit
        target: cmdline_proc_show
      - call: cmdline_proc_show
        expect: {body: p1, programs: [fx]}
    """

VIEW_TITLES = ["== /sys/kernel/tracing/enabled_functions", "== /sys/kernel/livepatch",
               "== ftrace_ops_list (head first)", "== direct_functions", "== BPF trampolines", "== held locks"]


# -- ftlab run ---------------------------------------------------------------------------------
def test_run_without_a_file_lists_every_bundled_scenario() -> None:
    proc = ftlab_once("run")
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == sorted(EXAMPLES)
    described = dict(line.split(None, 1) for line in lines)
    assert described["atomic-replace"].startswith("an atomic-replace patch takes over")
    assert len(EXAMPLES) == len(list(Path(__file__).parents[1].joinpath("src/ftlab/examples").glob("*.yaml")))


def test_run_name_of_a_bundled_scenario() -> None:
    proc = ftlab_once("run", "kprobe-post-vs-livepatch")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("scenario: examples/kprobe-post-vs-livepatch.yaml (policy linux-6.1, arch x86_64)\n")
    assert proc.stdout.endswith("6 steps; all expectations hold\n")


def test_run_name_with_policy_override_runs_a_bpf_example() -> None:
    proc = ftlab("run", "livepatch-then-fexit", "--policy", "seed-v2")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert "(policy seed-v2, arch x86_64)" in proc.stdout
    assert "runs: body=p1 programs=['fx']" in proc.stdout


def test_run_file_whose_expectations_hold_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path, "holds.yaml", HOLDS)
    proc = ftlab("run", path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines()[0] == f"scenario: {path} (policy linux-6.1, arch x86_64)"
    assert "[2] line 8: call cmdline_proc_show: ok\n" in proc.stdout
    assert proc.stdout.endswith("2 steps; all expectations hold\n")


def test_run_json_file_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "holds.json"
    path.write_text(json.dumps(yaml.safe_load(textwrap.dedent(HOLDS)), indent=1))
    proc = ftlab("run", str(path), "--json")
    assert (proc.returncode, proc.stderr) == (0, "")
    doc = json.loads(proc.stdout)
    validate(doc)
    assert doc["ok"] is True and [s["result"] for s in doc["steps"]] == ["ok", "ok"]


def test_run_file_with_a_wrong_expectation_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, "fails.yaml", FAILS)
    proc = ftlab("run", path)
    assert (proc.returncode, proc.stderr) == (1, "")
    out = proc.stdout
    assert "[2] line 8: call cmdline_proc_show: ok   <-- expectation failed\n" in out
    assert "    expected body: 'original'\n    got      body: 'p1'\n" in out
    assert "[3] line 10: show livepatch: ok\n" in out  # later steps still run
    assert out.endswith("3 steps; 1 step(s) with failed expectations\n")


def test_run_json_reports_the_failed_expectation(tmp_path: Path) -> None:
    proc = ftlab("run", write(tmp_path, "fails.yaml", FAILS), "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    validate(doc)
    assert doc["ok"] is False
    assert [s["expect_ok"] for s in doc["steps"]] == [True, False, True]
    assert doc["steps"][1]["failures"] == [{"field": "body", "expected": "original", "got": "p1"}]
    assert doc["steps"][1]["line"] == 8


def test_run_bad_file_exits_2_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", HOLDS.replace("policy: linux-6.1", "policy: linux-7"))
    proc = ftlab("run", path, "--json")
    assert_one_line_error(proc, f"{path}:2")
    assert "kernel.policy: " in proc.stderr and "(got 'linux-7')" in proc.stderr


def test_run_unknown_function_exits_2_at_the_step_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", HOLDS.replace("call: cmdline_proc_show", "call: nosuch_function"))
    proc = ftlab("run", path)
    assert_one_line_error(proc, f"{path}:8")
    assert proc.stderr.endswith("unknown function 'nosuch_function' (not in catalogue debian-6.1.0-56-amd64)\n")


def test_run_unknown_name_exits_2() -> None:
    proc = ftlab("run", "no-such-scenario")
    assert_one_line_error(proc, "no-such-scenario")
    assert "ftlab run lists them" in proc.stderr


# -- files that are not scenario files: one line, exit 2, even for root --------------------------
def _socket_path(d: str) -> str:
    path = os.path.join(d, "sock.yaml")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # the socket file stays; nobody listens
    return path


@pytest.mark.parametrize("kind", ["unreadable", "directory", "empty", "50MB", "fifo"])
def test_files_that_are_not_scenarios_exit_2(kind: str) -> None:
    """``unreadable``: tests run as root, and root reads a chmod 000 file (CAP_DAC_OVERRIDE). A
    Unix socket's path fails open(2) with ENXIO for root too, so it stands for an unreadable file.
    ``fifo``: a FIFO without a writer must not hang (it reads as empty)."""
    d = tempfile.mkdtemp(prefix="ftlab-")  # short: a socket path has at most 107 bytes
    try:
        if kind == "unreadable":
            path, what = _socket_path(d), "cannot read scenario: No such device or address"
        elif kind == "directory":
            path, what = d, "is a directory, not a scenario file"
        elif kind == "empty":
            path, what = os.path.join(d, "empty.yaml"), "empty scenario file"
            open(path, "wb").close()
        elif kind == "50MB":
            path, what = os.path.join(d, "big.yaml"), "scenario file too large (52428800 bytes; the limit is 4194304)"
            with open(path, "wb") as f:
                f.truncate(50 * 1024 * 1024)
        else:
            path, what = os.path.join(d, "fifo.yaml"), "empty scenario file"
            os.mkfifo(path)
        proc = ftlab("run", path)
        assert_one_line_error(proc, f"{path}:1")
        assert proc.stderr == f"ftlab: {path}:1: {what}\n"
    finally:
        shutil.rmtree(d)


# -- ftlab show --------------------------------------------------------------------------------
def test_show_at_step_prints_all_six_views(tmp_path: Path) -> None:
    path = write(tmp_path, "shown.yaml", SHOWN)
    proc = ftlab("show", path, "--at", "2")
    assert (proc.returncode, proc.stderr) == (0, "")
    out = proc.stdout
    assert out.startswith(f"scenario: {path} (policy seed-v2, arch x86_64), state after step 2 of 3\n")
    assert [line for line in out.splitlines() if line.startswith("== ")] == VIEW_TITLES
    sections = dict(zip(SHOW_VIEWS, out.split("\n== ")[1:]))
    assert "cmdline_proc_show (2) R I D" in sections["enabled_functions"]
    assert "/sys/kernel/livepatch/p1/enabled: 1" in sections["livepatch"]
    assert "klp_ops[cmdline_proc_show]" in sections["ops"] and "tr->fops" in sections["ops"]
    assert "cmdline_proc_show -> bpf_trampoline_" in sections["direct_functions"]
    assert "cmdline_proc_show fentry=[] fexit=[fx]" in sections["trampolines"]
    assert sections["locks"] == "held locks\n(empty)\n"


def test_show_at_an_earlier_step_and_json(tmp_path: Path) -> None:
    path = write(tmp_path, "shown.yaml", SHOWN)
    proc = ftlab("show", path, "--at", "1", "--json")
    assert (proc.returncode, proc.stderr) == (0, "")
    doc = json.loads(proc.stdout)
    validate(doc)
    assert doc["at"] == 1 and set(doc["views"]) == set(SHOW_VIEWS)
    assert "klp_ftrace_handler" in doc["views"]["enabled_functions"]
    assert doc["views"]["direct_functions"] == doc["views"]["trampolines"] == ""


def test_show_at_out_of_range_exits_2(tmp_path: Path) -> None:
    assert_one_line_error(ftlab("show", write(tmp_path, "s.yaml", SHOWN), "--at", "4"), "--at")


def test_run_lists_a_bounded_number_of_changed_records_unless_full(tmp_path: Path) -> None:
    """A global tracer changes every record: text lists 20 a step, JSON 200 and counts the rest."""
    path = write(tmp_path, "global.yaml", "steps:\n  - tracer: function\n  - show: enabled_functions\n"
                                          "  - tracer: nop\n")
    text = ftlab("run", path)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    step1 = lines[lines.index("[1] line 2: tracer function: ok") + 1:lines.index("[2] line 3: show enabled_functions: ok")]
    assert len(step1) == 21 and step1[-1] == "    ... 37635 more records (--full lists them)"
    step2 = lines[lines.index("[2] line 3: show enabled_functions: ok") + 1:lines.index("[3] line 4: tracer nop: ok")]
    assert len(step2) == 21 and step2[0].startswith("    | ") and step2[-1] == "    ... 37635 more lines (--full lists them)"
    assert lines[-2] == "    ... 37635 more records (--full lists them)"  # the nop step
    doc = json.loads(ftlab("run", path, "--json").stdout)
    validate(doc)
    assert [(len(s["changes"]), s["changes_omitted"]) for s in doc["steps"]] == [(200, 37455), (0, 0), (200, 37455)]
    full = json.loads(ftlab("run", path, "--json", "--full").stdout)
    assert [(len(s["changes"]), s["changes_omitted"]) for s in full["steps"]] == [(37655, 0), (0, 0), (37655, 0)]
    assert len(ftlab("run", path, "--full").stdout.splitlines()) > 3 * 37655


# -- ftlab compare -----------------------------------------------------------------------------
def test_compare_exits_1_when_policies_differ(tmp_path: Path) -> None:
    proc = ftlab("compare", write(tmp_path, "differs.yaml", DIFFERS))
    assert (proc.returncode, proc.stderr) == (1, "")
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["#", "step", "linux-5.18", "seed-v2", "linux-6.1", "linux-6.12"]
    assert lines[1].split()[:2] == ["1", "livepatch"] and not lines[1].startswith("*")
    assert lines[2].startswith("*") and lines[2].split()[-4:] == ["EBUSY", "EAGAIN", "EBUSY", "EBUSY"]
    assert lines[-1] == "* marks steps where the policies differ"


def test_compare_exits_0_when_policies_agree(tmp_path: Path) -> None:
    proc = ftlab("compare", write(tmp_path, "holds.yaml", HOLDS), "--json")
    assert (proc.returncode, proc.stderr) == (0, "")
    doc = json.loads(proc.stdout)
    validate(doc)
    assert doc["agree"] is True and doc["policies"] == ["linux-5.18", "seed-v2", "linux-6.1", "linux-6.12"]
    assert [s["differs"] for s in doc["steps"]] == [False, False]
    assert {c["body"] for c in doc["steps"][1]["cells"].values()} == {"p1"}


def test_compare_6_1_and_6_12_differ_on_live_patch_fentry_fexit() -> None:
    """The bundled example: 6.1.192 kills ftrace at the first call, 6.12.95 runs fentry, the patched
    body and fexit; the variants without 3e9a18e1c3e9 (6.1.159, 6.12.58) run both programs around
    the original body (the trampoline does not call the patched one)."""
    proc = ftlab("compare", "policy-6.1-vs-6.12", "--policies", "linux-6.1.159,linux-6.1,linux-6.12.58,linux-6.12",
                 "--json")
    assert (proc.returncode, proc.stderr) == (1, "")
    doc = json.loads(proc.stdout)
    validate(doc)
    call = doc["steps"][3]
    assert call["action"] == "call cmdline_proc_show" and call["differs"]
    got = {p: (c["body"], c["programs"], c["warnings"], c["kills_ftrace"]) for p, c in call["cells"].items()}
    assert got == {"linux-6.1.159": ("original", ["fe", "fx"], 0, False),
                   "linux-6.1": ("original", [], 1, True),
                   "linux-6.12.58": ("original", ["fe", "fx"], 0, False),
                   "linux-6.12": ("p1", ["fe", "fx"], 0, False)}
    assert [s["cells"]["linux-6.1"]["ftrace_dead"] for s in doc["steps"]] == [False] * 3 + [True] * 5
    assert not any(s["cells"]["linux-6.1"]["kills_ftrace"] for s in doc["steps"][4:])
    text = ftlab("compare", "policy-6.1-vs-6.12", "--policies", "linux-6.1,linux-6.12").stdout.splitlines()
    assert text[4].startswith("*") and "body=original progs=- WARN, kills ftrace" in text[4]
    assert text[4].rstrip().endswith("body=p1 progs=fe,fx")


@pytest.mark.parametrize("policies", [",", "linux-9"])
def test_compare_bad_policies_exit_2(policies: str) -> None:
    assert_one_line_error(ftlab("compare", "atomic-replace", "--policies", policies), "--policies")


# -- ftlab schema ------------------------------------------------------------------------------
def test_schema_is_a_valid_json_schema_that_accepts_the_examples_and_rejects_bad_ones() -> None:
    proc = ftlab_once("schema")
    assert (proc.returncode, proc.stderr) == (0, "")
    schema = json.loads(proc.stdout)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    checker = cls(schema)
    for entry in EXAMPLES.values():
        checker.validate(yaml.safe_load(entry.read_text()))
    for bad in ({"steps": []}, {"steps": [{"call": "x", "bogus": 1}]}, {"kernel": {"policy": "linux-9"},
                                                                          "steps": [{"call": "x"}]}):
        assert not checker.is_valid(bad), bad


# -- --json on every command -------------------------------------------------------------------
JSON_COMMANDS = {
    "run": ["run", "atomic-replace"],
    "run (list)": ["run"],
    "show": ["show", "atomic-replace", "--at", "2"],
    "compare": ["compare", "kprobe-post-vs-livepatch"],
    "catalogue": ["catalogue", "--glob", "*_proc_show", "--limit", "3"],
    "bench": ["bench", "--quick"],
    "schema": ["schema"],
    "explore": ["explore", "livepatch-and-fexit", "--depth", "2", "--threads", "0"],
    "preflight": ["preflight", str(Path(__file__).parent / "data" / "snapshots" / "fexit.snapshot.json"),
                  "livepatch enable --func cmdline_proc_show"],
    "policies": ["policies"],
    "oracle": ["oracle", "gen", "--seed", "5", "--count", "1", "--out", "/tmp/ftlab-test-oracle-gen"],
}


def test_every_command_with_an_output_schema_is_covered_by_the_json_test() -> None:
    from ftlab.cli import build_parser as _register_all

    _register_all()  # builds the parser from every subcommand of SUBCOMMANDS
    assert {k.split()[0] for k in JSON_COMMANDS} == set(SCHEMAS)
    assert set(SCHEMAS) <= set(SUBCOMMANDS)


@pytest.mark.parametrize("name", list(JSON_COMMANDS))
def test_json_on_every_command_matches_its_schema(name: str) -> None:
    args = JSON_COMMANDS[name]
    proc = ftlab_once(*args, "--json")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["format"] == 1 and doc["command"] == args[0]
    validate(doc)


# -- golden human output -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["atomic-replace", "kprobe-post-vs-livepatch"])
def test_golden_human_output(name: str) -> None:
    proc = ftlab_once("run", name)
    assert (proc.returncode, proc.stderr) == (0, "")
    golden = GOLDEN / f"run-{name}.txt"
    if os.environ.get("FTLAB_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(proc.stdout)
    assert golden.exists(), f"{golden} missing: run with FTLAB_UPDATE_GOLDEN=1 to create it"
    assert proc.stdout == golden.read_text(), f"differs from {golden} (FTLAB_UPDATE_GOLDEN=1 rewrites it)"


# -- every bundled example, under its own policy, against its own expectations -----------------
class BpfPolicyNotModelled(Exception):
    """The model refused BPF under this policy (ftlab.model.clients.bpf models only seed-v2 yet)."""


#: Examples expected to fail for a known, not yet modelled reason (none today).
BPF_PENDING: set[str] = set()


def _example_params() -> list[object]:
    params = []
    for name in EXAMPLES:
        marks = []
        if name in BPF_PENDING:
            marks.append(pytest.mark.xfail(strict=False, raises=BpfPolicyNotModelled,
                                           reason="BPF trampolines under linux-6.1 are not modelled yet"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", _example_params())
def test_bundled_example_expectations_hold_under_its_policy(name: str) -> None:
    source = f"examples/{EXAMPLES[name].name}"
    scenario, lines = load_scenario_text(EXAMPLES[name].read_text(encoding="utf-8"), source)
    try:
        result = run_scenario(scenario, lines, source)  # the file's own policy and arch
    except ModelError as e:
        if "needs its own variant" in str(e) and any(isinstance(s, BpfStep) for s in scenario.steps):
            raise BpfPolicyNotModelled(str(e)) from e
        raise
    assert result.policy == scenario.kernel.policy
    failed = [(s.index, s.line, s.action, s.result, s.failures) for s in result.steps if not s.ok]
    assert result.ok, failed
    assert len(result.steps) == len(scenario.steps)  # no Oops cut the run short


def test_bpf_pending_lists_only_examples_with_bpf_under_a_policy_other_than_seed_v2() -> None:
    for name in BPF_PENDING:
        scenario, _ = load_scenario_text(EXAMPLES[name].read_text(encoding="utf-8"), name)
        assert scenario.kernel.policy != "seed-v2"
        assert any(isinstance(s, BpfStep) for s in scenario.steps)


def test_kprobe_remove_is_void_but_a_never_added_probe_is_einval(tmp_path: Path) -> None:
    """Oracle finding: unregister_kprobe() is void (the kernel reports success even when the
    disarm fails); removing a probe whose add was refused finds nothing (EINVAL)."""
    f = tmp_path / "k.yaml"
    f.write_text("""
kernel: {policy: linux-6.1}
steps:
  - livepatch: enable
    patch: p1
    funcs: [uptime_proc_show]
  - kprobe: add
    target: uptime_proc_show
    post: true
    expect: {result: EBUSY}
  - kprobe: remove
    target: uptime_proc_show
    expect: {result: EINVAL}
  - kprobe: add
    target: cmdline_proc_show
    expect: {result: ok}
  - kprobe: add
    target: cmdline_proc_show
    name: second
    post: true
    expect: {result: ok}
  - kprobe: remove
    target: cmdline_proc_show
    expect: {result: ok}
""")
    proc = ftlab_once("run", str(f))
    assert proc.returncode == 0, proc.stdout


def test_run_takes_an_oracle_scenario_by_name():
    from ftlab.cli import main
    assert main(["run", "oracle/pair-livepatch-fexit"]) == 0
    assert main(["run", "oracle/pair-livepatch-fexit.yaml"]) == 0
    assert main(["run", "oracle/no-such-scenario"]) == 2
