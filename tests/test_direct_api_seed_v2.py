"""The direct-call API of the series: register/unregister/modify_ftrace_direct_multi (v2 1/5, 2/5, 3/5)."""

from __future__ import annotations

from kutil import (
    F,
    R,
    SharingOwner,
    direct_ops,
    flags_of,
    ftrace,
    ftrace_ops,
    ip,
    ipmodify_ops,
    plain_ops,
    register_direct,
    small_kernel,
)

from ftlab.model import direct
from ftlab.model.errno import Errno
from ftlab.model.locks import mutex_lock, mutex_unlock


def test_register_sets_multi_flags_func_and_preset_trampoline_and_keeps_caller_bits():
    k = small_kernel()
    d = direct_ops(k, "bpf", "fa", owner=SharingOwner(), flags=F.SHARE_IPMODIFY)
    assert register_direct(k, d, "bpf_trampoline_1") == 0
    assert d.flags & (F.DIRECT | F.SAVE_REGS | F.SHARE_IPMODIFY | F.ENABLED | F.DYNAMIC)
    assert not d.flags & F.ALLOC_TRAMP  # preset FTRACE_REGS_ADDR: no private trampoline
    assert (d.func, d.trampoline) == ("call_direct_funcs", "ftrace_regs_caller")
    assert k.direct_functions == {ip(k, "fa"): "bpf_trampoline_1"}
    r = k.rec(ip(k, "fa"))
    assert r.flags & R.DIRECT_EN and r.flags & R.REGS and r.flags & R.TRAMP


def test_register_refusals_in_the_kernel_order():
    k = small_kernel()
    d = direct_ops(k, "x", "fa")
    d.func = "something"
    assert register_direct(k, d, "t") == -Errno.EINVAL
    uninit = ftrace_ops("uninit")
    assert register_direct(k, uninit, "t") == -Errno.EINVAL
    both = direct_ops(k, "both", "fa", flags=F.IPMODIFY | F.SHARE_IPMODIFY)
    assert register_direct(k, both, "t") == -Errno.EINVAL  # new in 3/5
    empty = ftrace_op_initialised(k, "empty")
    assert register_direct(k, empty, "t") == -Errno.EINVAL
    assert k.key() == small_kernel().key()


def ftrace_op_initialised(k, name):
    ops = ftrace_ops(name)
    ftrace.ftrace_ops_init(k, ops)
    return ops


def test_register_on_an_ip_that_already_has_a_direct_function_is_ebusy():
    k = small_kernel()
    assert register_direct(k, direct_ops(k, "a", "fa"), "t1") == 0
    before = k.key()
    assert register_direct(k, direct_ops(k, "b", "fa", "fb"), "t2") == -Errno.EBUSY
    assert k.key() == before


def test_unregister_removes_entries_and_clears_func_and_trampoline():
    k = small_kernel()
    d = direct_ops(k, "a", "fa", "fb")
    assert register_direct(k, d, "t1") == 0
    assert direct.unregister_ftrace_direct_multi(k, d, "t1") == 0
    assert k.direct_functions == {} and d.func is None and d.trampoline == 0
    assert flags_of(k, "fa") == 0 and k.ftrace_ops_list == []
    # and it can be registered again
    assert register_direct(k, d, "t1") == 0


def test_unregister_of_an_unregistered_ops_is_einval():
    k = small_kernel()
    assert direct.unregister_ftrace_direct_multi(k, direct_ops(k, "a", "fa"), "t") == -Errno.EINVAL


def test_modify_repoints_every_entry_through_a_stub_tmp_ops():
    k = small_kernel()
    d = direct_ops(k, "a", "fa", "fb")
    assert register_direct(k, d, "t1") == 0
    assert direct.modify_ftrace_direct_multi(k, d, "t2") == 0
    assert k.direct_functions == {ip(k, "fa"): "t2", ip(k, "fb"): "t2"}
    r = k.rec(ip(k, "fa"))
    assert r.count == 1 and r.flags & R.DIRECT_EN  # back to calling t2 directly
    assert ftrace.ftrace_get_addr_curr(k, k.rec_index(ip(k, "fa"))) == "t2"
    assert k.locks == {} and [op.name for op in k.ftrace_ops_list] == ["a"]
    # tmp_ops is static kernel data: its x86 trampoline is kept after unregistering
    assert list(k.trampolines.values()) == ["tmp_ops"]


def test_modify_nolock_without_direct_mutex_warns_and_fails():
    k = small_kernel()
    d = direct_ops(k, "a", "fa")
    assert register_direct(k, d, "t1") == 0
    assert direct.modify_ftrace_direct_multi_nolock(k, d, "t2") == -Errno.EINVAL
    assert [e.kind for e in k.events] == ["WARN"] and k.direct_functions[ip(k, "fa")] == "t1"


def test_modify_nolock_under_the_callers_direct_mutex():
    k = small_kernel()
    d = direct_ops(k, "a", "fa")
    assert register_direct(k, d, "t1") == 0
    mutex_lock(k, "direct_mutex")
    assert direct.modify_ftrace_direct_multi_nolock(k, d, "t2") == 0
    mutex_unlock(k, "direct_mutex")
    assert k.direct_functions[ip(k, "fa")] == "t2"


def test_modify_of_an_unregistered_ops_is_einval():
    k = small_kernel()
    assert direct.modify_ftrace_direct_multi(k, direct_ops(k, "a", "fa"), "t") == -Errno.EINVAL


def test_direct_with_a_second_user_goes_through_the_list_function():
    k = small_kernel()
    d = direct_ops(k, "a", "fa")
    assert register_direct(k, d, "t1") == 0
    tracer = plain_ops(k, "tracer", "fa")
    assert ftrace.register_ftrace_function(k, tracer) == 0
    r = k.rec(ip(k, "fa"))
    assert r.count == 2 and not r.flags & R.DIRECT_EN and r.flags & R.REGS_EN and not r.flags & R.TRAMP
    assert ftrace.ftrace_get_addr_curr(k, k.rec_index(ip(k, "fa"))) == "ftrace_regs_caller"
    assert k.statics["ftrace_call"] == "arch_ftrace_ops_list_func"
    assert ftrace.unregister_ftrace_function(k, tracer) == 0
    r = k.rec(ip(k, "fa"))
    assert r.count == 1 and r.flags & R.DIRECT_EN


def test_live_patch_then_shared_direct_then_live_patch_removed_keeps_direct_working():
    k = small_kernel()
    live = ipmodify_ops(k, "klp", "fa")
    assert ftrace.register_ftrace_function(k, live) == 0
    d = direct_ops(k, "bpf", "fa", owner=SharingOwner(), flags=F.SHARE_IPMODIFY)
    assert register_direct(k, d, "t") == 0
    assert ftrace.unregister_ftrace_function(k, live) == 0
    r = k.rec(ip(k, "fa"))
    assert r.count == 1 and r.flags & R.DIRECT_EN and not r.flags & R.IPMODIFY
