"""The ``--json`` documents of run, show, compare, catalogue, bench and schema against their JSON
Schemas (ftlab.output_schemas), using real outputs of the in-process CLI."""

from __future__ import annotations

import copy
import gzip
import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ftlab import output_schemas
from ftlab.bundled import bundled
from ftlab.cli import main
from ftlab.output_schemas import SCHEMAS, validate

SCENARIO = """\
    description: a live patch, a BPF fexit program, a kprobe, calls and views
    kernel: {policy: seed-v2}
    steps:
      - livepatch: enable
        patch: p1
        funcs: [cmdline_proc_show]
      - bpf: attach
        prog: fx
        kind: fexit
        target: cmdline_proc_show
      - kprobe: add
        target: version_proc_show
      - call: cmdline_proc_show
        expect: {body: p1, programs: [fx], retval: 1}
      - show: trampolines
      - direct: register
        targets: [cmdline_proc_show]
        expect: {result: ok}
    """


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    rc = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert err == "", err
    return rc, json.loads(out)


@pytest.fixture
def scenario_file(tmp_path: Path) -> str:
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(SCENARIO))
    return str(p)


# -- the schemas themselves --------------------------------------------------------------------
@pytest.mark.parametrize("command", list(SCHEMAS))
def test_schema_is_a_valid_draft_2020_12_schema(command: str) -> None:
    schema = SCHEMAS[command]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_module_docstring_documents_every_schema() -> None:
    doc = output_schemas.__doc__ or ""
    for command in SCHEMAS:
        assert f"``{command}``" in doc, command


def test_validate_rejects_unknown_commands_and_non_objects() -> None:
    for doc in ({"format": 1, "command": "nope"}, {"format": 1}, [], "run"):
        with pytest.raises(jsonschema.ValidationError):
            validate(doc)


# -- real outputs ------------------------------------------------------------------------------
def test_run_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = run_json(capsys, "run")
    assert rc == 0
    validate(doc)
    assert [s["name"] for s in doc["scenarios"]] == sorted(bundled())


@pytest.mark.parametrize("name", sorted(bundled()))
def test_run_of_every_bundled_example_under_seed_v2(capsys: pytest.CaptureFixture[str], name: str) -> None:
    # seed-v2 runs every example today (BPF under the other policies is being written)
    rc, doc = run_json(capsys, "run", name, "--policy", "seed-v2")
    validate(doc)
    assert rc == (0 if doc["ok"] else 1)
    assert doc["policy"] == "seed-v2" and doc["source"] == f"examples/{name}.yaml"


def test_run_with_traces_views_and_failures(capsys: pytest.CaptureFixture[str], scenario_file: str) -> None:
    rc, doc = run_json(capsys, "run", scenario_file)
    validate(doc)
    assert rc == 1 and doc["ok"] is False  # retval 1 is wrong on purpose
    steps = doc["steps"]
    assert steps[3]["trace"]["programs"] == ["fx"] and steps[3]["trace"]["events"][0]["kind"] == "call"
    assert [f["field"] for f in steps[3]["failures"]] == ["retval"]
    assert "fexit=[fx]" in steps[4]["view"]
    assert steps[5]["result"] in ("ok", "EBUSY", "EAGAIN")


