"""The explorer on ftrace universes: pinned state counts, findings, mutations, interleavings."""

from __future__ import annotations

import pytest

from ftlab.bundled import bundled_universes, resolve_universe
from ftlab.explorer.explore import counterexample_scenario, explore, interleave_group
from ftlab.explorer.interleavings import explore_interleavings
from ftlab.explorer.universe import FtraceModel, load_universe_text
from ftlab.model.catalogue import Catalogue
from ftlab.model.invariants import check_all
from ftlab.model.kernel import Kernel
from ftlab.model.sched import Task, run_tasks


def universe(name):
    return resolve_universe(name)[0]


# Pinned state counts: a change here is a change in the model and must be looked at.
PINNED = {
    ("livepatch-and-fexit", "linux-5.18", 6): (15, 42),
    ("livepatch-and-fexit", "seed-v2", 6): (68, 147),
    ("livepatch-and-fexit", "linux-6.1", 6): (59, 135),
    ("three-functions-five-clients", "linux-5.18", 4): (87, 255),
    ("three-functions-five-clients", "seed-v2", 4): (328, 510),
    ("three-functions-five-clients", "linux-6.1", 4): (296, 495),
    ("sharing-walk", "linux-5.18", 4): (18, 56),
    ("sharing-walk", "seed-v2", 4): (118, 196),
    ("sharing-walk", "linux-6.1", 4): (112, 196),
    ("module-hook-and-livepatch", "seed-v2", 4): (20, 39),
    ("direct-client-kprobe-tracer", "linux-6.1", 4): (77, 164),
    ("fmod-ret-and-patch", "linux-6.1", 4): (32, 51),
}


@pytest.mark.parametrize("name,policy,depth", sorted(PINNED))
def test_pinned_state_counts(name, policy, depth):
    r = explore(universe(name), policy, depth, threads=0).result
    assert (r.states, r.transitions) == PINNED[(name, policy, depth)]


def test_seed_walk_stops_at_share_is_found_with_a_shortest_counterexample():
    r = explore(universe("sharing-walk"), "seed-v2", 5, threads=0).result
    cx = r.counterexample("livepatch_body")
    assert cx.depth == 4
    assert [str(a) for a in cx.actions][-1] == "enable p1"


def test_linux_6_1_fexit_after_fentry_under_a_live_patch_is_found():
    r = explore(universe("livepatch-and-fexit"), "linux-6.1", 4, threads=0).result
    cx = r.counterexample("bpf_programs_run")
    assert [str(a) for a in cx.actions] == ["enable p1", "attach fe", "attach fx"]


def test_a_universe_without_violations_under_the_seed():
    spec = load_universe_text("""
functions: [f]
clients:
  - livepatch: p1
    funcs: [f]
  - bpf: fx
    kind: fexit
    target: f
""", "u.yaml")
    r = explore(spec, "seed-v2", 6, threads=0).result
    r.assert_no_violation()
    assert r.states == 14


def test_symmetry_reduction_agrees_with_the_unreduced_search():
    spec = load_universe_text("""
functions: [f]
clients:
  - bpf: a
    kind: fentry
    target: f
  - bpf: b
    kind: fentry
    target: f
  - livepatch: p
    funcs: [f]
""", "u.yaml")
    for policy in ("seed-v2", "linux-6.1"):
        full = explore(spec, policy, 6, threads=0, symmetry=False).result
        red = explore(spec, policy, 6, threads=0, symmetry=True).result
        assert red.states < full.states
        assert set(red.violations) == set(full.violations)


@pytest.mark.parametrize("name", sorted(bundled_universes()))
def test_symmetry_agrees_on_bundled_universes(name):
    spec = universe(name)
    full = explore(spec, spec.policy, 3, threads=0, symmetry=False).result
    red = explore(spec, spec.policy, 3, threads=0, symmetry=True).result
    assert set(red.violations) == set(full.violations)


def test_trylock_makes_the_live_patch_retry_and_blocking_lock_deadlocks():
    model = FtraceModel(universe("livepatch-and-fexit"), policy="seed-v2")
    g = interleave_group(model, ["attach fe"], ["attach fx", "enable p1"], preemption_bound=2)
    results = {tuple(sorted(o["results"].items())) for o in g.outcomes}
    assert (("attach fx", "ok"), ("enable p1", "EAGAIN")) in results
    assert not g.bad
    mutated = FtraceModel(universe("livepatch-and-fexit"), policy="seed-v2",
                          mutations=frozenset({"ops-func-blocking-lock"}))
    g = interleave_group(mutated, ["attach fe"], ["attach fx", "enable p1"], preemption_bound=2)
    dead = [b for b in g.bad if b["kind"] == "deadlock"]
    assert dead and "holds tr->mutex" in dead[0]["detail"] and "wants direct_mutex" in dead[0]["detail"]


@pytest.mark.parametrize("mutation,universe_name", [("no-orig-stack", "livepatch-and-fexit"),
                                                    ("skip-prepare", "livepatch-and-fexit"),
                                                    ("ops-func-blocking-lock", "livepatch-and-fexit")])
def test_each_mutation_is_killed(mutation, universe_name):
    spec = universe(universe_name)
    base = explore(spec, "seed-v2", 4)
    mut = explore(spec, "seed-v2", 4, mutations=frozenset({mutation}))
    assert set(mut.violated) - set(base.violated)


