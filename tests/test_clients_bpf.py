"""BPF trampolines (kernel/bpf/trampoline.c) with the seed's 4/5 and 5/5, policy seed-v2.

The other two policies, and the three side by side: test_clients_bpf_policies.py.
"""

from __future__ import annotations

import itertools

import pytest
from bpfutil import prog, small_kernel, standin_live_patch, state, tr_of
from kutil import overlay

from ftlab import catalogues
from ftlab.errors import InputError
from ftlab.model import direct, ftrace, views
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import bpf
from ftlab.model.clients.bpf import BPF_TRAMP_F as T
from ftlab.model.errno import Errno
from ftlab.model.flags import FTRACE_FL as R
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.flags import ftrace_ops_cmd
from ftlab.model.kernel import Kernel
from ftlab.model.locks import mutex_lock, mutex_unlock
from ftlab.model.policies import seed_v2

ENABLE = ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY
DISABLE = ftrace_ops_cmd.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY


def rec_flags(k: Kernel, name: str) -> int:
    return k.rec(k.cat.lookup(name)).flags


# ---------------------------------------------------------------------------------------------
# lookup, key, fops
# ---------------------------------------------------------------------------------------------
def test_lookup_gives_each_trampoline_its_own_fops_with_private_tr_and_ops_func():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fentry", "fb")) == 0
    tr = tr_of(k, "fb")
    idx = k.rec_index(k.cat.lookup("fb"))
    assert tr.key == (1 << 32) | 0x80000000 | (idx + 1)
    assert tr.fops.private is tr and tr.fops.ops_func is seed_v2.bpf_tramp_ftrace_ops_func
    assert tr.fops.name == f"tr->fops[{tr.key}]" and tr.mutex == f"tr->mutex[{tr.key}]"
    assert tr.refcnt == 1 and k.locks == {}


def test_fentry_alone_registers_a_non_ipmodify_direct_ops_without_call_orig():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fentry", "fa")) == 0
    tr = tr_of(k, "fa")
    assert tr.cur_image is not None
    assert tr.cur_image.flags == T.RESTORE_REGS  # fentry only: no CALL_ORIG
    assert tr.cur_image.addr == f"bpf_trampoline_{tr.key}_0" and tr.selector == 1
    assert tr.fops.flags & (F.DIRECT | F.SAVE_REGS | F.ENABLED)
    assert not tr.fops.flags & (F.IPMODIFY | F.SHARE_IPMODIFY)
    assert not tr.indirect_call
    assert k.direct_functions == {k.cat.lookup("fa"): tr.cur_image.addr}
    f = rec_flags(k, "fa")
    assert f & R.DIRECT_EN and f & R.REGS_EN and not f & R.IPMODIFY
    assert k.locks == {}


def test_a_program_calling_bpf_get_func_ip_adds_ip_arg():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa", get_func_ip=True)) == 0
    assert tr_of(k, "fa").cur_image.flags == T.CALL_ORIG | T.SKIP_FRAME | T.IP_ARG


def test_each_update_gets_a_new_image_name_from_the_selector():
    k = small_kernel()
    a, b = prog("a", "fentry", "fa"), prog("b", "fexit", "fa")
    assert bpf.bpf_attach(k, a) == 0
    assert bpf.bpf_attach(k, b) == 0
    tr = tr_of(k, "fa")
    assert tr.cur_image.addr.endswith("_1") and tr.selector == 2
    assert k.direct_functions[k.cat.lookup("fa")] == tr.cur_image.addr
    out = views.enabled_functions(k)
    assert f"\tdirect-->bpf_trampoline_{tr.key}_1+0x0/0x1000\n" in out


# ---------------------------------------------------------------------------------------------
# every kind, every order
# ---------------------------------------------------------------------------------------------
KINDS3 = [prog("en", "fentry"), prog("ex", "fexit"), prog("mr", "fmod_ret")]


def expected_flags(attached: list[bpf.BpfProgram]) -> T:
    if any(p.kind in ("fexit", "fmod_ret") for p in attached):
        return T.CALL_ORIG | T.SKIP_FRAME
    return T.RESTORE_REGS


