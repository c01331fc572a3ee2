"""__ftrace_hash_update_ipmodify under the seed (v2 3/5): the five combinations, -EAGAIN, rollback."""

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

from ftlab.model.errno import Errno
from ftlab.model.hash import EMPTY_HASH, ftrace_hash

upd = lambda k, ops, old, new: k.policy.ftrace_hash_update_ipmodify(k, ops, old, new)  # noqa: E731


def test_combination_1_neither_ipmodify_nor_direct_is_ignored():
    k = small_kernel()
    live = ipmodify_ops(k, "klp", "fa")
    assert ftrace.register_ftrace_function(k, live) == 0
    tracer = plain_ops(k, "tracer", "fa")
    assert ftrace.register_ftrace_function(k, tracer) == 0
    assert flags_of(k, "fa") & R.IPMODIFY and k.rec(ip(k, "fa")).count == 2


def test_combination_2_second_ipmodify_ops_gets_ebusy():
    k = small_kernel()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp1", "fa")) == 0
    before = k.key()
    second = ipmodify_ops(k, "klp2", "fa")
    assert ftrace.register_ftrace_function(k, second) == -Errno.EBUSY
    assert k.key() == before


def test_combination_3_direct_with_ipmodify_owns_the_record_bit_and_refuses_a_live_patch():
    k = small_kernel()
    d = direct_ops(k, "legacy", "fa", flags=F.IPMODIFY)
    assert register_direct(k, d, "my_tramp") == 0
    assert flags_of(k, "fa") & R.IPMODIFY and flags_of(k, "fa") & R.DIRECT
    before = k.key()
    # a live patch: prepare finds the direct op (no ops_func) -> -EBUSY
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == -Errno.EBUSY
    assert k.key() == before


def test_combination_3_direct_with_ipmodify_after_live_patch_gets_ebusy_from_rollback():
    k = small_kernel()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    before = k.key()
    d = direct_ops(k, "legacy", "fa", flags=F.IPMODIFY)
    assert register_direct(k, d, "my_tramp") == -Errno.EBUSY
    assert k.key() == before and not k.direct_functions


def test_combination_4_direct_without_share_after_ipmodify_gets_eagain():
    k = small_kernel()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    before = k.key()
    d = direct_ops(k, "bpf", "fa", owner=SharingOwner())
    assert register_direct(k, d, "bpf_trampoline_1") == -Errno.EAGAIN
    assert k.key() == before
    # a failed registration leaves func and trampoline set (the caller must clear them to retry)
    assert d.func == "call_direct_funcs" and d.trampoline == "ftrace_regs_caller"


def test_combination_4_never_sets_the_record_ipmodify_bit():
    k = small_kernel()
    d = direct_ops(k, "bpf", "fa", owner=SharingOwner())
    assert register_direct(k, d, "bpf_trampoline_1") == 0
    assert not flags_of(k, "fa") & R.IPMODIFY and flags_of(k, "fa") & R.DIRECT


def test_combination_5_shared_direct_after_ipmodify_is_accepted():
    k = small_kernel()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    d = direct_ops(k, "bpf", "fa", owner=SharingOwner(), flags=F.SHARE_IPMODIFY)
    assert register_direct(k, d, "bpf_trampoline_1") == 0
    r = k.rec(ip(k, "fa"))
    assert r.count == 2 and r.flags & R.IPMODIFY and r.flags & R.DIRECT
    assert not r.flags & R.DIRECT_EN  # two users: the site goes through the list function


def test_null_hash_is_einval_even_for_combination_5_because_it_is_tested_first():
    k = small_kernel()
    share = ftrace_ops("share", "call_direct_funcs", F.DIRECT | F.SHARE_IPMODIFY | F.ENABLED)
    share.func_hash = share.local_hash
    assert upd(k, share, EMPTY_HASH, None) == -Errno.EINVAL
    assert upd(k, share, EMPTY_HASH, ftrace_hash([ip(k, "fa")])) == 0


