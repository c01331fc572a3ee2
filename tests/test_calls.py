"""The x86_64 call path (facts §7): call sites, ftrace callers, the return path, BPF images."""

from __future__ import annotations

import pytest
from bpfutil import STANDIN_RET, prog, small_kernel, standin_live_patch, state, tr_of

from ftlab import catalogues
from ftlab.errors import InputError
from ftlab.model import calls, ftrace
from ftlab.model.calls import CallContext, Regs, call
from ftlab.model.calltable import CallTable, install
from ftlab.model.clients import bpf
from ftlab.model.flags import FTRACE_FL as R
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.flags import ftrace_ops_cmd
from ftlab.model.kernel import Kernel
from ftlab.model.locks import mutex_lock, mutex_unlock
from ftlab.model.ops import ftrace_ops

SEEN: list[str] = []


def _counter(k: Kernel, ops: ftrace_ops, ctx: CallContext) -> None:
    SEEN.append(ops.name)


COUNTER_CALLS = CallTable(callbacks={"test_counter_func": _counter})


def counting_ops(k: Kernel, name: str, func: str, flags: int = 0) -> ftrace_ops:
    install(k, COUNTER_CALLS)
    ops = ftrace_ops(name, "test_counter_func", flags)
    assert ftrace.ftrace_set_filter_ip(k, ops, k.cat.lookup(func)) == 0
    assert ftrace.register_ftrace_function(k, ops) == 0
    return ops


# ---------------------------------------------------------------------------------------------
# plain sites
# ---------------------------------------------------------------------------------------------
def test_a_nop_site_runs_only_the_original_body():
    k = small_kernel()
    t = call(k, "fa", orig_ret=5)
    assert t.kinds() == ["call", "site", "body", "ret"]
    assert t.body == "fa" and t.retval == 5 and t.programs == [] and t.warnings == []
    assert str(t).splitlines()[1] == "site: nop"


def test_calling_an_unknown_function_is_input_error():
    with pytest.raises(InputError):
        call(small_kernel(), "no_such_function")


def test_a_call_changes_no_state_and_holds_no_lock():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("x", "fexit", "fa")) == 0
    standin_live_patch(k, "fa")
    before = state(k)
    call(k, "fa")
    assert state(k) == before and k.locks == {}


def test_an_ops_alone_is_called_from_its_own_trampoline_and_execution_resumes_at_regs_ip():
    k = small_kernel()
    lp, ret = standin_live_patch(k, "fa")
    assert ret == 0 and isinstance(lp.trampoline, int)
    t = call(k, "fa")
    assert t.details("site") == [f"call 0x{lp.trampoline:016x} (trampoline of standin_klp)"]
    assert t.details("regs.ip") == ["fa -> standin_new_fa (by standin_klp)"]
    assert t.body == "standin_new_fa" and t.retval == STANDIN_RET
    assert "orig_ax" not in t.kinds()


def test_two_ops_go_through_the_list_function_head_first():
    k = small_kernel()
    SEEN.clear()
    counting_ops(k, "older", "fa")
    counting_ops(k, "newer", "fa")
    t = call(k, "fa")
    assert t.details("site") == ["call ftrace_caller"]  # no SAVE_REGS ops: no regs
    assert t.details("ftrace_call") == ["arch_ftrace_ops_list_func"]
    assert SEEN == ["newer", "older"]
    assert t.body == "fa"


def test_list_function_skips_stub_ops_and_ops_whose_filter_misses():
    k = small_kernel()
    SEEN.clear()
    counting_ops(k, "on_fa", "fa")
    counting_ops(k, "on_fb", "fb")
    counting_ops(k, "also_fa", "fa")
    stub = ftrace_ops("stub", "test_counter_func", F.STUB)
    ftrace.ftrace_set_filter_ip(k, stub, k.cat.lookup("fa"))
    assert ftrace.register_ftrace_function(k, stub) == 0
    call(k, "fa")
    assert SEEN == ["also_fa", "on_fa"]


def test_list_function_without_regs_skips_save_regs_ops():
    k = small_kernel()
    SEEN.clear()
    counting_ops(k, "plain", "fa")
    counting_ops(k, "wants_regs", "fa", F.SAVE_REGS)
    ctx = CallContext(ip=k.cat.lookup("fa"), name="fa", regs=Regs("fa"), has_regs=False)
    calls.__ftrace_ops_list_func(k, ctx)
    assert SEEN == ["plain"]
    SEEN.clear()
    ctx.has_regs = True
    calls.__ftrace_ops_list_func(k, ctx)
    assert SEEN == ["wants_regs", "plain"]