@pytest.mark.parametrize("attach_order", list(itertools.permutations(KINDS3)),
                         ids=lambda o: "+".join(p.kind for p in o))
def test_attach_and_detach_every_kind_in_every_order_on_one_function(attach_order):
    for detach_order in itertools.permutations(KINDS3):
        k = small_kernel()
        ip = k.cat.lookup("security_task_getsid")
        attached: list[bpf.BpfProgram] = []
        for p in attach_order:
            assert bpf.bpf_attach(k, p) == 0
            attached.append(p)
            tr = tr_of(k, "security_task_getsid")
            assert tr.cur_image.flags == expected_flags(attached)
            kinds = ("fentry", "fexit", "fmod_ret")
            assert tr.progs_cnt == [sum(q.kind == kd for q in attached) for kd in kinds]
            f = rec_flags(k, "security_task_getsid")
            assert f & R.DIRECT_EN and k.rec(ip).count == 1
            assert k.direct_functions == {ip: tr.cur_image.addr}
            assert k.locks == {}
        for p in detach_order:
            assert bpf.bpf_detach(k, p) == 0
            attached.remove(p)
            assert k.locks == {}
            if attached:
                assert tr_of(k, "security_task_getsid").cur_image.flags == expected_flags(attached)
        assert bpf.bpf_trampoline_of(k, "security_task_getsid") is None  # last put freed it
        assert k.ftrace_ops_list == [] and k.direct_functions == {} and k.recs == {}
        assert k.warnings == [] and bpf.bpf_key(k) == bpf.BpfState().key()


def test_links_go_to_the_head_of_their_kind_list():
    k = small_kernel()
    for name in ("x1", "x2", "x3"):
        assert bpf.bpf_attach(k, prog(name, "fexit")) == 0
    tr = tr_of(k, "security_task_getsid")
    fexit = bpf.bpf_tramp_prog_type.BPF_TRAMP_FEXIT
    assert [link.prog.name for link in tr.progs_hlist[fexit]] == ["x3", "x2", "x1"]
    assert [p.name for p in tr.cur_image.progs[fexit]] == ["x3", "x2", "x1"]


def test_linking_a_program_already_linked_is_ebusy_and_changes_nothing():
    k = small_kernel()
    p = prog("p", "fexit")
    assert bpf.bpf_attach(k, p) == 0
    before = state(k)
    assert bpf.bpf_attach(k, p) == -Errno.EBUSY
    assert state(k) == before and k.locks == {}


def test_the_39th_link_on_one_trampoline_is_e2big():
    k = small_kernel()
    for i in range(bpf.BPF_MAX_TRAMP_LINKS):
        assert bpf.bpf_attach(k, prog(f"p{i}", "fentry" if i % 2 else "fexit")) == 0
    before = state(k)
    assert bpf.bpf_attach(k, prog("one_too_many", "fentry")) == -Errno.E2BIG
    assert state(k) == before and k.locks == {}
    assert tr_of(k, "security_task_getsid").refcnt == bpf.BPF_MAX_TRAMP_LINKS


def test_two_functions_get_two_trampolines_with_their_own_fops_and_images():
    k = small_kernel()
    pa, pb = prog("pa", "fexit", "fa"), prog("pb", "fentry", "fb")
    assert bpf.bpf_attach(k, pa) == 0 and bpf.bpf_attach(k, pb) == 0
    ta, tb = tr_of(k, "fa"), tr_of(k, "fb")
    assert ta is not tb and ta.fops is not tb.fops and ta.key != tb.key
    assert k.direct_functions == {k.cat.lookup("fa"): ta.cur_image.addr,
                                  k.cat.lookup("fb"): tb.cur_image.addr}
    assert ta.cur_image.flags & T.CALL_ORIG and tb.cur_image.flags == T.RESTORE_REGS
    assert bpf.bpf_detach(k, pa) == 0
    assert bpf.bpf_trampoline_of(k, "fa") is None and tr_of(k, "fb").cur_image is not None
    assert rec_flags(k, "fa") == 0 and rec_flags(k, "fb") & R.DIRECT_EN
    assert k.locks == {}


def test_detaching_a_program_without_a_link_is_enoent():
    k = small_kernel()
    assert bpf.bpf_detach(k, prog("never", "fentry")) == -Errno.ENOENT


