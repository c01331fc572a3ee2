"""The plain direct-call sample (samples/ftrace/ftrace-direct-multi{,-modify}.c) under seed-v2."""

from __future__ import annotations

import pytest
from clientutil import EAGAIN, EBUSY, EEXIST, ENOENT, LAYOUTS, TAGS, Run, assert_quiet, run_orders, small_kernel

from ftlab.errors import InputError
from ftlab.model import views
from ftlab.model.calls import call
from ftlab.model.clients import direct_client as dc
from ftlab.model.clients.bpf import BpfProgram, bpf_attach, bpf_detach
from ftlab.model.clients.livepatch import livepatch_disable, livepatch_enable
from ftlab.model.clients.tracer import current_tracer, set_ftrace_filter
from ftlab.model.flags import FTRACE_OPS_FL as F


def test_the_sample_s_ops_is_dynamic_direct_save_regs_without_ops_func():
    run = Run(small_kernel())
    run(dc.direct_client_load, "dm", ["fa", "fb"])
    ops = dc.direct_client_state(run.k).modules["dm"].ops
    assert ops.ops_func is None
    assert ops.flags == F.ENABLED | F.DYNAMIC | F.SAVE_REGS | F.INITIALIZED | F.DIRECT
    assert views.enabled_functions(run.k) == (
        "fa (1) R   D\ttramp: ftrace_regs_caller+0x0/0x58 (call_direct_funcs+0x0/0x30)\n"
        "\tdirect-->my_tramp+0x0/0x100\n"
        "fb (1) R   D\ttramp: ftrace_regs_caller+0x0/0x58 (call_direct_funcs+0x0/0x30)\n"
        "\tdirect-->my_tramp+0x0/0x100\n")


def test_the_call_site_calls_my_tramp_which_returns_into_the_original_body():
    run = Run(small_kernel())
    run(dc.direct_client_load, "dm", ["fa"])
    tr = call(run.k, "fa")
    assert tr.details("site") == ["call my_tramp#dm (direct)"]
    assert tr.details("direct") == ["dm:my_tramp"] and tr.body == "fa"


def test_modify_flips_the_trampoline_and_unload_restores_the_nop():
    run = Run(small_kernel())
    run(dc.direct_client_load, "dm", ["fa", "fb"], "my_tramp1")
    run(dc.direct_client_modify, "dm", "my_tramp2")
    assert call(run.k, "fb").details("direct") == ["dm:my_tramp2"]
    assert set(run.k.direct_functions.values()) == {"my_tramp2#dm"}
    run(dc.direct_client_modify, "dm", "my_tramp1")
    run(dc.direct_client_unload, "dm")
    assert_quiet(run.k)
    run(dc.direct_client_unload, "dm", expect=ENOENT)
    run(dc.direct_client_modify, "dm", "my_tramp2", expect=ENOENT)


def test_loading_the_module_twice_is_eexist_and_a_second_module_on_a_function_is_ebusy():
    run = Run(small_kernel())
    run(dc.direct_client_load, "dm", ["fa"])
    run(dc.direct_client_load, "dm", ["fb"], expect=EEXIST)
    run(dc.direct_client_load, "dm2", ["fb", "fa"], expect=EBUSY)
    run(dc.direct_client_load, "dm2", ["fb"])


def test_unknown_function_or_trampoline_name_is_an_input_error():
    k = small_kernel()
    with pytest.raises(InputError):
        dc.direct_client_load(k, "dm", ["nosuch"])
    with pytest.raises(InputError):
        dc.direct_client_load(k, "dm", ["fa"], "other_tramp")


# ---------------------------------------------------------------------------------------------
# The seed's asymmetry (facts §2.7)
# ---------------------------------------------------------------------------------------------
def test_seed_live_patch_first_gives_the_sample_eagain_though_it_cannot_set_share():
    run = Run(small_kernel())
    run(livepatch_enable, "p1", ["fb"])
    run(dc.direct_client_load, "dm", ["fa", "fb"], expect=EAGAIN)
    assert dc.direct_client_state(run.k).modules == {}


