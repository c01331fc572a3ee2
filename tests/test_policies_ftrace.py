"""The ftrace side of the three policies, side by side (facts §4.6 and §5).

The DIRECT ops' owner is a stand-in with the BPF trampoline's answer for each policy: under
seed-v2 ENABLE sets FTRACE_OPS_FL_SHARE_IPMODIFY; under 6.1 SELF answers -EAGAIN the first time
(it must rebuild with ORIG_STACK) and 0 afterwards, PEER answers 0, DISABLE_PEER answers 0.
"""

from __future__ import annotations

import pytest
from kutil import F, R, ftrace_ops, ip, ipmodify_ops, small_kernel

from ftlab.errors import ModelError
from ftlab.model import direct, ftrace
from ftlab.model.catalogue import Catalogue
from ftlab.model.errno import Errno
from ftlab.model.kernel import Kernel
from ftlab.model.policies import get_policy, linux_5_18, policy_names

POLICIES = ["linux-5.18", "seed-v2", "linux-6.1", "linux-6.12"]


class Owner:
    """A DIRECT ops owner that can share (the BPF trampoline's protocol, per policy)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.calls: list[int] = []
        self.rebuilt = False

    def __call__(self, op: ftrace_ops, cmd: int) -> int:
        self.calls.append(int(cmd))
        if self.k.policy.name == "seed-v2":
            if cmd == 0:
                op.flags |= F.SHARE_IPMODIFY
            return 0
        if cmd == 0 and not self.rebuilt:  # 6.1 SELF: must rebuild with ORIG_STACK first
            self.rebuilt = True
            return -Errno.EAGAIN
        return 0


def dops(k, name, func, owner=None):
    ops = ftrace_ops(name, None, 0, ops_func=owner)
    assert ftrace.ftrace_set_filter_ip(k, ops, ip(k, func)) == 0
    return ops


def register_direct_retrying(k, ops, addr):
    """What the BPF trampoline does: on -EAGAIN prepare to share and register again."""
    ret = direct.register_ftrace_direct_multi(k, ops, addr)
    if ret == -Errno.EAGAIN:
        ops.func, ops.trampoline = None, 0
        if k.policy.has_share_ipmodify_flag:
            ops.flags |= F.SHARE_IPMODIFY
        ret = direct.register_ftrace_direct_multi(k, ops, addr)
    return ret


# (policy) -> expected results of (first, second)
LIVE_PATCH_THEN_SHARING_DIRECT = {"linux-5.18": (0, -Errno.EBUSY), "seed-v2": (0, 0), "linux-6.1": (0, 0),
                               "linux-6.12": (0, 0)}
SHARING_DIRECT_THEN_LIVE_PATCH = {"linux-5.18": (0, -Errno.EBUSY), "seed-v2": (0, 0), "linux-6.1": (0, 0),
                               "linux-6.12": (0, 0)}
LIVE_PATCH_THEN_PLAIN_DIRECT = {"linux-5.18": (0, -Errno.EBUSY), "seed-v2": (0, -Errno.EAGAIN),
                                "linux-6.1": (0, -Errno.EBUSY),
                               "linux-6.12": (0, -Errno.EBUSY)}
PLAIN_DIRECT_THEN_LIVE_PATCH = {"linux-5.18": (0, -Errno.EBUSY), "seed-v2": (0, -Errno.EBUSY),
                                "linux-6.1": (0, -Errno.EBUSY),
                               "linux-6.12": (0, -Errno.EBUSY)}


def test_policy_registry_lists_the_three_policies():
    assert policy_names() == POLICIES
    assert get_policy("linux-6.1").kernel.startswith("Linux 6.1.192")


@pytest.mark.parametrize("policy", POLICIES)
def test_live_patch_then_sharing_direct(policy):
    k = small_kernel(policy)
    first = ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa"))
    second = register_direct_retrying(k, dops(k, "bpf", "fa", Owner(k)), "tramp")
    assert (first, second) == LIVE_PATCH_THEN_SHARING_DIRECT[policy]
    assert k.locks == {}


@pytest.mark.parametrize("policy", POLICIES)
def test_sharing_direct_then_live_patch(policy):
    k = small_kernel(policy)
    owner = Owner(k)
    first = register_direct_retrying(k, dops(k, "bpf", "fa", owner), "tramp")
    second = ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa"))
    assert (first, second) == SHARING_DIRECT_THEN_LIVE_PATCH[policy]
    # seed: ENABLE (0); 6.1: PEER (1); 5.18: never asked
    assert owner.calls == {"linux-5.18": [], "seed-v2": [0], "linux-6.1": [1], "linux-6.12": [1]}[policy]


@pytest.mark.parametrize("policy", POLICIES)
def test_live_patch_then_direct_without_ops_func(policy):
    """Seed: -EAGAIN although the sample cannot share; 6.1: SELF without ops_func -> -EBUSY."""
    k = small_kernel(policy)
    first = ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa"))
    second = direct.register_ftrace_direct_multi(k, dops(k, "sample", "fa"), "my_tramp")
    assert (first, second) == LIVE_PATCH_THEN_PLAIN_DIRECT[policy]


@pytest.mark.parametrize("policy", POLICIES)
def test_direct_without_ops_func_then_live_patch(policy):
    k = small_kernel(policy)
    first = direct.register_ftrace_direct_multi(k, dops(k, "sample", "fa"), "my_tramp")
    before = k.key()
    second = ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa"))
    assert (first, second) == PLAIN_DIRECT_THEN_LIVE_PATCH[policy]
    assert k.key() == before


@pytest.mark.parametrize("policy", POLICIES)
def test_two_ipmodify_ops_refuse_each_other_in_every_version(policy):
    k = small_kernel(policy)
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "kprobe_post", "fa")) == -Errno.EBUSY


def test_5_18_direct_ops_carry_ipmodify_and_own_the_record_bit():
    k = small_kernel("linux-5.18")
    ops = dops(k, "bpf", "fa")
    assert direct.register_ftrace_direct_multi(k, ops, "t") == 0
    assert ops.flags & F.IPMODIFY and k.rec(ip(k, "fa")).flags & R.IPMODIFY


def test_6_1_direct_ops_never_set_the_record_bit_and_flags_are_assigned():
    k = small_kernel("linux-6.1")
    ops = dops(k, "bpf", "fa")
    ops.flags |= F.PID  # a caller bit: dropped by `flags = MULTI_FLAGS`
    assert direct.register_ftrace_direct_multi(k, ops, "t") == 0
    assert not ops.flags & F.PID and not k.rec(ip(k, "fa")).flags & R.IPMODIFY


def test_6_1_unregistering_the_live_patch_sends_disable_peer():
    k = small_kernel("linux-6.1")
    owner = Owner(k)
    assert register_direct_retrying(k, dops(k, "bpf", "fa", owner), "t") == 0
    live = ipmodify_ops(k, "klp", "fa")
    assert ftrace.register_ftrace_function(k, live) == 0
    assert ftrace.unregister_ftrace_function(k, live) == 0
    assert owner.calls == [1, 2] and k.locks == {}


def test_6_1_register_ftrace_function_always_takes_direct_mutex():
    k = small_kernel("linux-6.1")
    from ftlab.model.locks import mutex_lock
    k.current = "other"
    mutex_lock(k, "direct_mutex")
    k.current = "task"
    tracer = ftrace_ops("tracer", "function_trace_call")
    ftrace.ftrace_set_filter_ip(k, tracer, ip(k, "fa"))
    with pytest.raises(ModelError, match="deadlock"):
        ftrace.register_ftrace_function(k, tracer)


def test_6_1_ipmodify_and_direct_together_warns_and_is_ignored():
    k = small_kernel("linux-6.1")
    ops = ftrace_ops("both", "x", F.IPMODIFY | F.DIRECT | F.ENABLED)
    ftrace.ftrace_ops_init(k, ops)
    assert k.policy.ftrace_hash_update_ipmodify(k, ops, None, None) == 0
    assert [e.kind for e in k.events] == ["WARN"]


def test_6_1_modify_re_asks_self_through_update_target_backport():
    """6.1.162+: __modify_ftrace_direct_multi calls __ftrace_hash_update_ipmodify(update_target)."""
    k = small_kernel("linux-6.1")
    owner = Owner(k)
    ops = dops(k, "bpf", "fa", owner)
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    assert register_direct_retrying(k, ops, "t1") == 0
    assert owner.calls == [0, 0]
    assert direct.modify_ftrace_direct_multi(k, ops, "t2") == 0
    assert owner.calls == [0, 0, 0] and k.direct_functions[ip(k, "fa")] == "t2"


def test_6_1_modify_failing_self_keeps_the_old_trampoline():
    k = small_kernel("linux-6.1")
    owner = Owner(k)
    ops = dops(k, "bpf", "fa", owner)
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    assert register_direct_retrying(k, ops, "t1") == 0
    owner.rebuilt = False  # the next SELF answers -EAGAIN again
    assert direct.modify_ftrace_direct_multi(k, ops, "t2") == -Errno.EAGAIN
    assert k.direct_functions[ip(k, "fa")] == "t1" and k.locks == {}
    assert k.rec(ip(k, "fa")).count == 2  # tmp_ops is gone again


def test_seed_has_no_cleanup_and_5_18_has_no_nolock_modify():
    with pytest.raises(ModelError, match="does not exist in seed-v2"):
        get_policy("seed-v2").cleanup_direct_functions_after_ipmodify(None, None)
    with pytest.raises(ModelError, match="linux-5.18"):
        get_policy("linux-5.18").modify_direct_nolock(None, None, None)


def test_5_18_legacy_direct_api_refuses_a_live_patched_function_both_orders():
    k = small_kernel("linux-5.18")
    assert ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa")) == 0
    before = k.key()
    assert linux_5_18.register_ftrace_direct(k, ip(k, "fa"), "bpf_trampoline_1") == -Errno.EBUSY
    assert k.key() == before
    k2 = small_kernel("linux-5.18")
    assert linux_5_18.register_ftrace_direct(k2, ip(k2, "fa"), "bpf_trampoline_1") == 0
    assert ftrace.register_ftrace_function(k2, ipmodify_ops(k2, "klp", "fa")) == -Errno.EBUSY


def test_5_18_legacy_direct_api_second_function_and_modify_and_unregister():
    k = small_kernel("linux-5.18")
    assert linux_5_18.register_ftrace_direct(k, ip(k, "fa"), "t1") == 0
    assert linux_5_18.register_ftrace_direct(k, ip(k, "fb"), "t2") == 0
    assert linux_5_18.register_ftrace_direct(k, ip(k, "fa"), "t3") == -Errno.EBUSY
    assert linux_5_18.modify_ftrace_direct(k, ip(k, "fa"), "t1", "t9") == 0
    assert k.direct_functions[ip(k, "fa")] == "t9" and k.rec(ip(k, "fa")).flags & R.DIRECT_EN
    assert linux_5_18.modify_ftrace_direct(k, ip(k, "fa"), "t1", "t8") == -Errno.EINVAL
    assert linux_5_18.unregister_ftrace_direct(k, ip(k, "fa"), "t9") == 0
    assert linux_5_18.unregister_ftrace_direct(k, ip(k, "fb"), "t2") == 0
    assert k.direct_functions == {} and [o.name for o in k.ftrace_ops_list] == [] and k.locks == {}
    assert all(not r.flags & R.ENABLED for r in k.touched_records())


@pytest.mark.parametrize("arch,direct_ok,tramp", [("x86_64", True, True), ("arm64", False, False),
                                                   ("ppc64le", False, False), ("s390x", True, False)])
def test_arch_profiles_change_what_the_model_allows(arch, direct_ok, tramp):
    k = Kernel(Catalogue.synthetic(["fa", "fb"]), policy="linux-6.1", arch=arch)
    ret = direct.register_ftrace_direct_multi(k, dops(k, "sample", "fa"), "t")
    assert ret == (0 if direct_ok else -Errno.ENODEV)
    tracer = ftrace_ops("tracer", "function_trace_call")
    ftrace.ftrace_set_filter_ip(k, tracer, ip(k, "fb"))
    assert ftrace.register_ftrace_function(k, tracer) == 0
    assert bool(k.rec(ip(k, "fb")).flags & R.TRAMP_EN) == tramp


def test_unknown_arch_and_policy_are_input_errors():
    from ftlab.errors import InputError
    with pytest.raises(InputError, match="unknown arch 'mips'"):
        Kernel(Catalogue.synthetic(["fa"]), arch="mips")
    with pytest.raises(InputError, match="unknown policy"):
        Kernel(Catalogue.synthetic(["fa"]), policy="linux-9.9")


def test_compare_api_lines_up_the_three_policies_on_a_scenario():
    from ftlab.scenario import load_scenario_text
    from ftlab.scenario.compare import compare

    scenario, lines = load_scenario_text("""
kernel: {catalogue: [f]}
steps:
  - livepatch: enable
    patch: p1
    funcs: [f]
  - bpf: attach
    prog: fx
    kind: fexit
    target: f
  - call: f
""", "t.yaml")
    c = compare(scenario, lines)
    assert c.policies == POLICIES and not c.agree
    assert {p: c.rows[1]["cells"][p]["result"] for p in POLICIES} == {
        "linux-5.18": "EBUSY", "seed-v2": "ok", "linux-6.1": "ok", "linux-6.12": "ok"}  # facts §5 vs §2/§4
    assert c.rows[2]["cells"]["linux-6.1"]["programs"] == ["fx"] and not c.rows[0]["differs"]
