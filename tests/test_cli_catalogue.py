"""``ftlab catalogue`` through the installed console script (subprocess, stdout a pipe: plain text)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _ftlab_script() -> str:
    beside = Path(sys.executable).with_name("ftlab")
    if beside.exists():
        return str(beside)
    found = shutil.which("ftlab")
    if found is None:
        pytest.skip("console script 'ftlab' not installed (pip install -e '.[test]')")
    return found


FTLAB = _ftlab_script()


def ftlab(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"}
    return subprocess.run([FTLAB, *args], capture_output=True, text=True, env=env, timeout=60)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], where: str | None = None) -> None:
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ftlab: ")
    if where is not None:
        assert lines[0].startswith(f"ftlab: {where}: "), lines[0]


# -- summary and listing -----------------------------------------------------------------------
def test_summary_counts_of_the_embedded_debian_6_1_catalogue() -> None:
    proc = ftlab("catalogue", "--summary")
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == [
        "source: debian-6.1.0-56-amd64",
        "records: 38252",
        "unique names: 37502",
        "duplicate names: 271",
        "invalid records: 597",
    ]


def test_default_lists_every_record_as_index_ip_name_in_record_order() -> None:
    proc = ftlab("catalogue")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == 38252
    assert lines[0] == "0 0xffffffff81000000 __traceiter_initcall_level"
    assert lines[1] == "1 0xffffffff81000040 __traceiter_initcall_start"


def test_limit_truncates_the_listing_and_says_so() -> None:
    proc = ftlab("catalogue", "--limit", "2")
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["0 0xffffffff81000000 __traceiter_initcall_level",
                         "1 0xffffffff81000040 __traceiter_initcall_start"]
    assert lines[2] == "# 38252 records, first 2 shown (--limit 2)"
    assert len(lines) == 3


def test_json_document_has_format_1_summary_and_records() -> None:
    proc = ftlab("catalogue", "--json", "--limit", "3")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["format"] == 1
    assert doc["command"] == "catalogue"
    assert doc["catalogue"] == {"source": "debian-6.1.0-56-amd64", "records": 38252, "unique_names": 37502,
                                "duplicate_names": 271, "invalid_records": 597}
    assert doc["count"] == 38252
    assert doc["truncated"] is True
    assert [r["index"] for r in doc["records"]] == [0, 1, 2]
    assert int(doc["records"][1]["ip"], 16) - int(doc["records"][0]["ip"], 16) == 0x40
    assert doc["filters"] == {"glob": None, "grep": None}


def test_json_summary_has_no_records() -> None:
    doc = json.loads(ftlab("catalogue", "--json", "--summary").stdout)
    assert "records" not in doc
    assert doc["catalogue"]["records"] == 38252


# -- --glob: what a set_ftrace_filter token selects --------------------------------------------
def test_glob_end_only_token_lists_count_and_names() -> None:
    proc = ftlab("catalogue", "--glob", "*_proc_show")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "# 23 records selected by --glob '*_proc_show' (MATCH_END_ONLY)"
    assert len(lines) == 24
    assert any(line.endswith(" cmdline_proc_show") for line in lines[1:])


def test_glob_count_of_star_excludes_invalid_records() -> None:
    proc = ftlab("catalogue", "--glob", "*", "--count")
    assert (proc.returncode, proc.stdout) == (0, "37655\n")


def test_glob_duplicate_name_selects_every_record_json() -> None:
    doc = json.loads(ftlab("catalogue", "--glob", "type_show", "--json").stdout)
    assert doc["count"] == 17
    assert {r["name"] for r in doc["records"]} == {"type_show"}
    assert doc["filters"]["glob"] == {"token": "type_show", "type": "MATCH_FULL", "search": "type_show",
                                      "module": None, "negate": False}


def test_glob_bang_token_reports_the_records_it_would_remove() -> None:
    doc = json.loads(ftlab("catalogue", "--glob", "!vfs_read", "--json").stdout)
    assert doc["filters"]["glob"]["negate"] is True
    assert [r["name"] for r in doc["records"]] == ["vfs_read"]


def test_glob_index_token_is_one_based() -> None:
    proc = ftlab("catalogue", "--glob", "2")
    assert proc.stdout.splitlines()[1] == "1 0xffffffff81000040 __traceiter_initcall_start"


def test_glob_selecting_nothing_prints_0_and_exits_1_like_kernel_einval() -> None:
    proc = ftlab("catalogue", "--glob", "no_such_function*")
    assert proc.returncode == 1
    assert proc.stdout == "# 0 records selected by --glob 'no_such_function*' (MATCH_FRONT_ONLY)\n"
    assert proc.stderr == ""
    assert ftlab("catalogue", "--glob", "no_such_function", "--count").stdout == "0\n"


def test_grep_is_a_regex_and_combines_with_glob() -> None:
    proc = ftlab("catalogue", "--glob", "security_*", "--grep", "^security_task_get", "--count")
    assert (proc.returncode, proc.stdout) == (0, "5\n")


def test_grep_takes_posix_classes_and_is_linear_on_patterns_that_backtrack() -> None:
    """RE2: [[:upper:]] is a POSIX class (a backtracking engine warned and matched nothing), and
    ^(.*.*)*X$ answers at once (minutes with a backtracking engine)."""
    upper = ftlab("catalogue", "--grep", "^[[:upper:]]", "--count")
    assert (upper.returncode, upper.stderr) == (0, "") and int(upper.stdout) > 100
    nested = ftlab("catalogue", "--grep", "^(.*.*)*X$")
    assert nested.returncode == 0 and "aa_unpack_nameX" in nested.stdout


def test_stdout_closed_is_one_line_and_exit_2() -> None:
    proc = subprocess.run([FTLAB, "run", "share-ipmodify"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=60, pass_fds=(), close_fds=True,
                          preexec_fn=lambda: os.close(1))
    assert (proc.returncode, proc.stderr) == (2, "ftlab: stdout: closed: nowhere to write the output\n")


def test_other_catalogue_file(tmp_path: Path) -> None:
    p = tmp_path / "aff.gz"
    p.write_bytes(gzip.compress(b"alpha\nbeta [mod1]\nalpha\n"))
    proc = ftlab("catalogue", "--catalogue", str(p), "--summary")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[1:] == ["records: 3", "unique names: 2", "duplicate names: 1",
                                            "invalid records: 0"]


# -- bad input: one line on stderr, exit 2 -----------------------------------------------------
@pytest.mark.parametrize("args,where", [
    (["catalogue", "--bogus"], "catalogue"),
    (["catalogue", "--limit", "-1"], "catalogue"),
    (["catalogue", "--limit", "x"], "catalogue"),
    (["catalogue", "--summary", "--count"], "catalogue"),
    (["catalogue", "--catalogue"], "catalogue"),
    (["catalogue", "--grep", "("], "--grep"),
    (["catalogue", "--grep", "(a)\\1"], "--grep"),
    (["catalogue", "--grep", "a{5000}"], "--grep"),
    (["catalogue", "--glob", "*:mod:ext4"], "--glob"),
    (["catalogue", "--glob", "vfs_read vfs_write"], "--glob"),
    (["catalogue", "--glob", ""], "--glob"),
    (["catalogue", "--catalogue", ""], "--catalogue"),
    (["nosuchcommand"], "usage"),
    ([], "usage"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_arguments_give_one_stderr_line_and_exit_2(args: list[str], where: str) -> None:
    assert_one_line_error(ftlab(*args), where)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\x1f\x8bjunk", b"\xff\xfe\x00"],
                         ids=["empty", "blank", "corrupt-gzip", "binary"])
def test_bad_catalogue_file_gives_one_stderr_line_and_exit_2(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "aff"
    p.write_bytes(content)
    proc = ftlab("catalogue", "--catalogue", str(p))
    assert_one_line_error(proc, str(p))


def test_malformed_line_error_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "aff"
    p.write_text("foo\nbar\nnot a name\n")
    proc = ftlab("catalogue", "--catalogue", str(p))
    assert_one_line_error(proc, f"{p}:3")


def test_directory_or_missing_catalogue_gives_one_stderr_line_and_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(ftlab("catalogue", "--catalogue", str(tmp_path)), str(tmp_path))
    assert_one_line_error(ftlab("catalogue", "--catalogue", str(tmp_path / "missing")), str(tmp_path / "missing"))


def test_help_exits_0() -> None:
    proc = ftlab("catalogue", "--help")
    assert proc.returncode == 0
    assert "--glob" in proc.stdout


def test_python_dash_m_ftlab_is_the_same_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "ftlab", "catalogue", "--count"], capture_output=True,
                          text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "38252\n")


def test_bench_quick_prints_figures_as_json() -> None:
    proc = ftlab("bench", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["format"] == 1 and doc["command"] == "bench"
    names = [r["name"] for r in doc["results"]]
    assert names[0] == "catalogue load, embedded (cold parse)"
    assert "match_records '*_proc_show', embedded" in names
    assert all(r["median_s"] > 0 and r["runs"] == 3 for r in doc["results"])
