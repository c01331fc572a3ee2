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
    assert set(by) == {"linux-5.18", "seed-v2", "linux-6.1", "linux-6.12"}
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


def test_an_interleaving_counterexample_is_emitted_and_replays_to_the_deadlock(tmp_path):
    out = tmp_path / "dl.yaml"
    p = ftlab("explore", "livepatch-and-fexit", "--policy", "seed-v2", "--depth", "1",
              "--mutation", "ops-func-blocking-lock", "--emit-scenario", str(out))
    assert p.returncode == 1 and "concurrent:" in out.read_text() and "schedule:" in out.read_text()
    run = ftlab("run", str(out))
    assert run.returncode == 1
    assert "deadlock: " in run.stdout and "holds tr->mutex" in run.stdout and "wants direct_mutex" in run.stdout


def test_a_concurrent_step_follows_its_schedule():
    """The same two tasks under two schedules: run to completion one after the other, or switch
    to the live patch while BPF holds tr->mutex, where its ENABLE trylock fails (seed v2 5/5)."""
    from ftlab.scenario import load_scenario_text
    from ftlab.scenario.runner import run_scenario

    text = """
kernel: {policy: seed-v2, catalogue: [cmdline_proc_show]}
check_invariants: true
steps:
  - bpf: attach
    prog: fe
    kind: fentry
    target: cmdline_proc_show
  - concurrent:
      - bpf: attach
        prog: fx
        kind: fexit
        target: cmdline_proc_show
      - livepatch: enable
        patch: p1
        funcs: [cmdline_proc_show]
    schedule: SCHEDULE
"""
    from ftlab.bundled import resolve_universe
    from ftlab.explorer.interleavings import explore_interleavings
    from ftlab.explorer.universe import FtraceModel

    # find a schedule in which the live patch's registration gets -EAGAIN
    model = FtraceModel(resolve_universe("livepatch-and-fexit")[0], policy="seed-v2")
    world, _ = model.apply(model.init_states()[0], model.action("attach fe"))
    acts = [model.action("attach fx"), model.action("enable p1")]
    found: list[list[int]] = []

    def make(prefix):
        import copy
        w = copy.deepcopy(world)
        from ftlab.model.sched import Task, run_tasks
        return run_tasks(w.k, [Task(str(a), (lambda k, a=a: w.run.apply(a.step)[0])) for a in acts], prefix)

    def keep(run):
        if run.results.get("enable p1") == -11 and not found:
            found.append(list(run.schedule))
        return []

    explore_interleavings(make, check=keep, preemption_bound=2)
    assert found
    results = {}
    for name, sched in (("sequential", []), ("switch", found[0])):
        sc, lines = load_scenario_text(text.replace("SCHEDULE", str(sched)), "c.yaml")
        r = run_scenario(sc, lines, "c.yaml")
        assert r.steps[1].failures == []
        results[name] = r.steps[1].result
    assert results["sequential"].endswith("p1 [cmdline_proc_show]: ok")
    assert results["switch"].endswith("p1 [cmdline_proc_show]: EAGAIN"), results["switch"]


CALLS_UNIVERSE = """\
description: a live patch, fentry and fexit on one function, and calls of it
policy: linux-6.1
functions: [cmdline_proc_show]
calls: true
clients:
  - livepatch: p1
    funcs: [cmdline_proc_show]
  - bpf: fe
    kind: fentry
    target: cmdline_proc_show
  - bpf: fx
    kind: fexit
    target: cmdline_proc_show
"""


def test_calls_are_actions_and_a_call_that_kills_ftrace_is_a_counterexample(tmp_path):
    """``calls: true`` explores ``call FUNC``: on 6.1, the call after live patch, fentry, fexit
    WARNs on the NULL tr->fops func and kills ftrace; the emitted scenario replays it."""
    u = tmp_path / "u.yaml"
    u.write_text(CALLS_UNIVERSE)
    out = tmp_path / "cx.yaml"
    p = ftlab("explore", str(u), "--depth", "4", "--json", "--emit-scenario", str(out))
    doc = json.loads(p.stdout)
    cx = doc["policies"][0]["violations"]["no_warn"]
    assert cx["actions"] == ["enable p1", "attach fe", "attach fx", "call cmdline_proc_show"]
    run = ftlab("run", str(out))
    assert run.returncode == 1 and "ftrace is dead" in run.stdout + run.stderr


def test_without_calls_the_state_after_a_kill_is_not_reached(tmp_path):
    u = tmp_path / "u.yaml"
    u.write_text(CALLS_UNIVERSE.replace("calls: true", "calls: false"))
    doc = json.loads(ftlab("explore", str(u), "--depth", "4", "--json").stdout)
    assert "no_warn" not in doc["policies"][0]["violations"]