def test_list_function_warns_kills_ftrace_and_stops_at_an_ops_with_a_null_func():
    k = small_kernel()
    SEEN.clear()
    counting_ops(k, "first_registered", "fa")
    broken = counting_ops(k, "head", "fa")
    broken.func = None
    t = call(k, "fa")
    assert [w.where for w in t.warnings] == ["__ftrace_ops_list_func"]
    assert "warn" in t.kinds() and k.ftrace_disabled
    assert SEEN == []  # the walk stopped before first_registered
    assert t.body == "fa"  # the function itself still runs


def test_a_callback_without_registered_behaviour_is_reported_not_raised():
    k = small_kernel()
    ops = ftrace_ops("tracer", "function_trace_call_unmodelled")
    ftrace.ftrace_set_filter_ip(k, ops, k.cat.lookup("fa"))
    assert ftrace.register_ftrace_function(k, ops) == 0
    t = call(k, "fa")
    assert any("function_trace_call_unmodelled" in d for d in t.details("unmodelled"))
    assert t.body == "fa"


# ---------------------------------------------------------------------------------------------
# BPF images called directly from the site (DIRECT_EN)
# ---------------------------------------------------------------------------------------------
def test_fentry_alone_site_calls_the_image_which_returns_into_the_original_body():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("en", "fentry", "fa")) == 0
    image = tr_of(k, "fa").cur_image.addr
    t = call(k, "fa", orig_ret=3)
    assert t.details("site") == [f"call {image} (direct)"]
    assert t.programs == ["en"] and t.body == "fa" and t.retval == 3
    assert "orig_call" not in t.kinds()
    assert t.details("return") == ["into fa"]


def test_fexit_alone_on_cmdline_proc_show_image_calls_func_plus_5_and_fexit_sees_its_value():
    k = Kernel(catalogues.embedded())
    assert bpf.bpf_attach(k, prog("fx", "fexit", "cmdline_proc_show")) == 0
    image = tr_of(k, "cmdline_proc_show").cur_image.addr
    t = call(k, "cmdline_proc_show")
    assert t.details("site") == [f"call {image} (direct)"]  # observed: DIRECT_EN site
    assert t.details("orig_call") == ["func+5 cmdline_proc_show"]
    assert t.details("bpf_prog") == ["fexit fx sees 0"]
    assert t.body == "cmdline_proc_show" and t.retval == 0


def test_programs_fire_fentry_then_fmod_ret_then_fexit_and_the_latest_of_a_kind_first():
    k = small_kernel()
    for p in (prog("x1", "fexit"), prog("e1", "fentry"), prog("m1", "fmod_ret"),
              prog("e2", "fentry"), prog("x2", "fexit"), prog("m2", "fmod_ret")):
        assert bpf.bpf_attach(k, p) == 0
    t = call(k, "security_task_getsid", orig_ret=4)
    assert t.programs == ["e2", "e1", "m2", "m1", "x2", "x1"]
    assert t.body == "security_task_getsid" and t.retval == 4


def test_a_non_zero_fmod_ret_skips_the_rest_and_the_body_and_fexit_sees_it():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("x", "fexit")) == 0
    assert bpf.bpf_attach(k, prog("m_later", "fmod_ret", ret=0)) == 0
    assert bpf.bpf_attach(k, prog("m_deny", "fmod_ret", ret=-1)) == 0  # head: runs first
    t = call(k, "security_task_getsid", orig_ret=4)
    assert t.programs == ["m_deny", "x"]
    assert t.body is None and t.retval == -1
    assert t.details("bpf_prog")[-1] == "fexit x sees -1"


def test_a_zero_fmod_ret_lets_the_original_run():
    k = Kernel(catalogues.embedded())
    assert bpf.bpf_attach(k, prog("m", "fmod_ret", "security_task_getsid", ret=0)) == 0
    t = call(k, "security_task_getsid", orig_ret=9)
    assert t.programs == ["m"] and t.body == "security_task_getsid" and t.retval == 9


# ---------------------------------------------------------------------------------------------
# BPF + live patch on one function
# ---------------------------------------------------------------------------------------------
def assert_shared_fexit_call(k: Kernel, name: str) -> None:
    tr = tr_of(k, name)
    t = call(k, name)
    assert t.details("site") == ["call ftrace_regs_caller"]
    assert t.details("ftrace_call") == ["arch_ftrace_ops_list_func"]
    assert t.details("regs.ip") == [f"{name} -> standin_new_{name} (by standin_klp)"]
    assert t.details("orig_ax") == [tr.cur_image.addr]
    assert t.details("return")[0] == (f"to orig_ax {tr.cur_image.addr}, return address standin_new_{name}")
    assert t.details("orig_call") == [f"[rbp+8] standin_new_{name}"]
    assert t.body == f"standin_new_{name}" and t.retval == STANDIN_RET
    assert t.details("bpf_prog") == [f"fexit fx sees {STANDIN_RET}"]
    assert t.warnings == []


