"""prepare_direct_functions_for_ipmodify and register_ftrace_function under the seed (v2 3/5)."""

from __future__ import annotations

import pytest
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

from ftlab.errors import KernelOops
from ftlab.model.errno import Errno
from ftlab.model.flags import ftrace_ops_cmd
from ftlab.model.locks import mutex_unlock


def prepare(k, ops):
    return k.policy.prepare_direct_functions_for_ipmodify(k, ops)


def test_prepare_returns_0_without_lock_for_non_ipmodify_ops():
    k = small_kernel()
    assert prepare(k, plain_ops(k, "tracer", "fa")) == 0
    assert k.locks == {}


def test_prepare_returns_0_without_lock_for_direct_ipmodify_ops():
    k = small_kernel()
    ops = ftrace_ops("legacy", "call_direct_funcs", F.IPMODIFY | F.DIRECT)
    ftrace.ftrace_set_filter_ip(k, ops, ip(k, "fa"))
    assert prepare(k, ops) == 0 and k.locks == {}


def test_prepare_returns_1_and_keeps_direct_mutex_held_when_no_overlap():
    k = small_kernel()
    live = ipmodify_ops(k, "klp", "fa")
    ftrace.ftrace_ops_init(k, live)
    assert prepare(k, live) == 1
    assert k.locks == {"direct_mutex": k.current}
    mutex_unlock(k, "direct_mutex")  # the caller's matching unlock


def test_register_ftrace_function_releases_direct_mutex_after_a_1_from_prepare():
    k = small_kernel()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    assert k.locks == {}


def test_direct_first_then_live_patch_asks_the_direct_ops_to_share():
    k = small_kernel()
    owner = SharingOwner()
    d = direct_ops(k, "bpf", "fa", owner=owner)
    assert register_direct(k, d, "bpf_trampoline_1") == 0
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    assert d.flags & F.SHARE_IPMODIFY
    assert [c[:2] for c in owner.calls] == [("bpf", ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY)]
    # ops_func runs with direct_mutex held and ftrace_lock released
    assert owner.calls[0][2] == {"direct_mutex": k.current}
    r = k.rec(ip(k, "fa"))
    assert r.count == 2 and r.flags & R.IPMODIFY and r.flags & R.DIRECT


def test_direct_without_ops_func_first_then_live_patch_gets_ebusy():
    k = small_kernel()
    d = direct_ops(k, "sample", "fa")
    assert register_direct(k, d, "my_tramp") == 0
    before = k.key()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == -Errno.EBUSY
    assert k.key() == before and k.locks == {}


def test_ops_func_error_is_returned_and_direct_mutex_released():
    k = small_kernel()
    owner = SharingOwner(result=-Errno.EAGAIN)  # e.g. tr->mutex busy
    d = direct_ops(k, "bpf", "fa", owner=owner)
    assert register_direct(k, d, "bpf_trampoline_1") == 0
    before = k.key()
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == -Errno.EAGAIN
    assert k.key() == before and k.locks == {}


def test_walk_stops_at_the_first_share_ipmodify_ops_even_if_it_traces_another_function():
    """Seed behaviour: `break` on a SHARE op ends the walk for this ip, hiding ops behind it.

    A non-sharing direct ops on fa registered *before* (so later in the list than) a sharing
    direct ops on fb is never asked; the live patch on fa then registers, and fa ends with an
    IPMODIFY ops and a non-sharing DIRECT ops together.
    """
    k = small_kernel()
    hidden_owner = SharingOwner()
    hidden = direct_ops(k, "hidden", "fa", owner=hidden_owner)
    assert register_direct(k, hidden, "tramp_a") == 0
    sharer = direct_ops(k, "sharer", "fb", owner=SharingOwner(), flags=F.SHARE_IPMODIFY)
    assert register_direct(k, sharer, "tramp_b") == 0
    assert [op.name for op in k.ftrace_ops_list] == ["sharer", "hidden"]
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    assert hidden_owner.calls == [] and not hidden.flags & F.SHARE_IPMODIFY
    assert flags_of(k, "fa") & R.IPMODIFY and flags_of(k, "fa") & R.DIRECT


def test_non_direct_ops_are_skipped_by_the_walk():
    k = small_kernel()
    owner = SharingOwner()
    d = direct_ops(k, "bpf", "fa", owner=owner)
    assert register_direct(k, d, "t") == 0
    assert ftrace.register_ftrace_function(k, plain_ops(k, "tracer", "fa")) == 0
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    assert len(owner.calls) == 1


def test_earlier_conversions_are_not_undone_when_a_later_ip_fails():
    k = small_kernel()
    owner = SharingOwner()
    d1 = direct_ops(k, "bpf_a", "fa", owner=owner)
    assert register_direct(k, d1, "t1") == 0
    d2 = direct_ops(k, "sample_b", "fb")  # no ops_func
    assert register_direct(k, d2, "t2") == 0
    ret = ftrace.register_ftrace_function(k, ipmodify_ops(k, "kp", "fa", "fb"))
    assert ret == -Errno.EBUSY
    assert d1.flags & F.SHARE_IPMODIFY  # converted for fa and left so
    assert not flags_of(k, "fa") & R.IPMODIFY and k.locks == {}


def test_ipmodify_ops_with_null_filter_hash_oopses_in_prepare_holding_direct_mutex():
    """The seed reads ops->func_hash->filter_hash without a NULL check (facts §2.7)."""
    k = small_kernel()
    ops = ftrace_ops("klp_unfiltered", "klp_ftrace_handler", F.IPMODIFY)
    with pytest.raises(KernelOops):
        ftrace.register_ftrace_function(k, ops)
    assert k.locks == {"direct_mutex": k.current}
    assert [e.kind for e in k.events] == ["BUG"]


def test_disable_command_is_never_sent_when_the_live_patch_goes_away():
    k = small_kernel()
    owner = SharingOwner()
    d = direct_ops(k, "bpf", "fa", owner=owner)
    assert register_direct(k, d, "t") == 0
    live = ipmodify_ops(k, "klp", "fa")
    assert ftrace.register_ftrace_function(k, live) == 0
    assert ftrace.unregister_ftrace_function(k, live) == 0
    assert [c[1] for c in owner.calls] == [0]  # only ENABLE, never DISABLE
    assert d.flags & F.SHARE_IPMODIFY
