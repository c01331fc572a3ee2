"""The invariants of ftlab.model.invariants: they hold on reachable clean states and each one
detects the breakage it names (states broken by hand, or by seed behaviour the tests pin)."""

from __future__ import annotations

import itertools

import pytest
from clientutil import TAGS, Run, run_orders, small_kernel

from ftlab import catalogues
from ftlab.model import ftrace, invariants
from ftlab.model.clients import kprobes as kp
from ftlab.model.clients import livepatch as lp
from ftlab.model.clients import tracer
from ftlab.model.clients.bpf import BpfProgram, bpf_attach
from ftlab.model.clients.direct_client import direct_client_load, direct_client_state
from ftlab.model.flags import FTRACE_FL as R
from ftlab.model.invariants import BY_NAME, INVARIANTS, check_all
from ftlab.model.ops import ftrace_ops


def one(k, name: str) -> list[str]:
    return BY_NAME[name](k)


def test_invariant_names_are_unique_and_documented_in_one_line():
    names = [inv.name for inv in INVARIANTS]
    assert len(names) == len(set(names))
    assert all(inv.doc and "\n" not in inv.doc for inv in INVARIANTS)
    assert set(BY_NAME) == set(names)


def test_a_fresh_kernel_satisfies_every_invariant():
    assert check_all(small_kernel()) == []


def test_a_busy_state_with_every_client_satisfies_every_invariant():
    run = Run(small_kernel())
    run(tracer.set_ftrace_filter, "f* dup")
    run(tracer.current_tracer, "function")
    run(lp.livepatch_enable, "p1", ["fa", "fc"])
    run(kp.register_kprobe, "fc")
    run(kp.register_kprobe, "fd", True)
    run(direct_client_load, "dm", ["fb"])
    run(bpf_attach, BpfProgram("p", "fexit", "fa"))
    run(bpf_attach, BpfProgram("q", "fmod_ret", "security_task_getsid", ret=-1))
    assert check_all(run.k) == []


def test_check_all_simulates_each_call_once_and_agrees_with_each_invariant_alone(monkeypatch):
    """The call invariants share one Caller in check_all: fa (live patch + fexit + tracer) and fc
    (live patch + kprobe) are each simulated once, with the same verdicts as one by one."""
    from ftlab.model import calls

    run = Run(small_kernel())
    run(tracer.set_ftrace_filter, "fa")
    run(tracer.current_tracer, "function")
    run(lp.livepatch_enable, "p1", ["fa", "fc"])
    run(kp.register_kprobe, "fc")
    run(bpf_attach, BpfProgram("p", "fexit", "fa"))
    seen = []
    real = calls.call_pure
    monkeypatch.setattr(calls, "call_pure", lambda k, name, sympos=0: seen.append(name) or real(k, name, sympos))
    shared = check_all(run.k)
    assert sorted(seen) == ["fa", "fc"]
    alone = [f"{inv.name}: {v}" for inv in INVARIANTS for v in inv(run.k)]
    assert shared == alone
    assert len(seen) > 2


def test_check_all_selects_invariants_by_name():
    k = small_kernel()
    k.locks["ftrace_lock"] = "task"
    assert check_all(k, ["no_warn"]) == []
    assert check_all(k, ["no_locks"]) == ["no_locks: ftrace_lock still held by task"]


# ---------------------------------------------------------------------------------------------
# Each invariant catches what it names
# ---------------------------------------------------------------------------------------------
def test_rec_counts_catches_a_count_no_ops_explains():
    k = small_kernel()
    i = k.rec_index(k.cat.lookup("fa"))
    k.set_flags(i, 1)
    assert one(k, "rec_counts") == ["fa: count 1, but 0 enabled ops cover it"]


def test_rec_counts_handles_all_records_ops_with_notrace():
    run = Run(small_kernel())
    run(tracer.set_ftrace_notrace, "fb")
    run(tracer.current_tracer, "function")
    k = run.k
    i = k.rec_index(k.cat.lookup("fb"))
    k.set_flags(i, k.get_flags(i) + 1)
    assert one(k, "rec_counts") == ["fb: count 1, but 0 enabled ops cover it"]


def test_ipmodify_exclusive_catches_two_ipmodify_ops_and_a_stray_record_bit():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    k = run.k
    rogue = ftrace_ops("rogue", "klp_ftrace_handler", 0x1000)  # IPMODIFY, slipped onto the list
    ftrace.ftrace_set_filter_ip(k, rogue, k.cat.lookup("fa"))
    rogue.flags |= 0x1
    k.ftrace_ops_list.insert(0, rogue)
    i = k.rec_index(k.cat.lookup("fb"))
    k.set_flags(i, k.get_flags(i) | R.IPMODIFY)
    assert one(k, "ipmodify_exclusive") == [
        "fa: 2 IPMODIFY ops (rogue, klp_ops[fa])",
        "fb: FTRACE_FL_IPMODIFY is set but no IPMODIFY ops covers it"]


def test_direct_records_catches_a_direct_flag_without_an_entry():
    run = Run(small_kernel())
    run(direct_client_load, "dm", ["fa"])
    run.k.direct_functions.clear()
    assert one(run.k, "direct_records") == ["fa: FTRACE_FL_DIRECT without a direct_functions entry"]


