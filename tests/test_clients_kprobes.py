"""Kprobes on ftrace sites (kernel/kprobes.c, arch/x86/kernel/kprobes/ftrace.c, Linux 6.1) under seed-v2."""

from __future__ import annotations

import pytest
from clientutil import EAGAIN, EBUSY, EINVAL, LAYOUTS, TAGS, Run, assert_quiet, full_key, run_orders, small_kernel

from ftlab.errors import InputError
from ftlab.model import views
from ftlab.model.calls import call
from ftlab.model.clients import kprobes as kp
from ftlab.model.clients.bpf import BpfProgram, bpf_attach
from ftlab.model.clients.direct_client import direct_client_load
from ftlab.model.clients.livepatch import livepatch_enable
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.invariants import check_all


def state(run: Run) -> kp.KprobeState:
    return kp.kprobe_state(run.k)


def test_probe_without_post_handler_arms_kprobe_ftrace_ops_static_save_regs():
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa")
    ops = state(run).kprobe_ftrace_ops
    assert ops.flags == F.ENABLED | F.SAVE_REGS | F.INITIALIZED | F.ALLOC_TRAMP  # not DYNAMIC
    assert state(run).kprobe_ftrace_enabled == 1
    line = views.normalize_addresses(views.enabled_functions(run.k))
    assert line == "fa (1) R    \ttramp: ADDR (kprobe_ftrace_handler+0x0/0x1b0) ->kprobe_ftrace_handler+0x0/0x1b0\n"


def test_probe_with_post_handler_arms_kprobe_ipmodify_ops():
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa", True)
    ops = state(run).kprobe_ipmodify_ops
    assert ops.flags == F.ENABLED | F.SAVE_REGS | F.INITIALIZED | F.ALLOC_TRAMP | F.IPMODIFY
    assert views.enabled_functions(run.k).startswith("fa (1) R I  ")


def test_handler_runs_pre_then_post_and_restores_regs_ip():
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa", True)
    t = call(run.k, "fa")
    assert [e for e in t.events if e[0].startswith("kprobe")] == [("kprobe_pre", "fa"), ("kprobe_post", "fa")]
    assert t.body == "fa" and "regs.ip" not in t.kinds()


def test_the_ops_is_registered_for_the_first_probe_and_unregistered_after_the_last():
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa")
    run(kp.register_kprobe, "fb")
    assert state(run).kprobe_ftrace_enabled == 2
    assert [o.name for o in run.k.ftrace_ops_list] == ["kprobe_ftrace_ops"]
    run(kp.unregister_kprobe, "fa")
    assert [o.name for o in run.k.ftrace_ops_list] == ["kprobe_ftrace_ops"]
    assert call(run.k, "fa").details("kprobe_pre") == []
    run(kp.unregister_kprobe, "fb")
    assert_quiet(run.k)
    assert state(run).kprobe_ftrace_enabled == 0
    assert state(run).kprobe_ftrace_ops.hash.filter_hash.ips == frozenset()


def test_registering_the_same_probe_twice_is_einval_and_unknown_labels_too():
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa")
    run(kp.register_kprobe, "fb", label="fa", expect=EINVAL)
    run(kp.unregister_kprobe, "nosuch", expect=EINVAL)


def test_unknown_function_is_an_input_error():
    run = Run(small_kernel())
    with pytest.raises(InputError):
        kp.register_kprobe(run.k, "nosuch")


def test_kprobes_on_ftrace_missing_on_the_arch_is_not_modelled():
    run = Run(small_kernel(arch="arm64"))
    run(kp.register_kprobe, "fa", expect=-95)


def test_a_duplicated_name_probes_its_first_record():
    run = Run(small_kernel())
    run(kp.register_kprobe, "dup")
    assert call(run.k, "dup", 1).details("kprobe_pre") == ["dup"]
    assert call(run.k, "dup", 2).details("kprobe_pre") == []