def test_fexit_then_live_patch_runs_the_patched_body_through_orig_stack():
    k = Kernel(catalogues.embedded())
    assert bpf.bpf_attach(k, prog("fx", "fexit", "cmdline_proc_show")) == 0
    _, ret = standin_live_patch(k, "cmdline_proc_show")  # ENABLE via ops_func
    assert ret == 0
    assert k.rec_by_name("cmdline_proc_show").count == 2
    assert_shared_fexit_call(k, "cmdline_proc_show")


def test_live_patch_then_fexit_runs_the_patched_body_after_the_eagain_retry():
    k = Kernel(catalogues.embedded())
    _, ret = standin_live_patch(k, "cmdline_proc_show")
    assert ret == 0
    assert bpf.bpf_attach(k, prog("fx", "fexit", "cmdline_proc_show")) == 0
    assert_shared_fexit_call(k, "cmdline_proc_show")


def test_fentry_with_a_live_patch_returns_into_the_patched_body_at_rbp_plus_8():
    k = small_kernel()
    standin_live_patch(k, "fa")
    assert bpf.bpf_attach(k, prog("en", "fentry", "fa")) == 0
    t = call(k, "fa")
    assert t.programs == ["en"] and "orig_call" not in t.kinds()
    assert t.details("return")[-1] == "into standin_new_fa"
    assert t.body == "standin_new_fa" and t.retval == STANDIN_RET


def test_fmod_ret_with_a_live_patch_can_still_skip_the_patched_body():
    k = small_kernel()
    standin_live_patch(k, "security_task_getsid")
    assert bpf.bpf_attach(k, prog("m", "fmod_ret", ret=-1)) == 0
    t = call(k, "security_task_getsid")
    assert t.body is None and t.retval == -1 and t.programs == ["m"]


def test_after_the_live_patch_goes_the_sticky_orig_stack_image_runs_the_original_body():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("fx", "fexit", "fa")) == 0
    lp, _ = standin_live_patch(k, "fa")
    assert ftrace.unregister_ftrace_function(k, lp) == 0
    t = call(k, "fa", orig_ret=2)
    assert t.details("site")[0].endswith("(direct)")
    assert t.details("orig_call") == ["[rbp+8] fa"]  # [rbp+8] is func+5 when called directly
    assert t.body == "fa" and t.retval == 2


def test_without_orig_stack_a_shared_trampoline_would_bypass_the_live_patch():
    # Why the seed's 4/5 exists: an image that calls func+5 ignores the regs->ip klp chose.
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("fx", "fexit", "fa")) == 0
    standin_live_patch(k, "fa")
    tr = tr_of(k, "fa")
    mutex_lock(k, "direct_mutex")
    assert tr.fops.ops_func(tr.fops, ftrace_ops_cmd.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY) == 0
    mutex_unlock(k, "direct_mutex")
    t = call(k, "fa", orig_ret=1)
    assert t.details("regs.ip") == ["fa -> standin_new_fa (by standin_klp)"]
    assert t.details("orig_call") == ["func+5 fa"]
    assert t.body == "fa" and t.retval == 1


def test_a_direct_address_without_an_image_is_a_transparent_trampoline():
    k = small_kernel()
    from ftlab.model import direct
    d = ftrace_ops("sample")
    ftrace.ftrace_set_filter_ip(k, d, k.cat.lookup("fb"))
    assert direct.register_ftrace_direct_multi(k, d, "unregistered_direct_tramp") == 0
    assert k.rec_by_name("fb").flags & R.DIRECT_EN
    t = call(k, "fb", orig_ret=6)
    assert t.details("site") == ["call unregistered_direct_tramp (direct)"]
    assert "unmodelled" in t.kinds() and t.body == "fb" and t.retval == 6


def test_a_kernel_holds_its_own_call_table_and_a_client_adds_to_it_when_it_sets_up():
    from ftlab.model.clients import livepatch
    k, other = small_kernel(), small_kernel()
    assert k.calls.callback("klp_ftrace_handler") is None  # importing a client registers nothing
    assert livepatch.livepatch_enable(k, "p1", [("fa", 0)]) == 0
    assert k.calls.callback("klp_ftrace_handler") is livepatch.klp_ftrace_handler
    assert other.calls.callback("klp_ftrace_handler") is None  # nothing shared between kernels
    assert call(k, "fa").body == "livepatch_p1:fa"
    assert k.copy().calls is k.calls  # a frozen value, shared by copies