def test_ipmodify_ops_with_empty_filter_is_refused_with_einval():
    k = small_kernel()
    before = k.key()
    ops = ftrace_ops("klp_all", "klp_ftrace_handler", F.IPMODIFY)
    ops.local_hash.filter_hash = EMPTY_HASH  # filtered on nothing: "all functions"
    assert ftrace.register_ftrace_function(k, ops) == -Errno.EINVAL
    assert k.key() == before
    assert ops.flags & F.ADDING  # kept set after a failed startup, as in ftrace_startup


def test_rollback_after_mid_walk_failure_restores_earlier_records():
    k = small_kernel()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fc")) == 0
    before = k.key()
    multi = ipmodify_ops(k, "kprobe_ipmodify", "fa", "fb", "fc", "fd")
    assert ftrace.register_ftrace_function(k, multi) == -Errno.EBUSY
    # fa and fb got the bit in the first pass and lost it in the rollback; fd was never reached
    for f in ("fa", "fb", "fd"):
        assert not flags_of(k, f) & R.IPMODIFY
    assert flags_of(k, "fc") & R.IPMODIFY
    assert k.key() == before


def test_rollback_of_a_filter_change_restores_removed_entries():
    k = small_kernel()
    a = ipmodify_ops(k, "a", "fa", "fb")
    assert ftrace.register_ftrace_function(k, a) == 0
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "b", "fd")) == 0
    a.flags |= F.ENABLED
    # move a from {fa, fb} to {fa, fd}: fb is removed (bit cleared), then fd conflicts -> rollback
    ret = upd(k, a, ftrace_hash([ip(k, "fa"), ip(k, "fb")]), ftrace_hash([ip(k, "fa"), ip(k, "fd")]))
    assert ret == -Errno.EBUSY
    assert flags_of(k, "fb") & R.IPMODIFY  # restored by the rollback


def test_disabled_invalid_records_are_skipped_by_the_ipmodify_walk():
    k = small_kernel()
    inv = ip(k, "__ftrace_invalid_address___64")
    ops = ftrace_ops("klp", "klp_ftrace_handler", F.IPMODIFY | F.ENABLED)
    ops.func_hash = ops.local_hash
    assert upd(k, ops, EMPTY_HASH, ftrace_hash([inv])) == 0
    assert k.rec(inv).flags == R.DISABLED


def test_not_enabled_ops_is_ignored():
    k = small_kernel()
    ops = ftrace_ops("klp", "klp_ftrace_handler", F.IPMODIFY)
    assert upd(k, ops, EMPTY_HASH, None) == 0


def test_filter_growth_of_a_live_ipmodify_ops_checks_records_only():
    """ftrace_set_filter_ip on a registered IPMODIFY ops runs ftrace_hash_ipmodify_update, not prepare."""
    k = small_kernel()
    owner = SharingOwner()
    d = direct_ops(k, "bpf", "fb", owner=owner)
    assert register_direct(k, d, "bpf_trampoline_1") == 0
    live = ipmodify_ops(k, "kprobe_ipmodify", "fa")
    assert ftrace.register_ftrace_function(k, live) == 0
    assert ftrace.ftrace_set_filter_ip(k, live, ip(k, "fb")) == 0
    assert owner.calls == []  # the direct ops on fb was never asked
    assert flags_of(k, "fb") & R.IPMODIFY and not d.flags & F.SHARE_IPMODIFY


def test_filter_growth_into_another_ipmodify_function_is_refused_and_filter_kept():
    k = small_kernel()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fb")) == 0
    live = ipmodify_ops(k, "kprobe_ipmodify", "fa")
    assert ftrace.register_ftrace_function(k, live) == 0
    before = k.key()
    assert ftrace.ftrace_set_filter_ip(k, live, ip(k, "fb")) == -Errno.EBUSY
    assert k.key() == before and list(live.hash.filter_hash) == [ip(k, "fa")]