# ---------------------------------------------------------------------------------------------
# Against the IPMODIFY / DIRECT users
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("live_patch_first", [True, False])
def test_post_handler_probe_and_live_patch_conflict_with_ebusy_in_both_orders(live_patch_first):
    run = Run(small_kernel())
    if live_patch_first:
        run(livepatch_enable, "p1", ["fa"])
        run(kp.register_kprobe, "fa", True, expect=EBUSY)
    else:
        run(kp.register_kprobe, "fa", True)
        run(livepatch_enable, "p1", ["fa"], expect=EBUSY)


def test_a_refused_first_probe_leaves_only_the_static_ops_trampoline_behind():
    run = Run(small_kernel())
    run(livepatch_enable, "p1", ["fa"])
    before = full_key(run.k)
    run(kp.register_kprobe, "fa", True, expect=EBUSY)
    after = full_key(run.k)
    assert after != before  # ftrace_startup frees a refused ops' trampoline only if DYNAMIC
    assert "kprobe_ipmodify_ops" in run.k.trampolines.values()
    assert state(run).kprobe_ipmodify_ops.flags & F.ADDING  # left set by the failed startup
    assert state(run).kprobe_ipmodify_enabled == 0


def test_probe_without_post_handler_coexists_with_live_patch_in_both_orders():
    for first in ("kp", "lp"):
        run = Run(small_kernel())
        steps = [(kp.register_kprobe, "fa"), (livepatch_enable, "p1", ["fa"])]
        for s in (steps if first == "kp" else steps[::-1]):
            run(*s)
        t = call(run.k, "fa")
        assert t.details("kprobe_pre") == ["fa"] and t.body == "livepatch_p1:fa"


def test_seed_direct_first_then_post_handler_probe_is_ebusy_no_ops_func():
    run = Run(small_kernel())
    run(direct_client_load, "dm", ["fa"])
    run(kp.register_kprobe, "fa", True, expect=EBUSY)


def test_seed_post_handler_probe_first_then_direct_sample_is_eagain():
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa", True)
    run(direct_client_load, "dm", ["fa"], expect=EAGAIN)


def test_seed_filter_growth_of_live_kprobe_ipmodify_ops_bypasses_prepare():
    """facts §2.7: adding an ip to the registered kprobe_ipmodify_ops only runs
    ftrace_hash_ipmodify_update, so a non-sharing DIRECT ops on that ip is never asked."""
    run = Run(small_kernel())
    run(kp.register_kprobe, "fb", True)
    run(direct_client_load, "dm", ["fa"])
    run.allow = ("ipmodify_exclusive",)
    run(kp.register_kprobe, "fa", True, label="fa-post")
    violations = check_all(run.k)
    assert violations == ["ipmodify_exclusive: fa: IPMODIFY ops kprobe_ipmodify_ops shares the function "
                          "with DIRECT ops direct[dm] which lacks SHARE_IPMODIFY"]


def test_seed_post_handler_probe_and_bpf_fexit_share_after_the_eagain_retry():
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa", True)
    run(bpf_attach, BpfProgram("prog", "fexit", "fa"))
    t = call(run.k, "fa")
    assert t.details("kprobe_post") == ["fa"] and t.programs == ["prog"] and t.body == "fa"


# ---------------------------------------------------------------------------------------------
# Aggregated probes at one address
# ---------------------------------------------------------------------------------------------
def test_post_probe_first_then_plain_probe_aggregate_and_detach_cleanly():
    for detach in (["a", "b"], ["b", "a"]):
        run = Run(small_kernel())
        run(kp.register_kprobe, "fa", True, label="a")
        run(kp.register_kprobe, "fa", False, label="b")
        t = call(run.k, "fa")
        assert t.details("kprobe_pre") == ["b", "a"]  # newest child first
        assert t.details("kprobe_post") == ["a"]
        for label in detach:
            run(kp.unregister_kprobe, label)
        assert_quiet(run.k)
        assert state(run).kprobe_ipmodify_enabled == 0


