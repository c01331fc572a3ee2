"""dyn_ftrace accounting and call-site targets: __ftrace_hash_rec_update, ftrace_check_record, get_addr."""

from __future__ import annotations

import pytest
from kutil import F, R, flags_of, ftrace_ops, ip, ipmodify_ops, plain_ops, small_kernel

from ftlab import catalogues
from ftlab.model import ftrace
from ftlab.model.flags import FTRACE_REF_MAX, FTRACE_REF_MAX_SHIFT, ftrace_rec_count
from ftlab.model.kernel import Kernel


def test_flag_layout_matches_include_linux_ftrace_h():
    assert R.ENABLED == 1 << 31 and R.REGS == 1 << 30 and R.REGS_EN == 1 << 29
    assert R.TRAMP == 1 << 28 and R.TRAMP_EN == 1 << 27 and R.IPMODIFY == 1 << 26
    assert R.DISABLED == 1 << 25 and R.DIRECT == 1 << 24 and R.DIRECT_EN == 1 << 23
    assert FTRACE_REF_MAX_SHIFT == 23 and FTRACE_REF_MAX == 0x7FFFFF
    assert F.SHARE_IPMODIFY == 1 << 18 and F.DIRECT == 1 << 17 and F.IPMODIFY == 1 << 12
    assert ftrace_rec_count(R.ENABLED | 5) == 5


def test_single_ops_gets_its_private_trampoline():
    k = small_kernel()
    ops = plain_ops(k, "tracer", "fa")
    assert ftrace.register_ftrace_function(k, ops) == 0
    r = k.rec(ip(k, "fa"))
    assert r.flags == R.ENABLED | R.TRAMP | R.TRAMP_EN | 1
    assert ops.flags & F.ALLOC_TRAMP and isinstance(ops.trampoline, int)
    assert ftrace.ftrace_get_addr_curr(k, k.rec_index(ip(k, "fa"))) == ops.trampoline


def test_second_ops_drops_tramp_and_uses_the_list_function():
    k = small_kernel()
    a, b = plain_ops(k, "a", "fa"), plain_ops(k, "b", "fa")
    assert ftrace.register_ftrace_function(k, a) == 0
    assert ftrace.register_ftrace_function(k, b) == 0
    r = k.rec(ip(k, "fa"))
    assert r.count == 2 and not r.flags & (R.TRAMP | R.TRAMP_EN)
    assert ftrace.ftrace_get_addr_curr(k, k.rec_index(ip(k, "fa"))) == "ftrace_caller"
    assert k.ftrace_trace_function == "arch_ftrace_ops_list_func"
    assert [o.name for o in k.ftrace_ops_list] == ["b", "a"]  # newest at the head
    # back to one user: TRAMP returns for the remaining ops' trampoline
    assert ftrace.unregister_ftrace_function(k, b) == 0
    assert k.rec(ip(k, "fa")).flags & R.TRAMP_EN
    assert ftrace.ftrace_get_addr_curr(k, k.rec_index(ip(k, "fa"))) == a.trampoline


def test_dynamic_ops_trampoline_is_freed_on_unregister_static_is_kept():
    k = small_kernel()
    dyn = plain_ops(k, "dyn", "fa")
    static = ftrace_ops("static", "function_trace_call", 0, core_data=True)
    ftrace.ftrace_set_filter_ip(k, static, ip(k, "fb"))
    for o in (dyn, static):
        assert ftrace.register_ftrace_function(k, o) == 0
    assert dyn.flags & F.DYNAMIC and not static.flags & F.DYNAMIC
    for o in (dyn, static):
        assert ftrace.unregister_ftrace_function(k, o) == 0
    assert dyn.trampoline == 0 and dyn.flags & F.ALLOC_TRAMP  # arch free leaves ALLOC_TRAMP set
    assert static.trampoline and list(k.trampolines.values()) == ["static"]


def test_regs_want_is_recomputed_when_a_save_regs_ops_leaves():
    k = small_kernel()
    regs = plain_ops(k, "regs", "fa", flags=F.SAVE_REGS)
    plain = plain_ops(k, "plain", "fa")
    assert ftrace.register_ftrace_function(k, regs) == 0
    assert ftrace.register_ftrace_function(k, plain) == 0
    assert flags_of(k, "fa") & R.REGS_EN
    assert ftrace.unregister_ftrace_function(k, regs) == 0
    assert not flags_of(k, "fa") & (R.REGS | R.REGS_EN)