def test_seed_sample_first_makes_the_live_patch_ebusy():
    run = Run(small_kernel())
    run(dc.direct_client_load, "dm", ["fa", "fb"])
    run(livepatch_enable, "p1", ["fc", "fb"], expect=EBUSY)
    assert call(run.k, "fc").body == "fc"


def test_modify_while_a_live_patch_sits_elsewhere_keeps_both_working():
    run = Run(small_kernel())
    run(dc.direct_client_load, "dm", ["fa"])
    run(livepatch_enable, "p1", ["fb"])
    run(dc.direct_client_modify, "dm", "my_tramp2")
    assert call(run.k, "fa").details("direct") == ["dm:my_tramp2"]
    assert call(run.k, "fb").body == "livepatch_p1:fb"
    run(livepatch_disable, "p1")


# ---------------------------------------------------------------------------------------------
# Direct calls through the list function
# ---------------------------------------------------------------------------------------------
def test_with_the_tracer_on_the_same_function_the_trampoline_is_reached_through_orig_ax():
    run = Run(small_kernel())
    run(dc.direct_client_load, "dm", ["fa"])
    run(set_ftrace_filter, "fa")
    run(current_tracer, "function")
    tr = call(run.k, "fa")
    assert tr.details("site") == ["call ftrace_regs_caller"]
    assert tr.details("orig_ax") == ["my_tramp#dm"]
    assert tr.details("function") == ["fa"] and tr.details("direct") == ["dm:my_tramp"]
    assert tr.body == "fa"


def test_a_bpf_trampoline_and_the_sample_cannot_share_a_function():
    run = Run(small_kernel())
    prog = BpfProgram("prog", "fentry", "fa")
    run(bpf_attach, prog)
    run(dc.direct_client_load, "dm", ["fa"], expect=EBUSY)
    run(bpf_detach, prog)
    run(dc.direct_client_load, "dm", ["fa"])
    run(bpf_attach, prog, expect=EBUSY)


def test_seed_prepare_walk_stops_at_a_sharing_op_so_a_live_patch_lands_on_the_sample():
    """facts §2.4 step 3: the per-ip walk ends at the first SHARE_IPMODIFY ops, traced ip or not.
    A BPF trampoline that shares on fb sits at the head of the list, so the live patch of fa
    never meets the sample's non-sharing ops on fa: both end up on fa."""
    run = Run(small_kernel())
    run(dc.direct_client_load, "dm", ["fa"])
    run(livepatch_enable, "p1", ["fb"])
    run(bpf_attach, BpfProgram("prog", "fexit", "fb"))  # -EAGAIN inside, retried with SHARE
    run.allow = ("ipmodify_exclusive",)
    run(livepatch_enable, "p2", ["fa"])
    from ftlab.model.invariants import check_all

    assert check_all(run.k) == ["ipmodify_exclusive: fa: IPMODIFY ops klp_ops[fa] shares the function "
                                "with DIRECT ops direct[dm] which lacks SHARE_IPMODIFY"]
    # at run time the sample's trampoline returns to regs->ip, so the patch still runs
    tr = call(run.k, "fa")
    assert tr.details("direct") == ["dm:my_tramp"] and tr.body == "livepatch_p2:fa"


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("other", [x for x in TAGS if x != "D"])
@pytest.mark.parametrize("d_first", [True, False])
@pytest.mark.parametrize("d_detached_first", [True, False])
def test_direct_sample_with_each_other_client_in_every_attach_and_detach_order(layout, other, d_first,
                                                                               d_detached_first):
    order = ["D", other] if d_first else [other, "D"]
    detach = ["D", other] if d_detached_first else [other, "D"]
    run_orders(layout, order, detach)