def test_run_with_arch_override(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = run_json(capsys, "run", "atomic-replace", "--arch", "arm64")
    validate(doc)
    assert doc["arch"] == "arm64"


@pytest.mark.parametrize("at", [0, 1, 2, 6])
def test_show(capsys: pytest.CaptureFixture[str], scenario_file: str, at: int) -> None:
    rc, doc = run_json(capsys, "show", scenario_file, "--at", str(at))
    assert rc == 0
    validate(doc)
    assert doc["at"] == at
    assert (doc["views"]["enabled_functions"] == "") == (at == 0)


def test_compare_agreeing_and_differing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, doc = run_json(capsys, "compare", "atomic-replace")
    validate(doc)
    assert (rc, doc["agree"]) == (0, True)
    rc, doc = run_json(capsys, "compare", "direct-client-vs-livepatch")
    validate(doc)
    assert (rc, doc["agree"]) == (1, False)
    assert [s["index"] for s in doc["steps"] if s["differs"]] == [5]
    for step in doc["steps"]:
        assert list(step["cells"]) == doc["policies"]


def test_compare_policy_subset(capsys: pytest.CaptureFixture[str], scenario_file: str) -> None:
    rc, doc = run_json(capsys, "compare", scenario_file, "--policies", "seed-v2,seed-v2")
    validate(doc)
    assert doc["policies"] == ["seed-v2"] and doc["agree"] is True


@pytest.mark.parametrize("args", [
    ["--limit", "2"], ["--summary"], ["--count"], ["--glob", "*_proc_show"], ["--glob", "!vfs_read"],
    ["--glob", "2"], ["--glob", "type_show", "--limit", "1"], ["--grep", "^security_task_get"],
    ["--glob", "no_such_function*"],
], ids=lambda a: " ".join(a))
def test_catalogue(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    rc, doc = run_json(capsys, "catalogue", *args)
    validate(doc)
    assert rc == (1 if doc["count"] == 0 else 0)


def test_catalogue_of_another_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "aff.gz"
    p.write_bytes(gzip.compress(b"alpha\nbeta [mod1]\nalpha\n"))
    rc, doc = run_json(capsys, "catalogue", "--catalogue", str(p))
    validate(doc)
    assert doc["catalogue"]["records"] == 3


def test_schema_document(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = run_json(capsys, "schema")
    validate(doc)
    jsonschema.Draft202012Validator.check_schema(doc["schema"])


def test_bench_document_shape() -> None:
    """bench's real output is validated through the console script (test_cli_scenario); here a
    document in its documented shape, and one with a negative time."""
    doc = {"format": 1, "command": "bench", "runs": 3,
           "results": [{"name": "x", "runs": 3, "median_s": 0.1, "min_s": 0.05, "max_s": 0.2}]}
    validate(doc)
    doc["results"][0]["min_s"] = -1
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


# -- the schemas are closed: real documents with one thing wrong are rejected -------------------
def _mutations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    extra = copy.deepcopy(doc)
    extra["surprise"] = 1
    out.append(extra)
    for key in doc:
        missing = copy.deepcopy(doc)
        del missing[key]
        out.append(missing)
    wrong = copy.deepcopy(doc)
    wrong["format"] = 2
    out.append(wrong)
    return out


@pytest.mark.parametrize("args", [["run", "atomic-replace"], ["run"], ["show", "atomic-replace"],
                                  ["compare", "atomic-replace"], ["catalogue", "--limit", "1"], ["schema"]],
                         ids=lambda a: " ".join(a))
def test_documents_with_one_thing_wrong_are_rejected(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    _, doc = run_json(capsys, *args)
    validate(doc)
    for bad in _mutations(doc):
        with pytest.raises(jsonschema.ValidationError):
            validate(bad)


def test_nested_mistakes_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    _, doc = run_json(capsys, "run", "atomic-replace")
    bad = copy.deepcopy(doc)
    bad["steps"][2]["trace"]["retval"] = "1"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = copy.deepcopy(doc)
    bad["steps"][0]["line"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = copy.deepcopy(doc)
    bad["policy"] = "linux-9"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    _, doc = run_json(capsys, "catalogue", "--limit", "1")
    bad = copy.deepcopy(doc)
    bad["records"][0]["ip"] = 123
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    _, doc = run_json(capsys, "compare", "atomic-replace")
    bad = copy.deepcopy(doc)
    bad["steps"][2]["cells"]["seed-v2"] = {"result": "ok", "body": "p2"}  # body without programs, retval
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_preflight_and_oracle_gen_json_validate(tmp_path) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("ftlab"))
    snap = Path(__file__).parent / "data" / "snapshots" / "livepatch.snapshot.json"
    p = subprocess.run([exe, "preflight", str(snap), "bpf attach fexit cmdline_proc_show --prog fx", "--json"],
                       capture_output=True, text=True, timeout=120)
    doc = json.loads(p.stdout)
    output_schemas.validate(doc)
    assert doc["variants"][0]["actions"][0]["result"] == "ok"
    p = subprocess.run([exe, "oracle", "gen", "--seed", "3", "--count", "2", "--out", str(tmp_path), "--json"],
                       capture_output=True, text=True, timeout=120)
    doc = json.loads(p.stdout)
    output_schemas.validate(doc)
    assert doc["action"] == "gen" and len(doc["files"]) == 2
