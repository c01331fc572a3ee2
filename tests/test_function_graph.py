"""The function_graph tracer: graph_ops shares global_ops' filter, one graph tracer at a time,
what a call runs, and preflight on a machine whose current tracer is function_graph."""

from __future__ import annotations

import copy
import json
import os

from ftlab.model import calls, views
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import tracer
from ftlab.model.errno import Errno
from ftlab.model.kernel import Kernel
from ftlab.preflight import load_snapshot, parse_action, preflight, reconstruct

NAMES = ["fa", "fb", "fc"]


def kernel() -> Kernel:
    return Kernel(Catalogue.synthetic(NAMES), policy="linux-6.1")


def heads(k: Kernel) -> list[str]:
    return [ln for ln in views.enabled_functions(k).splitlines() if not ln.startswith("\t")]


def test_graph_ops_is_filtered_by_set_ftrace_filter() -> None:
    k = kernel()
    assert tracer.set_ftrace_filter(k, "fa fb") == 0
    assert tracer.current_tracer(k, "function_graph") == 0
    st = tracer.tracer_state(k)
    assert st.graph_ops.func_hash is st.global_ops.local_hash
    assert [h.split(" (")[0] for h in heads(k)] == ["fa", "fb"]
    assert "(ftrace_graph_func+0x0/0x10)" in views.enabled_functions(k)
    # a filter write while only graph_ops is on still rewrites the records (ftrace_ops_update_code)
    assert tracer.set_ftrace_filter(k, "fc") == 0
    assert [h.split(" (")[0] for h in heads(k)] == ["fc"]
    assert [e for e in calls.call(k, "fc").events if e[0] == "function_graph"] == [("function_graph", "fc")]
    assert not [e for e in calls.call(k, "fa").events if e[0] == "function_graph"]


def test_switching_tracers_and_one_graph_tracer_at_a_time() -> None:
    k = kernel()
    assert tracer.set_ftrace_filter(k, "fb") == 0
    assert tracer.current_tracer(k, "function_graph") == 0
    before = k.full_key()
    assert tracer.register_ftrace_graph(k) == -Errno.EBUSY
    assert k.full_key() == before and not k.locks          # refused: nothing changed, no lock held
    assert tracer.current_tracer(k, "function") == 0
    assert "(function_trace_call+0x0/0x120)" in views.enabled_functions(k)
    assert [e[0] for e in calls.call(k, "fb").events if e[0].startswith("function")] == ["function"]
    assert tracer.current_tracer(k, "nop") == 0
    assert views.enabled_functions(k) == "" and not k.warnings


def test_preflight_rebuilds_a_function_graph_tracer(tmp_path) -> None:
    with open(os.path.join(os.path.dirname(__file__), "data", "snapshots", "livepatch.snapshot.json")) as f:
        doc = copy.deepcopy(json.load(f))
    files = doc["files"]
    files["enabled_functions"]["text"] += (
        "loadavg_proc_show (1)      \ttramp: 0xffffffffc0288000 (ftrace_graph_func+0x0/0x10) "
        "->ftrace_graph_func+0x0/0x10\n")
    files["current_tracer"] = {"path": "current_tracer", "text": "function_graph\n"}
    files["set_ftrace_filter"] = {"path": "set_ftrace_filter", "text": "loadavg_proc_show\n"}
    files["set_ftrace_notrace"] = {"path": "set_ftrace_notrace", "text": "#### no functions disabled ####\n"}
    p = tmp_path / "fg.snapshot.json"
    p.write_text(json.dumps(doc))
    rec = reconstruct(load_snapshot(str(p)), "linux-6.1")
    assert "tracer function_graph filter=['loadavg_proc_show']" in [a.describe() for a in rec.actions]
    out = preflight(str(p), ["call loadavg_proc_show", "tracer function_graph --filter cmdline_proc_show"])
    v = out["variants"][0]
    assert v["replay_ok"] and v["mismatches"] == []
    assert v["actions"][0]["calls"][0]["hooks"] == ["function_graph loadavg_proc_show"]
    assert v["actions"][1]["result"] == "ok"
    assert parse_action("tracer function_graph --filter a", 1, {}).tracer == "function_graph"


def test_a_universe_may_use_the_function_graph_tracer() -> None:
    from kutil import explore_universe
    model, result = explore_universe(
        "policy: linux-6.1\nfunctions: [fa, fb]\ncalls: true\nclients:\n"
        "  - {livepatch: p1, funcs: [fa]}\n  - {bpf: fx, kind: fexit, target: fa}\n"
        "  - {tracer: tracer, kind: function_graph, filter: [fa, fb]}\n")
    assert "function_graph tracer" in [str(a) for a in model.actions(model.init_states()[0])]
    assert result.states > 10
    result.assert_no_violation()
