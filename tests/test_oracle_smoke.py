"""CI smoke test of the real-kernel oracle: a few scenarios in one real guest, diffed with the model.

Runs by default (marker ``oracle``). It installs what it needs with the same code as
``ftlab oracle setup`` and FAILS -- never skips -- when QEMU or the kernel cannot be set up.
The full set: ``ftlab oracle diff oracle/`` (README, "Real-kernel oracle").
"""

from __future__ import annotations

import pytest

from ftlab.cli_oracle import POLICY, resolve_items
from ftlab.errors import OracleError
from ftlab.oracle import runner
from ftlab.oracle.diff import compare_scenario, render, timings_text
from ftlab.oracle.observe import model_steps

from oracleutil import ready_kernel

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
