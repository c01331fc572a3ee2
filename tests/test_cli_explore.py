"""``ftlab explore`` through the console script: findings, mutations, emitted scenarios, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FTLAB = str(Path(sys.executable).with_name("ftlab"))


def ftlab(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FTLAB, *args], capture_output=True, text=True, timeout=timeout)


def test_explore_reports_the_seed_walk_finding_and_exits_1():
    p = ftlab("explore", "sharing-walk", "--policy", "seed-v2", "--depth", "5")
    assert p.returncode == 1, p.stderr
    assert "livepatch_body: shortest counterexample, 4 step(s)" in p.stdout
    assert "4. enable p1" in p.stdout


def test_explore_under_6_1_of_the_same_universe_finds_nothing():
    p = ftlab("explore", "sharing-walk", "--policy", "linux-6.1", "--depth", "5")
    assert p.returncode == 0 and "violations" in p.stdout and "none" in p.stdout


def test_emitted_counterexample_replays_to_the_same_violation(tmp_path):
    out = tmp_path / "cx.yaml"
    p = ftlab("explore", "sharing-walk", "--policy", "seed-v2", "--depth", "5", "--emit-scenario", str(out))
    assert p.returncode == 1 and out.exists()
    run = ftlab("run", str(out))
    assert run.returncode == 1
    assert "[4] " in run.stdout and "ipmodify_exclusive: cmdline_proc_show" in run.stdout
    assert "livepatch_body: cmdline_proc_show" in run.stdout


def test_explore_json_document():
    p = ftlab("explore", "livepatch-and-fexit", "--policy", "all", "--depth", "4", "--json")
    doc = json.loads(p.stdout)
    assert doc["format"] == 1 and doc["command"] == "explore"
    by = {r["policy"]: r for r in doc["policies"]}
    assert set(by) == {"linux-5.18", "seed-v2", "linux-6.1"}
    assert "bpf_programs_run" in by["linux-6.1"]["violations"]
    group = by["seed-v2"]["concurrent"][0]
    assert group["together"] == ["attach fx", "enable p1"] and group["runs"] > 1 and not group["bad"]


def test_mutation_deadlock_cycle_is_printed():
    p = ftlab("explore", "livepatch-and-fexit", "--policy", "seed-v2", "--depth", "2",
              "--mutation", "ops-func-blocking-lock")
    assert p.returncode == 1
    assert "deadlock: attach fx holds tr->mutex" in p.stdout and "wants direct_mutex" in p.stdout


def test_bad_universe_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "u.yaml"
    bad.write_text("functions: [f]\nclients:\n  - bpf: x\n    kind: fexitt\n    target: f\n")
    p = ftlab("explore", str(bad))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1 and f"{bad}:4:" in p.stderr
    p = ftlab("explore", "no-such-universe")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    p = ftlab("explore", "sharing-walk", "--policy", "linux-9")
    assert p.returncode == 2 and "unknown policy" in p.stderr