def test_preemption_bound_none_explores_every_interleaving():
    from ftlab.model import ftrace
    from ftlab.model.ops import ftrace_ops

    def make():
        k = Kernel(Catalogue.synthetic(["f", "g"]), policy="linux-6.1")
        a, b = ftrace_ops("a", "function_trace_call"), ftrace_ops("b", "function_trace_call")
        for ops, f in ((a, "f"), (b, "g")):
            ftrace.ftrace_set_filter_ip(k, ops, k.cat.lookup(f))
        return k, [Task("a", lambda k: ftrace.register_ftrace_function(k, a)),
                   Task("b", lambda k: ftrace.register_ftrace_function(k, b))]

    def run_schedule(prefix):
        return run_tasks(*make(), prefix)

    bounded = explore_interleavings(run_schedule, check=lambda r: check_all(r.kernel), preemption_bound=0)
    full = explore_interleavings(run_schedule, check=lambda r: check_all(r.kernel), preemption_bound=None)
    assert bounded.runs == 2 and full.runs > bounded.runs and full.complete
    assert not full.bad and set(full.outcomes) == {((("a", 0), ("b", 0)), False, False, None)}


def test_counterexample_becomes_a_scenario_document():
    model = FtraceModel(universe("livepatch-and-fexit"), policy="linux-6.1")
    from ftlab.explorer.checker import Checker
    r = Checker(model).depth(4).run()
    doc = counterexample_scenario(model, r.counterexample("bpf_programs_run"), "bpf_programs_run")
    assert doc["kernel"]["policy"] == "linux-6.1" and doc["check_invariants"] is True
    assert [list(s)[0] for s in doc["steps"]][:3] == ["livepatch", "bpf", "bpf"]


@pytest.mark.parametrize("name,policy", [("three-functions-five-clients", "seed-v2"), ("sharing-walk", "linux-6.1"),
                                         ("livepatch-and-fexit", "linux-6.1")])
def test_two_processes_find_what_one_finds(monkeypatch, name, policy):
    """The search shared out between processes (from the first layer on) gives the same states,
    transitions, violation counts and shortest counterexamples as one process."""
    import ftlab.explorer.checker as checker_mod

    monkeypatch.setattr(checker_mod, "SPLIT_AT", 1)
    one = explore(universe(name), policy, 5, threads=0).result
    two = explore(universe(name), policy, 5, threads=0, workers=2).result
    assert (two.states, two.transitions, two.violation_counts) == (one.states, one.transitions, one.violation_counts)
    assert {n: [str(a) for a in cx.actions] for n, cx in two.violations.items()} == \
        {n: [str(a) for a in cx.actions] for n, cx in one.violations.items()}


def test_an_oops_ends_the_world_and_the_search_goes_on_elsewhere():
    """With calls, 6.1 reaches the oops of bpf_trampoline_update (the fops of a trampoline put
    while ftrace was dead); that world has no next action, as a scenario run stops there."""
    spec = universe("fmod-ret-and-patch").model_copy(update={"calls": True})
    rep = explore(spec, "linux-6.1", 8, threads=0)
    cx = rep.result.counterexample("no_oops")
    assert cx.depth == 7 and str(cx.actions[-1]) == "disable p1"
    oopsed = rep.result.replay(cx)[-1]
    assert oopsed.ended == "Oops" and rep.model.actions(oopsed) == []
    assert "no_model_error" not in rep.result.violations


def test_a_model_error_is_a_counterexample_not_a_crash(monkeypatch):
    from ftlab.errors import ModelError
    from ftlab.model.clients import kprobes

    def broken(k, *args, **kw):
        raise ModelError("lock misuse in a broken model")

    monkeypatch.setattr(kprobes, "register_kprobe", broken)
    rep = explore(universe("direct-client-kprobe-tracer"), "linux-6.1", 3, threads=0)
    cx = rep.result.counterexample("no_model_error")
    assert cx.depth == 1 and cx.messages == [f"{cx.actions[0]}: lock misuse in a broken model"]


SYMMETRIC_PAIRS = """
policy: POLICY
functions: [f, g, security_task_getsid]
clients:
  - livepatch: p1
    funcs: [f]
  - livepatch: p2
    funcs: [f]
  - bpf: x1
    kind: fexit
    target: f
  - bpf: x2
    kind: fexit
    target: f
  - kprobe: k1
    target: g
    post: true
  - kprobe: k2
    target: g
    post: true
  - direct: d1
    targets: [g]
  - direct: d2
    targets: [g]
  - ops: o1
    funcs: [security_task_getsid]
  - ops: o2
    funcs: [security_task_getsid]
"""


@pytest.mark.parametrize("policy", ["seed-v2", "linux-6.1"])
@pytest.mark.parametrize("first,second", [("enable p1", "attach x1"), ("attach x1", "enable p1"),
                                          ("add k1", "register d1"), ("register d1", "register o1"),
                                          ("register o1", "add k1")])
def test_the_key_of_a_state_under_a_renaming_is_the_key_of_the_renamed_state(policy, first, second):
    # the typed renaming must reach every place a client's name is held: swapping the names of
    # interchangeable clients in the key of a state gives the key of the state the swapped
    # actions reach
    model = FtraceModel(load_universe_text(SYMMETRIC_PAIRS.replace("POLICY", policy), "u.yaml"))
    swap = {"p1": "p2", "p2": "p1", "x1": "x2", "x2": "x1", "k1": "k2", "k2": "k1", "d1": "d2", "d2": "d1",
            "o1": "o2", "o2": "o1"}

    def reach(labels):
        w = model.init_states()[0]
        for label in labels:
            w, _ = model.apply(w, model.action(label))
        return w

    def swapped(label):
        verb, name = label.split()
        return f"{verb} {swap[name]}"

    one = reach([first, second])
    other = reach([swapped(first), swapped(second)])
    assert model.key(one) != model.key(other)
    assert model.key(one, lambda n: swap.get(n, n)) == model.key(other)
    canon = model.symmetry()
    assert canon is not None and canon(one) == canon(other)