def test_plain_probe_first_then_post_probe_keeps_kprobe_ftrace_ops_and_the_disarm_warns():
    """register_aggr_kprobe gives the armed aggregator a post_handler without re-arming it; the
    final disarm then picks kprobe_ipmodify_ops, whose filter lacks the address: the kernel's
    WARN_ONCE, an -ENOENT, and the probe stays armed (6.1 code as read, not run on a kernel)."""
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa", False, label="a")
    run(kp.register_kprobe, "fa", True, label="b")
    assert [o.name for o in run.k.ftrace_ops_list] == ["kprobe_ftrace_ops"]  # never IPMODIFY
    t = call(run.k, "fa")
    assert t.details("kprobe_pre") == ["b", "a"] and t.details("kprobe_post") == ["b"]
    run(kp.unregister_kprobe, "b")
    run.allow = ("no_warn",)
    run(kp.unregister_kprobe, "a", expect=-2, failure_changes_state=True)
    assert [e.text for e in run.k.warnings] == ["Failed to disarm kprobe-ftrace at fa+0x0 (error -2)"]
    assert state(run).kprobe_ipmodify_enabled == -1
    assert [o.name for o in run.k.ftrace_ops_list] == ["kprobe_ftrace_ops"]
    assert kp.kprobe_list(run.k) == "ffffffff81000000  k  fa+0x0  [FTRACE]\n"


def test_after_the_failed_disarm_a_new_post_probe_is_never_registered_with_ftrace():
    run = Run(small_kernel())
    run(kp.register_kprobe, "fa", False, label="a")
    run(kp.register_kprobe, "fa", True, label="b")
    run(kp.unregister_kprobe, "b")
    run.allow = ("no_warn", "kprobes_fire")
    run(kp.unregister_kprobe, "a", expect=-2, failure_changes_state=True)
    run(kp.register_kprobe, "fb", True, label="c")  # the counter is -1, not 0: no registration
    assert "kprobes_fire: fb: kprobe c did not fire" in check_all(run.k)


# ---------------------------------------------------------------------------------------------
# Orders with the other clients
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("probe", ["Kn", "Kp"])
@pytest.mark.parametrize("other", [t for t in TAGS if t not in ("Kn", "Kp")])
@pytest.mark.parametrize("probe_first", [True, False])
@pytest.mark.parametrize("probe_detached_first", [True, False])
def test_kprobes_with_each_other_client_in_every_attach_and_detach_order(layout, probe, other, probe_first,
                                                                         probe_detached_first):
    order = [probe, other] if probe_first else [other, probe]
    detach = [probe, other] if probe_detached_first else [other, probe]
    run_orders(layout, order, detach)


@pytest.mark.parametrize("detach", [["Kn", "Kp"], ["Kp", "Kn"]])
def test_plain_and_post_probes_on_disjoint_functions_in_every_order(detach):
    for order in (["Kn", "Kp"], ["Kp", "Kn"]):
        run_orders("glob", order, detach)


def test_sympos_picks_the_occurrence_for_kprobe_and_direct_targets() -> None:
    """``{name, sympos}`` on a kprobe or a plain direct client's target lands on that occurrence
    of a duplicated name (the module sets the address itself), not on the first one."""
    from ftlab.scenario import load_scenario_text
    from ftlab.scenario.runner import run_scenario

    text = ("steps:\n  - kprobe: add\n    target: {name: cmask_show, sympos: 2}\n"
            "  - direct: register\n    name: d\n    targets: [{name: cmask_show, sympos: 3}]\n"
            "    tramp: my_tramp1\n")
    scenario, lines = load_scenario_text(text)
    result = run_scenario(scenario, lines, "<t>")
    assert [s.result for s in result.steps] == ["ok", "ok"]
    k = result.kernel
    occurrences = k.cat.indices("cmask_show")
    assert len(occurrences) == 5
    assert sorted(k.recs) == [occurrences[1], occurrences[2]]
    assert result.steps[0].action == "kprobe add cmask_show,2"
    assert result.steps[1].action == "direct register d [cmask_show,3] tramp=my_tramp1"
