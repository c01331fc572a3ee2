"""CI smoke test of the real-kernel oracle: a few scenarios in one real guest per kernel (Debian's
6.1 and bookworm-backports' 6.12), diffed with the model.

Runs by default (marker ``oracle``). It installs what it needs with the same code as
``ftlab oracle setup`` (for 6.12 that enables bookworm-backports) and FAILS -- never skips -- when
QEMU or a kernel cannot be set up. The full set: ``ftlab oracle diff --kernel all oracle/``
(README, "Real-kernel oracle").
"""

from __future__ import annotations

import pytest
from oracleutil import ready_kernel

from ftlab.bundled import resolve_items
from ftlab.cli.oracle import POLICY
from ftlab.errors import OracleError
from ftlab.oracle import runner
from ftlab.oracle.diff import compare_scenario, diff_document, model_policy, render, timings_text
from ftlab.oracle.observe import head_fields, model_steps

SMOKE = ["oracle/pair-livepatch-fexit", "oracle/pair-fmodret-direct", "oracle/pair-kprobe-tracer",
         "oracle/replace-under-fexit"]


@pytest.mark.oracle
def test_oracle_smoke_one_boot_agrees_with_the_model(tmp_path) -> None:
    info = ready_kernel()
    assert info.version.startswith("6.1.")
    items = resolve_items(SMOKE)
    try:
        results = runner.run(items, str(tmp_path / "out"))
    except OracleError as e:
        pytest.fail(f"oracle run failed: {e}")
    print(timings_text(results))
    assert len(results["boots"]) == 1, results["boots"]
    assert [s["status"] for s in results["scenarios"]] == ["clean"] * len(SMOKE), \
        [(s["id"], s["status"], s["problems"]) for s in results["scenarios"]]
    scenarios = [compare_scenario(it.source, model_steps(it.scenario, it.lines, it.source, policy=POLICY), res)
                 for it, res in zip(items, results["scenarios"])]
    doc = {"kernel": results["kernel"], "policy": POLICY, "scenarios": scenarios, "oracle": results}
    assert all(s["agree"] for s in scenarios), render(doc)
    # the calls really observed something: a patched body, BPF programs and a hook
    steps = [st for s in results["scenarios"] for st in s["steps"] if st.get("call")]
    assert any(st["call"]["body"] == "p1" for st in steps)
    assert any(st["call"]["programs"] for st in steps)
    assert any(st["call"]["hooks"] for st in steps)


#: 6.12: the same four, and live patch + fentry + fexit on one function, which kills ftrace on
#: 6.1.192 and works on 6.12.95 (the retry no longer clears the trampoline's ftrace_ops).
SMOKE_612 = SMOKE + ["oracle/fentry-fexit-under-livepatch-then-detach"]


@pytest.mark.oracle
def test_oracle_smoke_6_12_one_boot(tmp_path) -> None:
    info = ready_kernel("6.12")
    assert info.series == "6.12" and info.version.startswith("6.12.") and info.version.endswith("+deb12-amd64")
    items = resolve_items(SMOKE_612)
    try:
        results = runner.run(items, str(tmp_path / "out"), kernel="6.12")
    except OracleError as e:
        pytest.fail(f"oracle run failed: {e}")
    print(timings_text(results))
    assert results["kernel"] == info.version and results["series"] == "6.12"
    assert len(results["boots"]) == 1, results["boots"]
    assert [s["status"] for s in results["scenarios"]] == ["clean"] * len(SMOKE_612), \
        [(s["id"], s["status"], s["problems"]) for s in results["scenarios"]]
    doc = diff_document(items, results)
    policy, note = model_policy("6.12")
    assert doc["policy"] == policy
    by_name = {sc["source"].rsplit("/", 1)[-1]: sc for sc in doc["scenarios"]}
    for name in SMOKE:  # nothing in these differs between the kernels but the text
        assert by_name[name.split("/")[1] + ".yaml"]["agree"], render(doc)
    # live patch + fentry + fexit: the call runs fentry, the patched body, then fexit; ftrace lives
    lp = results["scenarios"][-1]["steps"]
    call = lp[3]["call"]
    assert (call["body"], call["programs"], call["fexit"]) == ("p1", ["fe", "fx"], [["fx", 0]]), lp[3]
    assert not any(st["ftrace_dead"] or st["warn"] for st in lp), lp
    assert lp[-1]["call"]["body"] == "original" and lp[-1]["enabled"] == []
    h = head_fields(lp[3]["enabled"][0])
    assert h is not None and (h["count"], h["R"], h["I"], h["D"], h["O"], h["M"], h["columns"]) == \
        (2, True, True, True, False, True, 5)
    assert "->arch_ftrace_ops_list_func+0x0/" in lp[3]["enabled"][0]
    assert "\tdirect-->bpf_trampoline_" in lp[3]["enabled"][0] and "/0x1000" not in lp[3]["enabled"][0]
    lp_diff = by_name["fentry-fexit-under-livepatch-then-detach.yaml"]
    if note is None:   # the model has linux-6.12: it must say all of this
        assert lp_diff["agree"], render(doc)
    else:              # linux-6.1 stands in and predicts 6.1's ftrace kill at the call
        assert [r["index"] for r in lp_diff["steps"] if not r["agree"]] == [4, 5, 6, 7, 8]
        assert lp_diff["steps"][3]["model"]["ftrace_dead"] is True
