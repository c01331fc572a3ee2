"""function_graph as 6.12 has it (v6.11 rewrite): fgraph users are subops of one manager graph_ops.

Model level: up to 16 users (-ENOSPC beyond) on 6.12, one (-EBUSY for a second) on 6.1; the
manager counts once per function, traces the union of the users' filters less the intersection of
their notrace hashes, and a call runs each user that traces the function. On the real kernels
(tests/data/oracle-6.12/fgraph-notrace, one boot each): a set_ftrace_notrace write while
function_graph is the only user does not reach 6.12's manager (intersect_hashes with a single
subops returns the manager's own notrace hash), so the function stays traced; on 6.1 it goes.
"""

from __future__ import annotations

import os

import pytest

from ftlab.model import calls, views
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import tracer
from ftlab.model.clients.tracer import fgraph_init_ops, fgraph_ops
from ftlab.model.errno import Errno
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.flags import FTRACE_OPS_FL_SUBOP
from ftlab.model.ftrace import ftrace_ops_init, ftrace_set_filter, ftrace_set_notrace
from ftlab.model.kernel import Kernel
from ftlab.model.ops import ftrace_ops
from ftlab.model.policies import get_policy

NAMES = ["fa", "fb", "fc"]


def kernel(policy: str = "linux-6.12") -> Kernel:
    return Kernel(Catalogue.synthetic(NAMES), policy=policy)


def instance(k: Kernel, name: str, *funcs: str, notrace: tuple[str, ...] = ()) -> fgraph_ops:
    """A trace instance's fgraph user (allocate_fgraph_ops: its ops takes the instance's hash)."""
    tr_ops = ftrace_ops(f"{name}.ops")
    ftrace_ops_init(k, tr_ops)
    for f in funcs:
        assert ftrace_set_filter(k, tr_ops, f) == 0
    for f in notrace:
        assert ftrace_set_notrace(k, tr_ops, f) == 0
    return fgraph_ops(name, fgraph_init_ops(name, tr_ops))


def heads(k: Kernel) -> list[str]:
    return [ln.split(")")[0] + ")" for ln in views.enabled_functions(k).splitlines() if not ln.startswith("\t")]


def graph_events(k: Kernel, name: str) -> int:
    return sum(1 for e in calls.call(k, name).events if e[0] == "function_graph")


def test_the_table_selects_the_structure():
    assert get_policy("linux-6.12").fgraph_array_size == 16
    assert all(get_policy(p).fgraph_array_size == 0 for p in ("linux-5.18", "seed-v2", "linux-6.1"))


def test_6_1_has_one_user():
    k = kernel("linux-6.1")
    assert tracer.current_tracer(k, "function_graph") == 0
    assert tracer.register_ftrace_graph(k, instance(k, "inst", "fb")) == -Errno.EBUSY
    st = tracer.tracer_state(k)
    assert st.graph_ops.func_hash is st.global_ops.local_hash and st.fgraph_array == []


def test_6_12_has_up_to_sixteen_users_then_enospc():
    k = kernel()
    assert tracer.set_ftrace_filter(k, "fa") == 0 and tracer.current_tracer(k, "function_graph") == 0
    users = [instance(k, f"inst{n}", "fb") for n in range(15)]
    assert [tracer.register_ftrace_graph(k, g) for g in users] == [0] * 15
    st = tracer.tracer_state(k)
    assert st.ftrace_graph_active == 16 and sorted(g.idx for g in users) == list(range(1, 16))
    before = k.full_key()
    assert tracer.register_ftrace_graph(k, instance(k, "one-too-many", "fc")) == -Errno.ENOSPC
    assert k.full_key() == before and not k.locks
    # the manager is registered once, with the union of the filters: fa and fb, one count each
    assert [op.name for op in k.ftrace_ops_list] == ["graph_ops"]
    assert heads(k) == ["fa (1)", "fb (1)"]
    # a slot freed is handed out again (the LRU table)
    tracer.unregister_ftrace_graph(k, users[3])
    late = instance(k, "late", "fc")
    assert tracer.register_ftrace_graph(k, late) == 0 and late.idx == users[3].idx
    assert heads(k) == ["fa (1)", "fb (1)", "fc (1)"]