def test_no_warn_catches_warnings_and_a_dead_ftrace():
    k = small_kernel()
    k.warn("somewhere", "something")
    ftrace.ftrace_kill(k)
    assert one(k, "no_warn") == ["WARN somewhere: something", "ftrace is dead (ftrace_kill)"]


def test_livepatch_body_catches_a_patch_whose_handler_is_gone():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    ops = lp.klp_find_ops(run.k, run.k.cat.lookup("fa"))
    ops.fops.func = "ftrace_stub"  # as if the handler had been unhooked
    assert one(run.k, "livepatch_body") == ["fa: the live patch's body is livepatch_p1:fa, but fa ran"]


def test_livepatch_body_ignores_functions_in_transition():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"], hold=True)
    assert one(run.k, "livepatch_body") == []


def test_bpf_programs_run_catches_a_trampoline_that_is_never_called():
    run = Run(small_kernel())
    run(bpf_attach, BpfProgram("p", "fentry", "fa"))
    i = run.k.rec_index(run.k.cat.lookup("fa"))
    # the site calls plain ftrace_caller: no pt_regs, so the SAVE_REGS direct ops is skipped
    run.k.set_flags(i, run.k.get_flags(i) & ~(R.DIRECT_EN | R.TRAMP_EN | R.REGS_EN))
    assert one(run.k, "bpf_programs_run") == ["fa: attached BPF program(s) p did not run"]


def test_bpf_programs_run_expects_fmod_ret_programs_only_up_to_the_first_nonzero():
    run = Run(small_kernel())
    run(bpf_attach, BpfProgram("a", "fmod_ret", "security_task_getsid", ret=0))
    run(bpf_attach, BpfProgram("b", "fmod_ret", "security_task_getsid", ret=-1))
    # b is newest, so it runs first, returns non-zero, and a never runs: that is by design
    assert one(run.k, "bpf_programs_run") == []


def test_tracer_records_catches_a_filtered_function_that_is_not_traced():
    run = Run(small_kernel())
    run(tracer.set_ftrace_filter, "fa")
    run(tracer.current_tracer, "function")
    tracer.global_ops(run.k).func = "ftrace_stub"
    assert one(run.k, "tracer_records") == ["fa: selected by set_ftrace_filter but not traced"]


def test_direct_client_runs_catches_a_module_whose_trampoline_is_not_reached():
    run = Run(small_kernel())
    run(direct_client_load, "dm", ["fa"])
    direct_client_state(run.k).modules["dm"].tramp = "my_tramp9#dm"
    assert one(run.k, "direct_client_runs") == ["fa: direct trampoline my_tramp9 of dm did not run"]


def test_no_locks_names_the_holder():
    k = small_kernel()
    k.locks["klp_mutex"] = "task"
    assert one(k, "no_locks") == ["klp_mutex still held by task"]


def test_call_based_invariants_do_not_touch_the_checked_state():
    run = Run(small_kernel())
    run(lp.livepatch_enable, "p1", ["fa"])
    ops = lp.klp_find_ops(run.k, run.k.cat.lookup("fa"))
    ops.func_stack[0].transition = False
    lp.klp_state(run.k).tasks[run.k.current].patch_state = lp.KLP_UNDEFINED
    events = list(run.k.events)
    check_all(run.k)
    assert run.k.events == events


# ---------------------------------------------------------------------------------------------
# Invariants after every step of every order of all clients
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clients", [("L", "Kn", "T", "D"), ("L", "Kp", "T", "D")])
def test_every_attach_order_of_four_clients_on_one_function(clients):
    for perm in itertools.permutations(clients):
        run_orders("same", perm)
        run_orders("same", perm, perm)


@pytest.mark.slow
def test_every_attach_and_detach_order_of_four_clients_on_overlapping_functions():
    clients = ("L", "Kp", "T", "D")
    for perm in itertools.permutations(clients):
        for detach in itertools.permutations(clients):
            run_orders("glob", perm, detach)


def test_all_five_clients_in_every_attach_order_on_overlapping_functions():
    for perm in itertools.permutations(TAGS):
        run_orders("glob", perm, sorted(perm))


@pytest.mark.parametrize("policy", ["linux-5.18", "seed-v2", "linux-6.1"])
def test_every_pair_of_clients_in_every_order_under_each_policy(policy):
    for layout in ("same", "glob"):
        for a, b in itertools.permutations(TAGS, 2):
            if layout == "same" and {a, b} == {"Kn", "Kp"}:
                continue  # the aggregated-probe case, pinned in test_clients_kprobes.py
            for detach in ([a, b], [b, a]):
                run_orders(layout, [a, b], detach, policy=policy)


def test_the_embedded_catalogue_supports_the_checks():
    from clientutil import init_clients

    from ftlab.model.kernel import Kernel

    k = init_clients(Kernel(catalogues.embedded()))
    run = Run(k)
    run(tracer.current_tracer, "function")
    run(lp.livepatch_enable, "livepatch_cmdline", ["cmdline_proc_show"])
    run(tracer.current_tracer, "nop")
    assert invariants.check_all(k) == []
