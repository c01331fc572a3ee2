"""Functions of loaded modules on the real kernel (marker ``oracle``, one boot of the oracle's
Debian 6.1 guest, whose initramfs loads 9p and the virtio modules).

The guest adds a kprobe on ``9p:v9fs_mount`` (symbol_name ``module:symbol``), writes
``func:mod:MODULE`` filter tokens to set_ftrace_filter, leaves the function tracer on 9p's
v9fs_statfs, attaches an fexit program there (the module's BTF) and takes a snapshot. On the host, preflight rebuilds that state from the snapshot
(no mismatch with the machine's records) and predicts the same filter writes: the model must say
what the kernel said, including 6.1's ``-EINVAL`` for ``:mod:9p`` (filter_parse_regex reads a
module name that starts with a digit as an index).
"""

from __future__ import annotations

import pytest
from oracleutil import guest_items

from ftlab.oracle import runner
from ftlab.oracle.modgen import kprobe_module
from ftlab.preflight import load_snapshot, preflight, reconstruct
from ftlab.preflight.oracle import SNAPSHOT_PY

SCENARIO = """\
description: "module functions: kprobe on 9p:v9fs_mount, :mod: filters, tracer on v9fs_statfs [9p]"
kernel: {policy: linux-6.1}
steps:
  - {call: cmdline_proc_show}
"""
FILTERS = ["v9fs_statfs:mod:9p", "*:mod:virtio_ring", "v9fs_statfs"]


@pytest.mark.oracle
def test_module_functions_on_the_real_kernel(tmp_path) -> None:
    items, out = guest_items(tmp_path, "modules", SCENARIO)
    snap = out / "modules.snapshot.json"

    def hook(planned: list) -> None:
        p = planned[0]
        mod = kprobe_module("m9p", "9p:v9fs_mount", False)
        p.modules.append(mod)
        p.steps.append({"op": "kprobe_add", "action": "kprobe add 9p:v9fs_mount", "label": "m9p",
                        "module": mod.name, "target": "9p:v9fs_mount", "post": False})
        for tok in FILTERS:
            p.steps.append({"op": "tracer", "action": f"tracer function filter={tok}", "tracer": "function",
                            "filter": [tok], "notrace": []})
        p.steps.append({"op": "bpf_attach", "action": "bpf attach fexit fx -> 9p:v9fs_statfs", "prog": "fx",
                        "kind": "fexit", "target": "9p:v9fs_statfs", "ret": 0})
        p.steps.append({"op": "snapshot", "action": "snapshot", "script": SNAPSHOT_PY, "path": str(snap)})

    res = runner.run(items, str(out), post_plan=hook)["scenarios"][0]
    assert res["status"] == "clean", res["problems"]
    real = {st["action"]: st["result"] for st in res["steps"]}
    assert real["kprobe add 9p:v9fs_mount"] == "ok"
    assert [real[f"tracer function filter={t}"] for t in FILTERS] == ["EINVAL", "ok", "ok"]
    assert real["bpf attach fexit fx -> 9p:v9fs_statfs"] == "ok"

    s = load_snapshot(str(snap))
    # report_probe: "addr  k  sym+0x0  module [FTRACE]"; enabled_functions: "sym [module] (n) ..."
    assert any(ln.split()[2:4] == ["v9fs_mount+0x0", "9p"] for ln in (s.text("kprobes_list") or "").splitlines()), \
        s.text("kprobes_list")
    assert any(ln.startswith("v9fs_mount [9p] (1) R") for ln in s.text("enabled_functions").splitlines())
    # the link's target: its BTF object (the module's, not vmlinux's 1) and id, named through the
    # trampoline key of the direct--> line
    link = next(ln for ln in s.doc["bpf"]["links"] if ln.get("kind") == "fexit")
    assert link["target"] == "9p:v9fs_statfs" and link["target_obj_id"] > 1, link
    rec = reconstruct(s, "linux-6.1")
    kinds = sorted(a.describe() for a in rec.actions)
    assert "kprobe 9p:v9fs_mount" in kinds and "tracer function filter=['9p:v9fs_statfs']" in kinds
    assert "bpf fexit ftlab_fexit -> 9p:v9fs_statfs" in kinds, kinds
    doc = preflight(str(snap), [f"tracer function --filter {t}" for t in FILTERS[:2]]
                    + ["kprobe add 9p:v9fs_mount --post --name second", "livepatch enable --func 9p:v9fs_statfs",
                       "call 9p:v9fs_statfs"])
    v = doc["variants"][0]
    assert v["replay_ok"] and v["mismatches"] == [], v
    got = [a["result"] for a in v["actions"]]
    assert got[:2] == ["EINVAL", "ok"]             # what the real kernel answered to the same writes
    assert got[2:] == ["ok", "ok", "ok"]           # an aggregated probe; a patch next to the sharing fexit
    assert v["actions"][4]["calls"][0]["programs"] == ["ftlab_fexit"]