def test_an_unknown_kind_or_target_is_input_error():
    with pytest.raises(InputError):
        prog("p", "kprobe")
    with pytest.raises(InputError):
        bpf.bpf_attach(small_kernel(), prog("p", "fentry", "no_such_function"))


@pytest.mark.parametrize("arch", ["arm64", "ppc64le", "s390x"])
def test_architectures_without_a_bpf_trampoline_jit_get_enotsupp(arch):
    k = Kernel(Catalogue.synthetic(["fa"]), arch=arch)
    before = state(k)
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == -Errno.ENOTSUPP
    assert state(k) == before and k.locks == {}


# ---------------------------------------------------------------------------------------------
# verifier refusals
# ---------------------------------------------------------------------------------------------
def test_fmod_ret_on_a_non_security_function_is_einval_and_changes_nothing():
    k = small_kernel()
    before = state(k)
    assert bpf.bpf_attach(k, prog("m", "fmod_ret", "fa")) == -Errno.EINVAL
    assert state(k) == before and k.locks == {}


def test_fmod_ret_on_security_task_getsid_of_the_debian_catalogue_is_accepted():
    k = Kernel(catalogues.embedded())
    assert bpf.bpf_attach(k, prog("m", "fmod_ret", "security_task_getsid", ret=-1)) == 0
    assert bpf.bpf_attach(k, prog("m2", "fmod_ret", "cmdline_proc_show")) == -Errno.EINVAL
    assert k.locks == {}


@pytest.mark.parametrize("kind", ["fentry", "fexit", "fmod_ret"])
def test_btf_id_deny_functions_are_einval_for_every_kind(kind):
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("d", kind, "migrate_disable")) == -Errno.EINVAL
    assert bpf.bpf_trampoline_of(k, "migrate_disable") is None


# ---------------------------------------------------------------------------------------------
# IPMODIFY first: the seed's -EAGAIN -> indirect_call retry
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fexit", "fentry"])
def test_ipmodify_first_eagain_retry_sets_indirect_call_orig_stack_and_share(kind):
    k = small_kernel()
    lp, ret = standin_live_patch(k, "fa")
    assert ret == 0
    assert bpf.bpf_attach(k, prog("p", kind, "fa")) == 0
    tr = tr_of(k, "fa")
    assert tr.indirect_call
    # ORIG_STACK is added even to a fentry-only image (the JIT ignores it without CALL_ORIG)
    assert tr.cur_image.flags & T.ORIG_STACK
    assert tr.cur_image.addr.endswith("_0")  # the retry JITs into the same image
    assert tr.fops.flags & F.SHARE_IPMODIFY and not tr.fops.flags & F.IPMODIFY
    assert (tr.fops.func, tr.fops.trampoline) == ("call_direct_funcs", "ftrace_regs_caller")
    f = rec_flags(k, "fa")
    assert k.rec_by_name("fa").count == 2
    assert f & R.IPMODIFY and f & R.DIRECT and not f & R.DIRECT_EN
    assert [op.name for op in k.ftrace_ops_list] == [tr.fops.name, "standin_klp"]
    assert k.warnings == [] and k.locks == {}


def test_ipmodify_first_first_registration_gets_eagain_then_the_retry_succeeds():
    k = small_kernel()
    standin_live_patch(k, "fa")
    seen: list[tuple[int, bool]] = []
    real = seed_v2.register_fentry

    def spy(k2, tr, addr):
        shared = bool(tr.fops.flags & F.SHARE_IPMODIFY)
        r = real(k2, tr, addr)
        seen.append((r, shared))
        return r

    overlay(k, register_fentry=spy)
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    assert seen == [(-Errno.EAGAIN, False), (0, True)]  # #4 refused, then #5 ignored


