"""Linux 6.12 (Debian's 6.12.95) and the 6.12 builds before its fixes, as the model has them.

Each test pins what 6.12.95's source says (shared/reference/linux-6.12-facts.md) and, where the
oracle reached it, what the real 6.12.95 kernel did (tests/data/oracle-6.12/REPORT.md).
"""

from __future__ import annotations

import pytest

from ftlab.model import calls, direct, ftrace
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import bpf, kprobes, livepatch
from ftlab.model.errno import Errno
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.kernel import Kernel
from ftlab.model.ops import ftrace_ops
from ftlab.model.policies import get_policy, linux_6_12

NAMES = ["cmdline_proc_show", "version_proc_show", "security_task_getsid"]


def kernel(policy: str = "linux-6.12") -> Kernel:
    return Kernel(Catalogue.synthetic(NAMES), policy=policy)


def attach(k: Kernel, name: str, kind: str, target: str = "cmdline_proc_show") -> int:
    return bpf.bpf_attach(k, bpf.BpfProgram(name, kind, target))


def test_the_6_12_policy_is_its_base_plus_five_named_changes():
    p = get_policy("linux-6.12")
    assert p.changes == ("d05cb470663a", "56b3c85e153b", "3e9a18e1c3e9", "fea3f5e83c5c", "e113f0b46d19")
    assert get_policy("linux-6.12.58").changes == ("d05cb470663a",)
    assert p.register_direct.__name__ == "register_ftrace_direct_reset"
    assert p.kprobe_ftrace_kill and p.kprobe_disarm_when_killed
    assert not get_policy("linux-6.1").kprobe_ftrace_kill


def test_live_patch_fentry_fexit_runs_fentry_the_patched_body_and_fexit_on_6_12():
    # the real 6.12.95 did this (REPORT.md A): no NULL func, no WARN, ftrace alive
    k = kernel()
    assert livepatch.livepatch_enable(k, "p1", ["cmdline_proc_show"]) == 0
    assert attach(k, "fe", "fentry") == 0
    assert attach(k, "fx", "fexit") == 0
    tr = bpf.bpf_trampoline_of(k, "cmdline_proc_show")
    assert tr is not None and tr.fops.func == "call_direct_funcs" and tr.fops.trampoline == "ftrace_regs_caller"
    t = calls.call(k, "cmdline_proc_show")
    assert t.body == "livepatch_p1:cmdline_proc_show" and t.programs == ["fe", "fx"]
    assert not k.ftrace_disabled and k.warnings == []
    assert attach(k, "fx2", "fexit") == 0  # a further rebuild keeps working too
    assert calls.call(k, "cmdline_proc_show").programs == ["fe", "fx2", "fx"]


def test_the_same_on_6_1_kills_ftrace_and_before_the_fixes_the_patch_is_bypassed():
    outcomes = {}
    for policy in ("linux-6.1", "linux-6.12", "linux-6.12.58"):
        k = kernel(policy)
        livepatch.livepatch_enable(k, "p1", ["cmdline_proc_show"])
        attach(k, "fe", "fentry")
        attach(k, "fx", "fexit")
        t = calls.call(k, "cmdline_proc_show")
        outcomes[policy] = (t.body, tuple(t.programs), k.ftrace_disabled)
    assert outcomes == {
        "linux-6.1": ("cmdline_proc_show", (), True),              # 3e9a18e1c3e9 without 56b3c85e153b
        "linux-6.12": ("livepatch_p1:cmdline_proc_show", ("fe", "fx"), False),
        "linux-6.12.58": ("cmdline_proc_show", ("fe", "fx"), False),  # no SELF on modify: bypassed
    }


def test_before_6_12_59_a_live_patch_then_fexit_fails_to_attach_and_leaves_the_entries():
    # d05cb470663a without 56b3c85e153b: SELF's -EAGAIN fails the first registration, whose
    # direct_functions entry stays; the retry is -EBUSY ("Unable to attach probe")
    k = kernel("linux-6.12.58")
    assert livepatch.livepatch_enable(k, "p1", ["cmdline_proc_show"]) == 0
    assert attach(k, "fx", "fexit") == -Errno.EBUSY
    ip = k.cat.lookup("cmdline_proc_show")
    assert ip in k.direct_functions  # the leftover entry
    assert calls.call(k, "cmdline_proc_show").body == "livepatch_p1:cmdline_proc_show"
    k2 = kernel("linux-6.12")
    assert livepatch.livepatch_enable(k2, "p1", ["cmdline_proc_show"]) == 0
    assert attach(k2, "fx", "fexit") == 0
    t = calls.call(k2, "cmdline_proc_show")
    assert t.body == "livepatch_p1:cmdline_proc_show" and t.programs == ["fx"]


def test_call_direct_funcs_reads_the_ops_direct_call_not_the_ip():
    k = kernel()
    ip = k.cat.lookup("version_proc_show")
    ops = ftrace_ops("sample")
    assert ftrace.ftrace_set_filter_ip(k, ops, ip) == 0
    assert direct.register_ftrace_direct_multi(k, ops, "my_tramp1#m") == 0
    assert ops.direct_call == "my_tramp1#m" and k.direct_functions[ip] == "my_tramp1#m"
    assert direct.modify_ftrace_direct_multi(k, ops, "my_tramp2#m") == 0
    assert ops.direct_call == "my_tramp2#m" and k.direct_functions[ip] == "my_tramp2#m"
    ctx = calls.CallContext(ip=ip, name="version_proc_show", regs=calls.Regs(ip="version_proc_show"), has_regs=True)
    k.direct_functions[ip] = "my_tramp9#m"  # what 6.1 would read; 6.12 reads the ops
    linux_6_12.call_direct_funcs(k, ops, ctx)
    assert ctx.regs.orig_ax == "my_tramp2#m"
    assert direct.unregister_ftrace_direct_multi(k, ops, "my_tramp9#m") == 0
    assert ops.func is None and ops.trampoline == 0 and not ops.flags & F.ENABLED


def test_register_fentry_returns_the_filter_error_once_ftrace_is_dead_after_fea3f5e83c5c():
    # before the fix the -ENODEV of ftrace_set_filter_ip is ignored and the empty filter is
    # register_ftrace_direct's -EINVAL
    for policy, want in (("linux-6.12", -Errno.ENODEV), ("linux-6.12.58", -Errno.EINVAL),
                         ("linux-6.1", -Errno.EINVAL)):
        k = kernel(policy)
        ftrace.ftrace_kill(k)
        assert attach(k, "fx", "fexit") == want
        assert k.direct_functions == {} and k.locks == {}


def test_kprobes_go_inert_once_ftrace_is_killed_and_their_removal_is_quiet():
    for policy, fires, warns in (("linux-6.1", True, True), ("linux-6.12", False, False)):
        k = kernel(policy)
        assert kprobes.register_kprobe(k, "version_proc_show", False, "kp") == 0
        ftrace.ftrace_kill(k)
        hooks = [d for kd, d in calls.call(k, "version_proc_show").events if kd == "kprobe_pre"]
        assert bool(hooks) == fires, policy
        before = len(k.warnings)
        kprobes.unregister_kprobe(k, "kp")
        assert (len(k.warnings) > before) == warns, policy


@pytest.mark.parametrize("policy", ["linux-6.12", "linux-6.12.58"])
def test_every_mutation_applies_to_6_12(policy):
    from ftlab.model.policies.registry import MUTATIONS
    for m in MUTATIONS:
        assert get_policy(policy, [m]).mutations == (m,)