def test_last_ops_leaving_clears_the_record():
    k = small_kernel()
    ops = ipmodify_ops(k, "klp", "fa")
    assert ftrace.register_ftrace_function(k, ops) == 0
    assert ftrace.unregister_ftrace_function(k, ops) == 0
    assert k.recs == {} and k.ftrace_trace_function == "ftrace_stub" and k.warnings == []


def test_duplicate_names_are_distinct_records():
    k = small_kernel()
    ops = plain_ops(k, "t", flags=0)
    assert ftrace.ftrace_set_filter_ip(k, ops, ip(k, "dup", 2)) == 0
    assert ftrace.register_ftrace_function(k, ops) == 0
    assert k.rec(ip(k, "dup", 1)).count == 0 and k.rec(ip(k, "dup", 2)).count == 1


def test_global_ops_counts_every_valid_record_and_skips_disabled_invalid_ones():
    k = Kernel(catalogues.embedded())  # the embedded 38,252-record Debian 6.1 catalogue
    ops = ftrace_ops("global_ops", "function_trace_call", 0, core_data=True)
    assert ftrace.register_ftrace_function(k, ops) == 0
    invalid = k.cat.invalid
    enabled = sum(1 for r in k.enabled_records())
    assert enabled == len(k.cat) - len(invalid) == 38252 - 597
    some_invalid = min(invalid)
    assert k.get_flags(some_invalid) == R.DISABLED
    assert ftrace.unregister_ftrace_function(k, ops) == 0
    assert k.recs == {}


def test_notrace_subtracts_from_the_filter():
    k = small_kernel()
    ops = plain_ops(k, "t", "fa", "fb")
    assert ftrace.ftrace_set_hash(k, ops, None, [ip(k, "fb")], False, False, False) == 0
    assert ftrace.register_ftrace_function(k, ops) == 0
    assert flags_of(k, "fa") & R.ENABLED and flags_of(k, "fb") == 0


def test_notrace_change_on_a_live_ops_updates_records():
    k = small_kernel()
    ops = plain_ops(k, "t", "fa", "fb")
    assert ftrace.register_ftrace_function(k, ops) == 0
    assert ftrace.ftrace_set_hash(k, ops, None, [ip(k, "fb")], False, False, False) == 0
    assert flags_of(k, "fb") == 0 and flags_of(k, "fa") & R.ENABLED


def test_notrace_on_an_ipmodify_ops_is_einval():
    k = small_kernel()
    ops = ipmodify_ops(k, "klp", "fa")
    assert ftrace.ftrace_set_hash(k, ops, None, [ip(k, "fb")], False, False, False) == -22


def test_set_filter_ip_rejects_non_locations_and_unknown_removals():
    k = small_kernel()
    ops = plain_ops(k, "t")
    assert ftrace.ftrace_set_filter_ip(k, ops, ip(k, "fa") + 1) == -22
    assert ftrace.ftrace_set_filter_ip(k, ops, ip(k, "fa"), remove=True) == -2


def test_killed_ftrace_refuses_registration_with_enodev():
    k = small_kernel()
    ops = plain_ops(k, "t", "fa")
    ftrace.ftrace_kill(k)
    assert ftrace.register_ftrace_function(k, ops) == -19
    assert ftrace.ftrace_set_filter_ip(k, ops, ip(k, "fb")) == -19
    assert ftrace.ftrace_is_dead(k)


def test_registering_an_enabled_ops_twice_warns_and_is_ebusy():
    k = small_kernel()
    ops = plain_ops(k, "t", "fa")
    assert ftrace.register_ftrace_function(k, ops) == 0
    assert ftrace.register_ftrace_function(k, ops) == -16
    assert [e.kind for e in k.events] == ["WARN"]


def test_unregistering_an_unregistered_ops_warns_and_is_ebusy():
    k = small_kernel()
    assert ftrace.unregister_ftrace_function(k, plain_ops(k, "t", "fa")) == -16


def test_permanent_ops_refused_while_ftrace_enabled_is_off():
    k = small_kernel()
    k.ftrace_enabled = False
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == -16


@pytest.mark.parametrize("count", [0, FTRACE_REF_MAX - 1])
def test_reference_count_underflow_and_overflow_kill_ftrace(count):
    k = small_kernel()
    i = k.rec_index(ip(k, "fa"))
    k.set_flags(i, count)
    ops = plain_ops(k, "t", "fa")
    if count == 0:
        ops.flags |= F.ENABLED
        ftrace.ftrace_hash_rec_disable(k, ops)
    else:
        ftrace.register_ftrace_function(k, ops)
    assert ftrace.ftrace_is_dead(k) and k.warnings