# ---------------------------------------------------------------------------------------------
# DIRECT first: ENABLE via ops_func
# ---------------------------------------------------------------------------------------------
def test_direct_first_ipmodify_registration_sends_enable_and_the_trampoline_rebuilds_with_orig_stack():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    tr = tr_of(k, "fa")
    first = tr.cur_image.addr
    seen: list[tuple[int, dict]] = []

    def recorder(ops, cmd):
        seen.append((int(cmd), dict(k.locks)))
        return seed_v2.bpf_tramp_ftrace_ops_func(ops, cmd)

    tr.fops.ops_func = recorder
    lp, ret = standin_live_patch(k, "fa")
    assert ret == 0
    assert seen == [(ENABLE, {"direct_mutex": k.current})]  # direct_mutex held, tr->mutex free
    assert tr.indirect_call and tr.fops.flags & F.SHARE_IPMODIFY
    assert tr.cur_image.addr != first and tr.cur_image.flags & T.ORIG_STACK
    assert tr.cur_image.flags & T.CALL_ORIG
    assert k.direct_functions == {k.cat.lookup("fa"): tr.cur_image.addr}
    f = rec_flags(k, "fa")
    assert k.rec_by_name("fa").count == 2 and f & R.IPMODIFY and f & R.DIRECT
    assert k.warnings == [] and k.locks == {}


def test_tr_mutex_busy_makes_the_ipmodify_registration_fail_with_eagain_and_changes_nothing():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    tr = tr_of(k, "fa")
    me = k.current
    k.current = "other"
    mutex_lock(k, tr.mutex)  # another task is in the middle of an attach on this trampoline
    k.current = me
    before = state(k)
    lp, ret = standin_live_patch(k, "fa")
    assert ret == -Errno.EAGAIN
    assert state(k) == before
    assert k.locks == {tr.mutex: "other"}  # direct_mutex released again
    assert not tr.indirect_call and not tr.fops.flags & F.SHARE_IPMODIFY
    k.current = "other"
    mutex_unlock(k, tr.mutex)
    k.current = me
    # the live patch retries and now succeeds
    assert ftrace.register_ftrace_function(k, lp) == 0
    assert tr.indirect_call and k.locks == {}


def test_indirect_call_stays_set_after_the_ipmodify_ops_goes_away():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    lp, _ = standin_live_patch(k, "fa")
    tr = tr_of(k, "fa")
    assert ftrace.unregister_ftrace_function(k, lp) == 0
    # v2 never sends DISABLE: sharing mode sticks for the life of the trampoline object
    assert tr.indirect_call and tr.fops.flags & F.SHARE_IPMODIFY
    assert rec_flags(k, "fa") & R.DIRECT_EN  # the site calls the image directly again
    assert bpf.bpf_attach(k, prog("q", "fentry", "fa")) == 0
    assert tr.cur_image.flags & T.ORIG_STACK
    # once the trampoline object is freed, a new one starts without it
    assert bpf.bpf_detach(k, prog("p", "fexit", "fa")) == 0
    assert bpf.bpf_detach(k, prog("q", "fentry", "fa")) == 0
    assert bpf.bpf_trampoline_of(k, "fa") is None
    assert bpf.bpf_attach(k, prog("r", "fexit", "fa")) == 0
    fresh = tr_of(k, "fa")
    assert not fresh.indirect_call and not fresh.cur_image.flags & T.ORIG_STACK
    assert k.locks == {}


def test_disable_command_under_direct_mutex_clears_indirect_call_and_share_and_rebuilds():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    standin_live_patch(k, "fa")
    tr = tr_of(k, "fa")
    mutex_lock(k, "direct_mutex")  # the context ftrace's callers of ops_func provide
    assert tr.fops.ops_func(tr.fops, DISABLE) == 0  # nothing in v2 ftrace sends it
    mutex_unlock(k, "direct_mutex")
    assert not tr.indirect_call and not tr.fops.flags & F.SHARE_IPMODIFY
    assert not tr.cur_image.flags & T.ORIG_STACK
    assert k.warnings == [] and k.locks == {}


def test_ops_func_without_direct_mutex_held_fails_the_nolock_modify_with_a_warning():
    # The rebuild uses modify_ftrace_direct_multi_nolock, whose v2 body WARNs and returns
    # -EINVAL unless direct_mutex is held; indirect_call/SHARE are changed before that.
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    standin_live_patch(k, "fa")
    tr = tr_of(k, "fa")
    image = tr.cur_image
    assert tr.fops.ops_func(tr.fops, DISABLE) == -Errno.EINVAL
    assert [w.where for w in k.warnings] == ["__modify_ftrace_direct_multi"]
    assert not tr.indirect_call and not tr.fops.flags & F.SHARE_IPMODIFY
    assert tr.cur_image is image and image.flags & T.ORIG_STACK  # the old image stays
    assert k.locks == {}