def test_the_manager_and_its_users():
    k = kernel()
    assert tracer.set_ftrace_filter(k, "fa") == 0 and tracer.current_tracer(k, "function_graph") == 0
    st = tracer.tracer_state(k)
    sub = st.funcgraph_ops.ops
    assert sub.func_hash is st.global_ops.local_hash and sub.flags & FTRACE_OPS_FL_SUBOP and sub.managed is st.graph_ops
    assert st.graph_ops.func_hash is st.graph_ops.local_hash        # the manager's hash is its own copy
    assert views.normalize_addresses(views.enabled_functions(k)) == (
        "fa (1)           \ttramp: ADDR (ftrace_graph_func+0x0/0x20) ->ftrace_graph_func+0x0/0x20\n")
    inst = instance(k, "inst", "fa", "fb")
    assert tracer.register_ftrace_graph(k, inst) == 0
    assert heads(k) == ["fa (1)", "fb (1)"]                          # counted once however many users
    assert (graph_events(k, "fa"), graph_events(k, "fb")) == (2, 1)  # each user that traces it
    # the function tracer on the same function is another ops: count 2
    tracer.tracing_start_function_trace(k)
    assert heads(k)[0] == "fa (2)"
    tracer.tracing_stop_function_trace(k)
    # the top user leaves: the manager is rebuilt from the instance alone
    tracer.unregister_ftrace_graph(k)
    assert heads(k) == ["fa (1)", "fb (1)"] and graph_events(k, "fa") == 1
    assert not sub.flags & (F.ENABLED | FTRACE_OPS_FL_SUBOP) and sub.managed is None
    tracer.unregister_ftrace_graph(k, inst)
    assert views.enabled_functions(k) == "" and k.ftrace_ops_list == [] and k.warnings == []
    assert st.graph_ops.hash.filter_hash.count == 0


def test_notrace_is_the_intersection():
    k = kernel()
    a = instance(k, "a", notrace=("fa", "fb"))
    b = instance(k, "b", notrace=("fb", "fc"))
    assert tracer.register_ftrace_graph(k, a) == 0 and tracer.register_ftrace_graph(k, b) == 0
    assert tracer.tracer_state(k).graph_ops.hash.notrace_hash.ips == {k.cat.lookup("fb")}
    assert heads(k) == ["fa (1)", "fc (1)"]


def test_a_filter_write_while_function_graph_runs_alone_reaches_the_manager():
    k = kernel()
    assert tracer.set_ftrace_filter(k, "fa fb") == 0 and tracer.current_tracer(k, "function_graph") == 0
    assert tracer.set_ftrace_filter(k, "fc") == 0
    assert heads(k) == ["fc (1)"]
    assert graph_events(k, "fc") == 1 and graph_events(k, "fa") == 0


@pytest.mark.parametrize("policy,traced", [("linux-6.1", ["fa (1)"]), ("linux-6.12", ["fa (1)", "fb (1)"])])
def test_a_notrace_write_while_function_graph_runs_alone(policy, traced):
    k = kernel(policy)
    assert tracer.set_ftrace_filter(k, "fa fb") == 0 and tracer.current_tracer(k, "function_graph") == 0
    assert tracer.set_ftrace_notrace(k, "fb") == 0
    assert tracer.read_set_ftrace_notrace(k) == "fb\n"
    assert heads(k) == traced


DATA = os.path.join(os.path.dirname(__file__), "data", "oracle-6.12", "fgraph-notrace")


@pytest.mark.parametrize("series", ["6.12", "6.1"])
def test_the_real_kernels_agree(series):
    from ftlab.oracle import runner
    from ftlab.oracle.diff import diff_document, render
    from ftlab.scenario import load_scenario

    src = os.path.join(DATA, "fgraph-notrace-write.yaml")
    sc, lines = load_scenario(src)
    res = runner.load_results(os.path.join(DATA, f"results-{series}"))
    doc = diff_document([runner.Item(sc, lines, src)], res)
    assert doc["strict"] and doc["agree"], render(doc)
    step3 = res["scenarios"][0]["steps"][2]["enabled"]
    names = [r.split(" (")[0] for r in step3]
    assert names == (["cmdline_proc_show", "version_proc_show"] if series == "6.12" else ["cmdline_proc_show"])
