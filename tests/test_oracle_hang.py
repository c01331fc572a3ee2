"""A real guest that hangs: the oracle kills it, marks the scenario hung and goes on in a fresh guest.

Two boots of the oracle's Debian 6.1 guest (marker ``oracle``; installs what it needs and FAILS,
never skips, when it cannot). Scenario 1 adds a kprobe and calls the function, then the guest's
agent goes silent with the probe still registered (an agent ``snapshot`` step whose script sleeps
for 15 minutes without a word, far past the host's stall limit); scenario 2 is ordinary. The host must kill the silent guest after the stall
limit, record scenario 1 as hung at that step, boot a second guest for scenario 2 and run it clean.
"""

from __future__ import annotations

import pytest
from oracleutil import ready_kernel

from ftlab.errors import OracleError
from ftlab.oracle import runner

HANGS = """\
description: "a kprobe, then the guest goes silent (host stall handling)"
kernel: {policy: linux-6.1}
steps:
  - {kprobe: add, target: version_proc_show, name: kp1}
  - {call: version_proc_show}
"""
AFTER = """\
description: "an ordinary scenario after a hung guest"
kernel: {policy: linux-6.1}
steps:
  - {kprobe: add, target: cmdline_proc_show, name: kp2}
  - {call: cmdline_proc_show}
  - {kprobe: remove, target: cmdline_proc_show, name: kp2}
"""
STALL_S = 40.0
SLEEPER = """\
import time


def take_snapshot(use_bpftool=False):
    time.sleep(900)


def write_snapshot(doc, path):
    pass
"""


@pytest.mark.oracle
def test_a_hung_guest_is_killed_and_the_rest_runs_in_a_fresh_one(tmp_path) -> None:
    ready_kernel()
    from ftlab.bundled import resolve_items

    (tmp_path / "hangs.yaml").write_text(HANGS)
    (tmp_path / "after.yaml").write_text(AFTER)
    out = tmp_path / "out"
    out.mkdir()
    items = resolve_items([str(tmp_path / "hangs.yaml"), str(tmp_path / "after.yaml")])
    sleeper = tmp_path / "sleeper.py"   # the guest sees the host's root, read-only, over 9p
    sleeper.write_text(SLEEPER)

    def hook(planned):  # after step 2 of scenario 1 the agent runs the sleeper
        planned[0].steps.insert(2, {"op": "snapshot", "action": "snapshot -> hang", "script": str(sleeper),
                                    "path": str(out / "never.json")})

    try:
        doc = runner.run(items, str(out), stall_s=STALL_S, post_plan=hook)
    except OracleError as e:
        pytest.fail(f"oracle run failed: {e}")
    boots = doc["boots"]
    assert [b["ended"] for b in boots] == ["stall", "exit"], boots
    assert f"no progress from the agent for {STALL_S:.0f} s" in boots[0]["reason"]
    assert boots[0]["wall_s"] < 900, "the host waited for the guest instead of killing it"
    hung, after = doc["scenarios"]
    assert hung["status"] == "hung" and hung["boot"] == 1, hung
    assert [s["result"] for s in hung["steps"]] == ["ok", "ok", "hung"], hung["steps"]
    assert hung["steps"][-1]["synthetic"] and hung["steps"][-1]["action"] == "snapshot -> hang"
    assert hung["steps"][1]["call"]["hooks"], hung["steps"][1]
    assert after["status"] == "clean" and after["boot"] == 2, after
    assert [s["result"] for s in after["steps"]] == ["ok", "ok", "ok"]
    assert after["steps"][1]["call"]["hooks"], after["steps"][1]