def test_unknown_ops_cmd_is_einval_and_releases_tr_mutex():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    tr = tr_of(k, "fa")
    before = state(k)
    assert tr.fops.ops_func(tr.fops, 7) == -Errno.EINVAL
    assert state(k) == before and k.locks == {}


def test_a_second_eagain_after_the_retry_warns_once_and_fails_the_attach():
    # Unreachable through v2 ftrace (SHARE makes the retry #5); forced to pin the first guard.
    k = small_kernel()
    overlay(k, register_fentry=lambda k2, tr, addr: -Errno.EAGAIN)
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == -Errno.EAGAIN
    assert [w.where for w in k.warnings] == ["bpf_trampoline_update"]
    assert bpf.bpf_trampoline_of(k, "fa") is None and k.locks == {}


def test_eagain_from_a_modify_warns_once_and_does_not_retry():
    # Unreachable through v2 ftrace (the modify path has no IPMODIFY check); pins the second guard.
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    before = state(k)
    overlay(k, modify_fentry=lambda *a: -Errno.EAGAIN)
    assert bpf.bpf_attach(k, prog("q", "fentry", "fa")) == -Errno.EAGAIN
    assert [w.text for w in k.warnings] == ["-EAGAIN with tr->cur_image set"]
    assert state(k) == before and k.locks == {}


# ---------------------------------------------------------------------------------------------
# copies and views
# ---------------------------------------------------------------------------------------------
def test_kernel_copy_deep_copies_trampolines_with_their_back_references():
    k = small_kernel()
    assert bpf.bpf_attach(k, prog("p", "fexit", "fa")) == 0
    k2 = k.copy()
    tr, tr2 = tr_of(k, "fa"), tr_of(k2, "fa")
    assert tr2 is not tr and tr2.kernel is k2 and tr2.fops.private is tr2
    assert tr2.fops in k2.ftrace_ops_list and tr2.fops is not tr.fops
    standin_live_patch(k2, "fa")  # ENABLE reaches the copy's trampoline only
    assert tr2.indirect_call and not tr.indirect_call
    assert bpf.bpf_detach(k2, prog("p", "fexit", "fa")) == 0
    assert tr_of(k, "fa").cur_image is not None and k.locks == {} and k2.locks == {}


def test_fexit_alone_on_cmdline_proc_show_prints_the_line_observed_on_debian_6_1():
    k = Kernel(catalogues.embedded(), policy="seed-v2")
    assert bpf.bpf_attach(k, prog("fx", "fexit", "cmdline_proc_show")) == 0
    key = tr_of(k, "cmdline_proc_show").key
    assert views.enabled_functions(k) == (
        "cmdline_proc_show (1) R   D\ttramp: ftrace_regs_caller+0x0/0x58 (call_direct_funcs+0x0/0x30)\n"
        f"\tdirect-->bpf_trampoline_{key}_0+0x0/0x1000\n")


def test_fexit_then_live_patch_prints_the_count_2_line_observed_on_debian_6_1():
    k = Kernel(catalogues.embedded())
    assert bpf.bpf_attach(k, prog("fx", "fexit", "cmdline_proc_show")) == 0
    _, ret = standin_live_patch(k, "cmdline_proc_show")
    assert ret == 0
    first = views.enabled_functions(k).splitlines()[0]
    assert first == "cmdline_proc_show (2) R I D ->arch_ftrace_ops_list_func+0x0/0x1d0"


def test_unregister_direct_multi_is_what_the_last_detach_uses():
    k = small_kernel()
    p = prog("p", "fentry", "fa")
    assert bpf.bpf_attach(k, p) == 0
    fops = tr_of(k, "fa").fops
    assert bpf.bpf_detach(k, p) == 0
    assert fops.func is None and fops.trampoline == 0 and not fops.flags & F.ENABLED
    assert direct.check_direct_multi(k, fops) == 0  # flags stay DIRECT|SAVE_REGS, as in the kernel
