"""snapshot.py's two ways of reading BPF tracing links, on a real guest: bpftool and fdinfo.

One boot of the oracle's Debian 6.1 guest (marker ``oracle``; installs what it needs, bpftool
included, and FAILS, never skips, when it cannot). A live patch, an fentry and an fexit program on
cmdline_proc_show; then two snapshots in the guest, one through the host's bpftool (the guest
sees the host's root) and one through /proc/*/fdinfo and bpf(2). Both must name the same links,
and preflight must rebuild the same state from either.
"""

from __future__ import annotations

import json

import pytest
from oracleutil import guest_items

from ftlab.errors import OracleError
from ftlab.oracle import runner
from ftlab.preflight import preflight
from ftlab.preflight.oracle import SNAPSHOT_PY

SCENARIO = """\
description: "a live patch, fentry and fexit on one function, then snapshots (bpftool and fdinfo)"
kernel: {policy: linux-6.1}
steps:
  - {livepatch: enable, patch: p1, funcs: [cmdline_proc_show]}
  - {bpf: attach, prog: fe, kind: fentry, target: cmdline_proc_show}
  - {bpf: attach, prog: fx, kind: fexit, target: version_proc_show}
  - {call: cmdline_proc_show}
"""


def _links(doc: dict) -> list[tuple]:
    return sorted((ln["kind"], ln["prog_name"], ln["target"]) for ln in doc["bpf"]["links"])


@pytest.mark.oracle
def test_bpftool_and_fdinfo_snapshots_agree_on_a_real_guest(tmp_path) -> None:
    items, out = guest_items(tmp_path, "bpftool", SCENARIO)
    paths = {tool: out / f"{tool}.snapshot.json" for tool in ("bpftool", "fdinfo")}

    def hook(planned):  # after the last step, before the agent cleans up
        for tool, path in paths.items():
            planned[0].steps.append({"op": "snapshot", "action": f"snapshot -> {tool}", "script": SNAPSHOT_PY,
                                     "path": str(path), "use_bpftool": tool == "bpftool"})

    try:
        doc = runner.run(items, str(out), post_plan=hook)
    except OracleError as e:
        pytest.fail(f"oracle run failed: {e}")
    res = doc["scenarios"][0]
    assert res["status"] == "clean", res["problems"]
    assert [s["result"] for s in res["steps"]] == ["ok"] * 6, res["steps"]
    snaps = {tool: json.loads(path.read_text()) for tool, path in paths.items()}
    assert snaps["bpftool"]["bpf"]["source"] == "bpftool", snaps["bpftool"]["bpf"]
    assert snaps["fdinfo"]["bpf"]["source"] == "fdinfo"
    assert not snaps["bpftool"]["bpf"].get("errors"), snaps["bpftool"]["bpf"]
    links = _links(snaps["bpftool"])
    assert links == _links(snaps["fdinfo"])
    assert [(kind, target) for kind, _, target in links] == [("fentry", "cmdline_proc_show"),
                                                              ("fexit", "version_proc_show")]
    names = {target: name for _, name, target in links}
    assert all(names.values()), links   # the agent's programs are named (ftlab_fentry, ...)
    for tool, path in paths.items():
        pf = preflight(str(path), ["call cmdline_proc_show", "call version_proc_show"])
        v = pf["variants"][0]
        assert len(pf["variants"]) == 1 and v["replay_ok"] and not v["mismatches"], (tool, v)
        calls = [a["calls"][0] for a in v["actions"]]
        # the live patch is named as its module is in /sys/kernel/livepatch: lp_p1_<hash>
        assert calls[0]["body"].startswith("lp_p1_") and calls[0]["programs"] == [names["cmdline_proc_show"]], \
            (tool, calls[0])
        assert calls[1]["programs"] == [names["version_proc_show"]], (tool, calls[1])