def test_counterexample_shows_each_step_result_state_change_and_the_final_call_trace():
    """The fexit-after-fentry finding: step 3 visibly clears the registered fops' func, and the
    call at the end shows the WARN and the original body running."""
    p = ftlab("explore", "livepatch-and-fexit", "--policy", "linux-6.1", "--depth", "3", "--threads", "0")
    text = p.stdout
    assert "  3. attach fx: ok\n" in text
    block = text.split("  3. attach fx: ok\n", 1)[1]
    assert "+ ops: tr->fops[6442450945]: flags=ENABLED|DYNAMIC|SAVE_REGS|INITIALIZED|DIRECT func=0x0 trampoline=0x0" in block
    assert "then a call of cmdline_proc_show:" in block
    assert "warn __ftrace_ops_list_func: op=tr->fops[6442450945] has a NULL func; ftrace killed" in block
    assert "body cmdline_proc_show (original) returns 0" in block


def test_counterexample_json_has_steps_and_traces():
    doc = json.loads(ftlab("explore", "livepatch-and-fexit", "--policy", "linux-6.1", "--depth", "3",
                           "--threads", "0", "--json").stdout)
    v = doc["policies"][0]["violations"]["livepatch_body"]
    assert [s["action"] for s in v["steps"]] == v["actions"] == ["enable p1", "attach fe", "attach fx"]
    assert [s["result"] for s in v["steps"]] == ["ok", "ok", "ok"]
    assert any(c.startswith("+ livepatch: p1/enabled: 1") for c in v["steps"][0]["changes"])
    kinds = [e["kind"] for e in v["traces"]["cmdline_proc_show"]]
    assert kinds[0] == "call" and "warn" in kinds and kinds[-1] == "ret"


def _without_timings(doc):
    for p in doc["policies"]:
        p.pop("elapsed_s"), p.pop("states_per_s")
        for g in p["concurrent"]:
            g.pop("elapsed_s")
    return doc


def test_jobs_run_explorations_side_by_side_with_the_same_reports():
    args = ("explore", "livepatch-and-fexit", "--policy", "all", "--depth", "4", "--mutations", "--json")
    one = json.loads(ftlab(*args, "--jobs", "1").stdout)
    two = json.loads(ftlab(*args, "--jobs", "2").stdout)
    assert _without_timings(one) == _without_timings(two)
    assert one["mutation_score"]["total"] == 13 and one["mutation_score"]["killed"] >= 6


def test_jobs_zero_is_refused():
    p = ftlab("explore", "livepatch-and-fexit", "--jobs", "0")
    assert p.returncode == 2 and "--jobs" in p.stderr and "Traceback" not in p.stderr


def test_a_bad_universe_is_reported_before_any_worker_starts(tmp_path):
    u = tmp_path / "u.yaml"
    u.write_text("catalogue: embedded\nfunctions: [no_such_function_at_all]\nclients:\n"
                 "  - livepatch: p1\n    funcs: [no_such_function_at_all]\n")
    p = ftlab("explore", str(u), "--policy", "all", "--jobs", "2")
    assert p.returncode == 2 and "no_such_function_at_all" in p.stderr and "Traceback" not in p.stderr


def test_max_runs_bounds_the_interleavings_of_a_group():
    doc = json.loads(ftlab("explore", "livepatch-and-fexit", "--policy", "seed-v2", "--depth", "1",
                           "--preemptions", "all", "--max-runs", "40", "--json").stdout)
    group = doc["policies"][0]["concurrent"][0]
    assert group["runs"] == 40 and group["complete"] is False


def test_a_deadlock_is_shown_as_stretches_of_each_task_with_its_lock_points():
    p = ftlab("explore", "livepatch-and-fexit", "--policy", "seed-v2", "--depth", "1",
              "--mutation", "ops-func-blocking-lock")
    text = p.stdout
    assert "31 runs: attach fx: unfinished, enable p1: unfinished DEADLOCK" in text
    assert "    2. attach fx: start ... lock tr->mutex[6442450945] (6 points)\n" in text
    assert "    3. enable p1: lock klp_mutex ... call ops_func ENABLE (9 points)\n" in text


def test_an_invariant_broken_by_an_interleaving_comes_with_the_call_trace(tmp_path):
    doc = json.loads(ftlab("explore", "livepatch-and-fexit", "--policy", "seed-v2", "--depth", "1",
                           "--mutation", "no-orig-stack", "--json").stdout)
    bad = doc["policies"][0]["concurrent"][0]["bad"][0]
    assert bad["kind"] == "invariant" and bad["detail"].startswith("livepatch_body: cmdline_proc_show")
    assert [s["task"] for s in bad["segments"]] == ["enable p1", "attach fx"]
    assert sum(s["points"] for s in bad["segments"]) == len(bad["order"])
    events = bad["traces"]["cmdline_proc_show"]
    assert {"kind": "body", "detail": "cmdline_proc_show (original) returns 0"} in events
