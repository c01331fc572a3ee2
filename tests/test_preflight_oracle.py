"""End to end: snapshot a real guest, predict on the host, then let the guest act, and compare.

One boot per kernel series the oracle runs (Debian's 6.1 and 6.12; marker ``oracle``; it installs
what it needs and FAILS, never skips, when it cannot). The guest enables a live patch, takes a
snapshot with src/ftlab/snapshot.py and *waits*; the host runs ``ftlab preflight`` on that snapshot
for three proposed actions -- under the policy the registry says stands for the guest's exact build,
validated on it -- and only then lets the guest go on and perform them. The predictions (result,
records, what a call runs) must match what the real kernel did.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from oracleutil import guest_items

from ftlab.errors import InputError
from ftlab.model.policies.registry import policy_for_series
from ftlab.oracle import kernels, runner
from ftlab.preflight import parse_enabled_functions, preflight
from ftlab.preflight.oracle import snapshot_hook

SCENARIO = """\
description: "preflight e2e: live patch, [snapshot + host preflight], then fexit, kprobe --post, call"
kernel: {{policy: {policy}}}
steps:
  - {{livepatch: enable, patch: p1, funcs: [cmdline_proc_show]}}
  - {{bpf: attach, prog: fx, kind: fexit, target: cmdline_proc_show}}
  - {{kprobe: add, target: cmdline_proc_show, post: true}}
  - {{call: cmdline_proc_show}}
"""
ACTIONS = ["bpf attach fexit cmdline_proc_show --prog fx", "kprobe add cmdline_proc_show --post",
           "call cmdline_proc_show"]
#: The record columns compared: count, R, I, D and the direct kind, as preflight compares a rebuilt
#: state with the machine's (6.12's sticky M and arm64's O are not).
COLUMNS = frozenset("RID")


def _shape(lines: list[str]) -> dict[str, tuple]:
    """name -> (count, flags, direct kind) of enabled_functions records."""
    out = {}
    for r in parse_enabled_functions("\n".join(lines)):
        kind = None if r.direct is None else ("bpf" if r.direct.startswith("bpf_trampoline_") else "direct")
        out[r.name] = (r.count, frozenset(r.flags) & COLUMNS, kind)
    return out


def _patch(label: str | None) -> str | None:
    m = re.match(r"^lp_(.+)_[0-9a-f]{8}$", label or "")
    return m.group(1) if m else label


@pytest.mark.oracle
@pytest.mark.parametrize("series", list(kernels.KERNELS))
def test_preflight_predicts_what_the_real_kernel_then_does(tmp_path, series) -> None:
    policy = policy_for_series(series)
    assert policy is not None, f"no policy models kernel {series}"
    items, out = guest_items(tmp_path, "preflight-e2e", SCENARIO.format(policy=policy), series)
    snap = out / "e2e.snapshot.json"
    box: dict = {}

    def guest() -> None:
        try:
            box["results"] = runner.run(items, str(out), post_plan=snapshot_hook({0: (1, snap.name, True)}, str(out)),
                                        kernel=series)
        except Exception as e:  # noqa: BLE001 - reported below
            box["error"] = e

    th = threading.Thread(target=guest, daemon=True)
    t0 = time.monotonic()
    th.start()
    while not snap.exists():
        assert th.is_alive(), f"the guest ended before the snapshot: {box.get('error')}"
        assert time.monotonic() - t0 < 240, "no snapshot from the guest after 240 s"
        time.sleep(0.2)
    try:
        doc = preflight(str(snap), ACTIONS)       # the prediction, before the guest acts
    except InputError as e:
        doc = None
        refused = str(e)
    (out / (snap.name + ".go")).write_text("go\n")
    th.join(timeout=240)
    assert not th.is_alive(), "the guest did not finish"
    if doc is None:
        pytest.fail(f"preflight refused the guest's build ({refused}): once this test passes with --policy "
                    f"{policy} on it, the registry may list it")
    if "error" in box:
        pytest.fail(f"oracle run failed: {box['error']}")
    res = box["results"]["scenarios"][0]
    assert res["status"] == "clean", res["problems"]
    steps = res["steps"]
    assert steps[1]["action"].startswith("snapshot") and steps[1]["result"] == "ok", steps[1]
    real = steps[2:]
    assert (doc["policy"], doc["policy_from"], doc["validated"]) == (policy, "kernel build", True), doc["build"]
    assert doc["kernel"] == box["results"]["kernel"] and doc["build"]["uname_v"].startswith("#1 SMP")
    assert len(doc["variants"]) == 1
    v = doc["variants"][0]
    assert v["replay_ok"] and not v["mismatches"], v
    pred = v["actions"]
    # results: fexit ok (the trampoline shares with the patch), kprobe --post -EBUSY (second IPMODIFY)
    assert [p["result"] for p in pred] == [r["result"] for r in real] == ["ok", "EBUSY", "ok"]
    assert "__ftrace_hash_update_ipmodify" in pred[1]["why"]
    # records after the fexit attach: the model's changed line has the kernel's shape
    assert _shape(pred[0]["changes"]) == {k: v_ for k, v_ in _shape(real[0]["enabled"]).items()
                                          if k == "cmdline_proc_show"}
    # what a call runs afterwards
    call = pred[2]["calls"][0]
    got = real[2]["call"]
    assert (_patch(call["body"]), call["programs"]) == (got["body"], got["programs"]) == ("p1", ["fx"])
    assert all(p["safe"] for p in pred if p["result"] == "ok")
    assert time.monotonic() - t0 < 120
