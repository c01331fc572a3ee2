"""The committed run of every bundled oracle scenario on the real 6.12 kernel
(tests/data/oracle-6.12/results, REPORT.md), diffed again with the model: no guest is booted.

The model has ``linux-6.12``, so the comparison is strict (records as printed: 6.12's O and M
columns, its %pS sizes, every BPF image size): every step must agree but the use-after-free the
model does not follow (pair-kprobe-kprobepost 7-13, as on 6.1). Were the policy missing,
``linux-6.1`` would stand in, loosely, and the steps that differ would be those REPORT.md lists
against it.
"""

from __future__ import annotations

import os

from ftlab.bundled import resolve_items
from ftlab.oracle import runner
from ftlab.oracle.diff import diff_document, model_policy, render

RESULTS = os.path.join(os.path.dirname(__file__), "data", "oracle-6.12", "results")

#: REPORT.md, section 2: scenario -> the steps that differ from linux-6.1
DIFFER_FROM_6_1 = {
    "detach-orders-lp-fentry-fexit": list(range(11, 18)),
    "fentry-fexit-under-livepatch-then-detach": list(range(4, 9)),
    "fmodret-after-fentry-under-livepatch": [4, 5],
    "stacked-patches-bottom-first": list(range(5, 14)),
    "pair-kprobe-kprobepost": list(range(7, 14)),
}


def _differing(doc: dict) -> dict[str, list[int]]:
    return {sc["source"].rsplit("/", 1)[-1][:-5]: [r["index"] for r in sc["steps"] if not r["agree"]]
            for sc in doc["scenarios"] if not sc["agree"]}


def test_committed_6_12_run_is_complete() -> None:
    res = runner.load_results(RESULTS)
    assert res["kernel"] == "6.12.95+deb12-amd64" and res["series"] == "6.12"
    assert len(res["scenarios"]) == 47 and sum(len(s["steps"]) for s in res["scenarios"]) == 604  # 610 but the 6 after the oops
    assert {s["status"] for s in res["scenarios"]} == {"clean", "dirty", "crashed"}
    assert all(s["touched_before"] is not None for s in res["scenarios"])


def test_committed_6_12_run_against_the_model() -> None:
    items = resolve_items(["oracle/"])
    doc = diff_document(items, runner.load_results(RESULTS))
    policy, note = model_policy("6.12")
    assert doc["policy"] == policy
    if note is not None:
        assert not doc["strict"]
        assert _differing(doc) == DIFFER_FROM_6_1, render(doc)
    else:
        assert _differing(doc) == {"pair-kprobe-kprobepost": DIFFER_FROM_6_1["pair-kprobe-kprobepost"]}, render(doc)


JIT = os.path.join(os.path.dirname(__file__), "data", "oracle-6.12", "jit-prototypes")


def test_image_sizes_on_other_prototypes_agree_with_the_real_6_12():
    """A run of jit-prototypes.yaml on the real 6.12.95 (one boot): fentry and fexit on functions of no
    argument (0x99), a 16-byte struct (0xac, 0x120), seven arguments the last a 4-byte one on the
    stack (0xdb, 0x15e), eight (0xdc, 0x160), seven pointers (0x110), a struct among five (0x100):
    every image size the model computes is the one the kernel printed. Step 11 differs in how
    %pS names the new image: it was allocated right where another BPF image ends, and the bpf
    ksym lookup (bpf_tree_comp takes an address equal to a symbol's end as inside it) named the
    neighbour, ``+0x100/0x100``; the model does not follow bpf_prog_pack's placement."""
    from ftlab.scenario import load_scenario

    src = os.path.join(JIT, "jit-prototypes.yaml")
    sc, lines = load_scenario(src)
    items = [runner.Item(sc, lines, src)]
    doc = diff_document(items, runner.load_results(os.path.join(JIT, "results")))
    assert doc["strict"] and _differing(doc) == {"jit-prototypes": [11]}, render(doc)
    row = doc["scenarios"][0]["steps"][10]
    assert row["differs"] == ["enabled"]
    assert any("bpf_trampoline_KEY+0x100/0x100" in r for r in row["kernel"]["enabled"])
