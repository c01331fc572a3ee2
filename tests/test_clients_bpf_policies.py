"""BPF trampolines under the three policies, side by side (facts §3.4, §4.5, §4.6, §5, §6, §7.4).

Each classic sequence runs under linux-5.18, seed-v2 and linux-6.1 with that version's outcome
pinned; the comment on each step names the kernel function that decides it. The live patch is
the stand-in of bpfutil (a bare IPMODIFY ops whose handler sets regs->ip to standin_new_<f>).
The seed-only details (the WARN guards of the v2 retry, DISABLE by hand, ...) are in
test_clients_bpf.py.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable

import pytest
from bpfutil import NAMES, STANDIN_RET, prog, standin_live_patch, state, tr_of
from kutil import overlay, spy

from ftlab import catalogues
from ftlab.errors import KernelOops, ModelError
from ftlab.model import direct, ftrace, views
from ftlab.model.arch import ArchProfile
from ftlab.model.calls import call
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import bpf
from ftlab.model.clients.bpf import BPF_TRAMP_F as T
from ftlab.model.errno import Errno
from ftlab.model.flags import FTRACE_FL as R
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.kernel import Kernel
from ftlab.model.locks import mutex_lock, mutex_unlock
from ftlab.model.ops import ftrace_ops
from ftlab.model.policies import linux_5_18, linux_6_1, merged, seed_v2

POLICIES = ["linux-5.18", "seed-v2", "linux-6.1"]
MODULES = {"linux-5.18": linux_5_18, "seed-v2": seed_v2, "linux-6.1": linux_6_1}
EBUSY, EAGAIN = -Errno.EBUSY, -Errno.EAGAIN
PATCHED = "standin_new_fa"

SELF = linux_6_1.ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF
PEER = linux_6_1.ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER
DISABLE_PEER = linux_6_1.ftrace_ops_cmd.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY_PEER


def kernel(policy: str, arch: str | ArchProfile = "x86_64") -> Kernel:
    return Kernel(Catalogue.synthetic(NAMES), policy=policy, arch=arch)


def attach(k: Kernel, name: str, kind: str, target: str = "fa", **kw: object) -> int:
    return bpf.bpf_attach(k, prog(name, kind, target, **kw))


def detach(k: Kernel, name: str, kind: str, target: str = "fa") -> int:
    return bpf.bpf_detach(k, prog(name, kind, target))


def image_flags(k: Kernel, name: str = "fa") -> T:
    return T(int(tr_of(k, name).cur_image.flags))


def other_task_holds(k: Kernel, lock: str) -> None:
    me, k.current = k.current, "other"
    mutex_lock(k, lock)
    k.current = me


def other_task_releases(k: Kernel, lock: str) -> None:
    me, k.current = k.current, "other"
    mutex_unlock(k, lock)
    k.current = me


def record_ops_func(k: Kernel, tr: bpf.bpf_trampoline) -> list[tuple[int, tuple[str, ...]]]:
    """Wrap tr->fops' ops_func: every command with the locks held at that moment."""
    seen: list[tuple[int, tuple[str, ...]]] = []
    real = tr.fops.ops_func

    def recorder(ops: ftrace_ops, cmd: int) -> int:
        seen.append((int(cmd), tuple(sorted(k.locks))))
        return real(ops, cmd)

    tr.fops.ops_func = recorder
    return seen


# ---------------------------------------------------------------------------------------------
# structure: what each version has
# ---------------------------------------------------------------------------------------------
def test_each_policy_has_its_own_trampoline_functions_with_kernel_docstrings():
    for name, mod in MODULES.items():
        for fn in ("register_fentry", "modify_fentry", "unregister_fentry", "bpf_tramp_image_alloc",
                   "bpf_trampoline_update"):
            doc = inspect.getdoc(getattr(mod, fn)) or ""
            first = doc.splitlines()[0]
            assert "trampoline.c" in first and fn in first, (name, fn, first)
    # a function a version lacks is absent from its table (5.18: no fops, no ops_func)
    with pytest.raises(ModelError, match="does not exist in linux-5.18"):
        kernel("linux-5.18").policy.bpf_tramp_ftrace_ops_func(ftrace_ops("x"), 0)
    assert kernel("linux-6.1").policy.bpf_tramp_ftrace_ops_func is merged.bpf_tramp_ftrace_ops_func
    # v2 has no sleep after a failed trylock
    assert "msleep" not in kernel("seed-v2").policy.bpf_tramp_ftrace_ops_func.__code__.co_names


def test_each_policy_has_the_bpf_tramp_flags_of_its_bpf_h():
    assert [f.name for f in linux_5_18.BPF_TRAMP_F] == ["RESTORE_REGS", "CALL_ORIG", "SKIP_FRAME",
                                                        "IP_ARG", "RET_FENTRY_RET"]
    assert [f.name for f in seed_v2.BPF_TRAMP_F][-1] == "ORIG_STACK"
    assert linux_6_1.BPF_TRAMP_F.SHARE_IPMODIFY == 1 << 6 and linux_6_1.BPF_TRAMP_F.TAIL_CALL_CTX == 1 << 7
    for mod in MODULES.values():
        for f in mod.BPF_TRAMP_F:
            assert T[f.name] == f  # same values as the superset


@pytest.mark.parametrize("policy", POLICIES)
def test_lookup_gives_a_fops_only_where_the_version_has_one(policy):
    k = kernel(policy)
    assert attach(k, "p", "fentry") == 0
    tr = tr_of(k, "fa")
    if policy == "linux-5.18":
        # trampoline.c: bpf_trampoline_lookup (5.18) has no fops; register_fentry uses direct_ops
        assert tr.fops is None
        assert [o.name for o in k.ftrace_ops_list] == ["direct_ops"]
        assert k.ftrace_ops_list[0].flags & F.IPMODIFY  # ftrace.c: direct_ops carries IPMODIFY
    else:
        # trampoline.c: bpf_trampoline_lookup (5/5, 6.1) allocates tr->fops, private = tr
        assert tr.fops.private is tr and tr.fops.ops_func is MODULES[policy].bpf_tramp_ftrace_ops_func
        assert [o.name for o in k.ftrace_ops_list] == [tr.fops.name]
        assert not tr.fops.flags & F.IPMODIFY
    assert type(tr.cur_image.flags) is k.policy.BPF_TRAMP_F


# ---------------------------------------------------------------------------------------------
# no live patch: every kind in every order behaves the same in all three versions
# ---------------------------------------------------------------------------------------------
KINDS3 = [prog("en", "fentry"), prog("ex", "fexit"), prog("mr", "fmod_ret")]


def expected_flags(attached: list[bpf.BpfProgram]) -> T:
    if any(p.kind in ("fexit", "fmod_ret") for p in attached):
        return T.CALL_ORIG | T.SKIP_FRAME
    return T.RESTORE_REGS


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("attach_order", list(itertools.permutations(KINDS3)),
                         ids=lambda o: "+".join(p.kind for p in o))
def test_attach_and_detach_every_kind_in_every_order_without_a_live_patch(policy, attach_order):
    for detach_order in itertools.permutations(KINDS3):
        k = kernel(policy)
        ip = k.cat.lookup("security_task_getsid")
        attached: list[bpf.BpfProgram] = []
        for p in attach_order:
            assert bpf.bpf_attach(k, p) == 0
            attached.append(p)
            tr = tr_of(k, "security_task_getsid")
            # trampoline.c: bpf_trampoline_update, flags from the program kinds (no ORIG_STACK)
            assert image_flags(k, "security_task_getsid") == expected_flags(attached)
            assert k.rec(ip).flags & R.DIRECT_EN and k.rec(ip).count == 1
            assert k.direct_functions == {ip: tr.cur_image.addr} and k.locks == {}
        for p in detach_order:
            assert bpf.bpf_detach(k, p) == 0
            attached.remove(p)
            if attached:
                assert image_flags(k, "security_task_getsid") == expected_flags(attached)
        assert bpf.bpf_trampoline_of(k, "security_task_getsid") is None
        assert k.ftrace_ops_list == [] and k.direct_functions == {} and k.recs == {}
        assert k.warnings == [] and k.locks == {} and bpf.bpf_key(k) == bpf.BpfState().key()


@pytest.mark.parametrize("policy", POLICIES)
def test_two_functions_get_two_trampolines_and_5_18_shares_one_direct_ops(policy):
    k = kernel(policy)
    assert attach(k, "pa", "fexit", "fa") == 0 and attach(k, "pb", "fentry", "fb") == 0
    ta, tb = tr_of(k, "fa"), tr_of(k, "fb")
    assert k.direct_functions == {k.cat.lookup("fa"): ta.cur_image.addr,
                                  k.cat.lookup("fb"): tb.cur_image.addr}
    # 5.18: one direct_ops whose filter holds both (ftrace.c: register_ftrace_direct)
    assert len(k.ftrace_ops_list) == (1 if policy == "linux-5.18" else 2)
    assert detach(k, "pa", "fexit", "fa") == 0
    assert k.rec_by_name("fa").flags == 0 and k.rec_by_name("fb").flags & R.DIRECT_EN
    assert detach(k, "pb", "fentry", "fb") == 0
    assert k.ftrace_ops_list == [] and k.recs == {} and k.locks == {} and k.warnings == []


@pytest.mark.parametrize("policy,names", [
    ("linux-5.18", ["_0", "_1", "_2"]),  # trampoline.c: bpf_tramp_image_alloc(key, tr->selector)
    ("seed-v2", ["_0", "_1", "_2"]),
    ("linux-6.1", ["#0", "#1", "#0"]),   # 6.1.192: bpf_tramp_image_alloc(key), no selector
])
def test_image_names_per_version(policy, names):
    k = kernel(policy)
    seen = []
    for p in (prog("a", "fentry", "fa"), prog("b", "fexit", "fa"), prog("c", "fentry", "fa")):
        assert bpf.bpf_attach(k, p) == 0
        seen.append(tr_of(k, "fa").cur_image.addr)
    key = tr_of(k, "fa").key
    assert seen == [f"bpf_trampoline_{key}{n}" for n in names]
    # %pS prints the ksym: 6.1's has no index (views.pS strips the model's #n)
    shown = f"bpf_trampoline_{key}_2" if policy != "linux-6.1" else f"bpf_trampoline_{key}"
    assert f"\tdirect-->{shown}+0x0/0x1000\n" in views.enabled_functions(k)


@pytest.mark.parametrize("policy,line", [
    # 5.18: direct_ops has IPMODIFY, so the record shows I (ftrace.c: __ftrace_hash_update_ipmodify)
    ("linux-5.18", "cmdline_proc_show (1) R I D\ttramp: ftrace_regs_caller+0x0/0x58 "
                   "(call_direct_funcs+0x0/0x30)"),
    ("seed-v2", "cmdline_proc_show (1) R   D\ttramp: ftrace_regs_caller+0x0/0x58 "
                "(call_direct_funcs+0x0/0x30)"),
    ("linux-6.1", "cmdline_proc_show (1) R   D\ttramp: ftrace_regs_caller+0x0/0x58 "
                  "(call_direct_funcs+0x0/0x30)"),  # the line observed on Debian 6.1.0-56
])
def test_fexit_alone_enabled_functions_line_per_version(policy, line):
    k = Kernel(catalogues.embedded(), policy=policy)
    assert attach(k, "fx", "fexit", "cmdline_proc_show") == 0
    key = tr_of(k, "cmdline_proc_show").key
    sym = f"bpf_trampoline_{key}" + ("" if policy == "linux-6.1" else "_0")
    assert views.enabled_functions(k) == f"{line}\n\tdirect-->{sym}+0x0/0x1000\n"


# ---------------------------------------------------------------------------------------------
# live patch first, then a trampoline
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_live_patch_then_fexit(policy, monkeypatch):
    k = kernel(policy)
    lp, ret = standin_live_patch(k, "fa")
    assert ret == 0
    registered = spy(k, "register_fentry")
    before = state(k)
    ret = attach(k, "fx", "fexit")
    if policy == "linux-5.18":
        # trampoline.c: register_fentry -> ftrace.c: register_ftrace_direct -> ftrace_startup of
        # direct_ops -> __ftrace_hash_update_ipmodify: a second IPMODIFY on the record
        assert ret == EBUSY and registered == [EBUSY]
        assert state(k) == before and bpf.bpf_trampoline_of(k, "fa") is None
        t = call(k, "fa")
        assert t.body == PATCHED and t.programs == []
        return
    assert ret == 0
    # first registration -EAGAIN (v2: rule #4 in __ftrace_hash_update_ipmodify; 6.1: SELF in
    # bpf_tramp_ftrace_ops_func), then the retry of bpf_trampoline_update succeeds
    assert registered == [EAGAIN, 0]
    tr = tr_of(k, "fa")
    assert image_flags(k) & T.ORIG_STACK and image_flags(k) & T.CALL_ORIG
    assert (tr.fops.func, tr.fops.trampoline) == ("call_direct_funcs", "ftrace_regs_caller")
    if policy == "seed-v2":
        assert tr.indirect_call and tr.fops.flags & F.SHARE_IPMODIFY  # trampoline.c (5/5)
    else:
        # the sharing state is BPF-private (bpf.h: BPF_TRAMP_F_SHARE_IPMODIFY in tr->flags)
        assert tr.flags & T.SHARE_IPMODIFY and tr.flags & T.ORIG_STACK
        assert image_flags(k) & T.SHARE_IPMODIFY  # tr->flags is what the JIT was given
        assert not tr.fops.flags & F.SHARE_IPMODIFY
    rec = k.rec_by_name("fa")
    assert rec.count == 2 and rec.flags & R.IPMODIFY and rec.flags & R.DIRECT and not rec.flags & R.DIRECT_EN
    # call path (ftrace_64.S + jit): list func -> klp sets regs->ip, BPF sets orig_ax -> image,
    # ORIG_STACK calls [rbp+8] = the patched body, fexit sees its value
    t = call(k, "fa")
    assert t.details("site") == ["call ftrace_regs_caller"]
    assert t.details("orig_call") == [f"[rbp+8] {PATCHED}"]
    assert t.body == PATCHED and t.programs == ["fx"] and t.retval == STANDIN_RET
    assert t.details("bpf_prog") == [f"fexit fx sees {STANDIN_RET}"]
    assert k.warnings == [] and k.locks == {}


@pytest.mark.parametrize("policy,expect", [
    ("linux-5.18", (EBUSY, None)),
    # v2: the -EAGAIN retry sets indirect_call, so ORIG_STACK is added even without CALL_ORIG
    ("seed-v2", (0, T.RESTORE_REGS | T.ORIG_STACK)),
    # 6.1: SELF answers 0 without setting SHARE when the image does not call the original
    ("linux-6.1", (0, T.RESTORE_REGS)),
])
def test_live_patch_then_fentry_only(policy, expect, monkeypatch):
    k = kernel(policy)
    standin_live_patch(k, "fa")
    registered = spy(k, "register_fentry")
    ret = attach(k, "en", "fentry")
    assert (ret, image_flags(k) if ret == 0 else None) == expect
    if policy == "linux-6.1":
        assert registered == [0]  # trampoline.c: bpf_tramp_ftrace_ops_func(SELF) returned 0
        assert tr_of(k, "fa").flags == T.RESTORE_REGS  # no SHARE_IPMODIFY
    if ret == 0:
        # a fentry-only image returns into [rbp+8]: the patched body runs in both versions
        t = call(k, "fa")
        assert t.programs == ["en"] and "orig_call" not in t.kinds()
        assert t.details("return")[-1] == f"into {PATCHED}" and t.body == PATCHED
    assert k.warnings == [] and k.locks == {}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("fmod_ret", [-1, 0])
def test_live_patch_then_fmod_ret(policy, fmod_ret):
    k = kernel(policy)
    standin_live_patch(k, "security_task_getsid")
    ret = attach(k, "m", "fmod_ret", "security_task_getsid", ret=fmod_ret)
    if policy == "linux-5.18":
        assert ret == EBUSY  # ftrace.c: __ftrace_hash_update_ipmodify via register_ftrace_direct
        return
    assert ret == 0
    assert image_flags(k, "security_task_getsid") & T.ORIG_STACK
    t = call(k, "security_task_getsid", orig_ret=4)
    assert t.programs == ["m"]
    if fmod_ret:  # jit: invoke_bpf_mod_ret, a non-zero value skips the (patched) original
        assert t.body is None and t.retval == fmod_ret
    else:
        assert t.body == "standin_new_security_task_getsid" and t.retval == STANDIN_RET


@pytest.mark.parametrize("policy", POLICIES)
def test_a_live_patched_function_refuses_a_5_18_trampoline_also_through_a_live_direct_ops(policy):
    # 5.18: direct_ops is already live for fb, so register_ftrace_direct's ftrace_set_filter_ip
    # runs ftrace_hash_ipmodify_update for fa (ftrace.c: ftrace_hash_move) and fails there.
    k = kernel(policy)
    assert attach(k, "b", "fexit", "fb") == 0
    standin_live_patch(k, "fa")
    before = state(k)
    ret = attach(k, "a", "fexit", "fa")
    assert ret == (EBUSY if policy == "linux-5.18" else 0)
    if ret:
        assert state(k) == before
    assert k.locks == {} and k.warnings == []


# ---------------------------------------------------------------------------------------------
# a trampoline first, then a live patch
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy,expect", [
    ("linux-5.18", (EBUSY, [])),                      # no ops_func; the record bit refuses it
    ("seed-v2", (0, [(0, ("direct_mutex",))])),       # ENABLE from prepare_direct_functions_for_ipmodify
    ("linux-6.1", (0, [(int(PEER), ("direct_mutex",))])),  # PEER, direct_mutex held, tr->mutex free
])
def test_fexit_then_live_patch(policy, expect):
    k = kernel(policy)
    assert attach(k, "fx", "fexit") == 0
    tr = tr_of(k, "fa")
    seen = record_ops_func(k, tr) if tr.fops is not None else []
    first = tr.cur_image.addr
    before = state(k)
    lp, ret = standin_live_patch(k, "fa")
    assert (ret, seen) == expect
    if policy == "linux-5.18":
        # ftrace.c: __ftrace_hash_update_ipmodify (5.18) rolls back and refuses the live patch
        assert state(k) == before
        t = call(k, "fa", orig_ret=3)
        assert t.body == "fa" and t.programs == ["fx"] and t.details("orig_call") == ["func+5 fa"]
        return
    assert tr.cur_image.addr != first and image_flags(k) & T.ORIG_STACK  # rebuilt, lock_direct_mutex=false
    t = call(k, "fa")
    assert t.details("orig_call") == [f"[rbp+8] {PATCHED}"]
    assert t.body == PATCHED and t.details("bpf_prog") == [f"fexit fx sees {STANDIN_RET}"]
    assert k.warnings == [] and k.locks == {}


def test_6_1_fentry_then_live_patch_peer_sets_share_without_a_rebuild():
    k = kernel("linux-6.1")
    assert attach(k, "en", "fentry") == 0
    tr = tr_of(k, "fa")
    image = tr.cur_image
    assert standin_live_patch(k, "fa")[1] == 0
    # trampoline.c: bpf_tramp_ftrace_ops_func(PEER): SHARE set, no CALL_ORIG -> no update
    assert tr.flags == T.RESTORE_REGS | T.SHARE_IPMODIFY and tr.cur_image is image
    # a later fexit keeps SHARE (bpf_trampoline_update) and so gets ORIG_STACK at once
    assert attach(k, "fx", "fexit") == 0
    assert image_flags(k) == T.CALL_ORIG | T.SKIP_FRAME | T.ORIG_STACK | T.SHARE_IPMODIFY
    assert tr.fops.func == "call_direct_funcs"
    t = call(k, "fa")
    assert t.body == PATCHED and t.programs == ["en", "fx"] and k.warnings == []


# ---------------------------------------------------------------------------------------------
# the live patch goes while the trampoline stays
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["seed-v2", "linux-6.1"])
def test_live_patch_removed_while_the_trampoline_stays(policy):
    k = kernel(policy)
    assert attach(k, "fx", "fexit") == 0
    lp, _ = standin_live_patch(k, "fa")
    tr = tr_of(k, "fa")
    shared = tr.cur_image
    seen = record_ops_func(k, tr)
    assert ftrace.unregister_ftrace_function(k, lp) == 0
    if policy == "seed-v2":
        # v2 ftrace never sends DISABLE: indirect_call and ORIG_STACK stick (trampoline.c 5/5)
        assert seen == [] and tr.cur_image is shared and tr.indirect_call
        orig_call = "[rbp+8] fa"  # harmless: called directly, [rbp+8] is func+5
    else:
        # ftrace.c: cleanup_direct_functions_after_ipmodify -> DISABLE_PEER (direct_mutex held);
        # trampoline.c: SHARE cleared, ORIG_STACK was set -> rebuilt without it
        assert seen == [(int(DISABLE_PEER), ("direct_mutex",))]
        assert tr.cur_image is not shared and image_flags(k) == T.CALL_ORIG | T.SKIP_FRAME
        assert tr.flags == T.CALL_ORIG | T.SKIP_FRAME
        orig_call = "func+5 fa"
    t = call(k, "fa", orig_ret=2)
    assert t.details("site")[0].endswith("(direct)") and t.details("orig_call") == [orig_call]
    assert t.body == "fa" and t.retval == 2 and k.warnings == [] and k.locks == {}


def test_6_1_disable_peer_trylock_failure_is_ignored_and_share_stays(monkeypatch):
    k = kernel("linux-6.1")
    assert attach(k, "fx", "fexit") == 0
    lp, _ = standin_live_patch(k, "fa")
    tr = tr_of(k, "fa")
    image = tr.cur_image
    slept: list[int] = []
    monkeypatch.setattr(merged, "msleep", lambda k2, ms: slept.append(ms))
    other_task_holds(k, tr.mutex)
    # ftrace.c: cleanup_direct_functions_after_ipmodify ignores the -EAGAIN of DISABLE_PEER
    assert ftrace.unregister_ftrace_function(k, lp) == 0
    assert slept == [1] and k.locks == {tr.mutex: "other"}
    assert tr.flags & T.SHARE_IPMODIFY and tr.cur_image is image and image.flags & T.ORIG_STACK
    other_task_releases(k, tr.mutex)
    assert call(k, "fa", orig_ret=5).body == "fa"  # [rbp+8] = func+5: still the original


# ---------------------------------------------------------------------------------------------
# the trylock in the callback
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy,expect", [
    ("linux-5.18", (EBUSY, None)),      # no callback at all: the record bit refuses it
    ("seed-v2", (EAGAIN, None)),        # trampoline.c (5/5): trylock fails -> -EAGAIN, no sleep
    ("linux-6.1", (EAGAIN, [1])),       # trampoline.c (6.1): trylock fails -> msleep(1), -EAGAIN
])
def test_tr_mutex_busy_when_the_live_patch_registers(policy, expect, monkeypatch):
    k = kernel(policy)
    assert attach(k, "fx", "fexit") == 0
    tr = tr_of(k, "fa")
    slept: list[int] | None = None
    if policy == "linux-6.1":
        slept = []
        monkeypatch.setattr(merged, "msleep", lambda k2, ms: slept.append(ms))
    other_task_holds(k, tr.mutex)  # another task is in the middle of an attach on this trampoline
    before = state(k)
    lp, ret = standin_live_patch(k, "fa")
    assert (ret, slept) == expect
    assert state(k) == before  # refused: nothing changed (direct_mutex released again)
    other_task_releases(k, tr.mutex)
    if policy != "linux-5.18":  # the live patch retries (kpatch does) and now succeeds
        assert ftrace.register_ftrace_function(k, lp) == 0
        assert image_flags(k) & T.ORIG_STACK and call(k, "fa").body == PATCHED
    assert k.locks == {}


# ---------------------------------------------------------------------------------------------
# 6.1.192: SELF on the modify path (3e9a18e1c3e9) without 56b3c85e153b
# ---------------------------------------------------------------------------------------------
def test_6_1_self_is_asked_on_register_and_on_modify_with_the_locks_of_facts_6():
    k = kernel("linux-6.1")
    standin_live_patch(k, "fa")
    tr = bpf.bpf_trampoline_get(k, bpf.bpf_trampoline_compute_key(1, bpf.btf_id_of(k, k.cat.lookup("fa"))),
                                k.cat.lookup("fa"))
    seen = record_ops_func(k, tr)
    assert attach(k, "en", "fentry") == 0
    # register path: tr->mutex (link_prog), direct_mutex (register_ftrace_direct_multi),
    # ftrace_lock (ftrace_startup)
    assert seen == [(int(SELF), ("direct_mutex", "ftrace_lock", tr.mutex))]
    seen.clear()
    assert attach(k, "fx", "fexit") == 0
    # modify path (__modify_ftrace_direct_multi, update_target): tr->mutex + direct_mutex;
    # SELF -EAGAIN (CALL_ORIG without ORIG_STACK) then 0 after the rebuild
    assert seen == [(int(SELF), ("direct_mutex", tr.mutex))] * 2
    bpf.bpf_trampoline_put(k, tr)


def test_6_1_live_patch_fentry_fexit_clears_fops_func_on_a_live_ops_and_the_next_call_kills_ftrace(
        monkeypatch):
    # trampoline.c (6.1.192): bpf_trampoline_update resets fops->func / fops->trampoline on every
    # -EAGAIN; since the update_target backport that -EAGAIN also comes from modify_fentry, where
    # the fops stays registered and nothing sets func again.
    k = kernel("linux-6.1")
    lp, _ = standin_live_patch(k, "fa")
    assert attach(k, "en", "fentry") == 0  # SELF: 0, no SHARE
    modified = spy(k, "modify_fentry")
    assert attach(k, "fx", "fexit") == 0
    assert modified == [EAGAIN, 0]
    tr = tr_of(k, "fa")
    assert tr.fops.flags & F.ENABLED and tr.fops in k.ftrace_ops_list
    assert (tr.fops.func, tr.fops.trampoline) == (None, 0)
    assert image_flags(k) == T.CALL_ORIG | T.SKIP_FRAME | T.ORIG_STACK | T.SHARE_IPMODIFY
    assert k.warnings == []
    # ftrace.c: __ftrace_ops_list_func meets tr->fops first (head of the list):
    # FTRACE_WARN_ON(!op->func) kills ftrace and ends the walk before the live patch's handler
    t = call(k, "fa", orig_ret=1)
    assert [w.where for w in t.warnings] == ["__ftrace_ops_list_func"] and k.ftrace_disabled
    assert t.programs == [] and t.body == "fa" and t.retval == 1
    # With ftrace dead every unregistration fails (ftrace.c: ftrace_shutdown, -ENODEV): closing
    # the links still succeeds (syscall.c: bpf_tracing_link_release only WARNs, as the real
    # kernel shows), the last put frees the trampoline while its fops stays listed
    # (trampoline.c: bpf_trampoline_put -> ftrace_free_filter, which checks nothing in 6.1) ...
    assert detach(k, "fx", "fexit") == 0 and detach(k, "en", "fentry") == 0
    assert bpf.bpf_trampoline_of(k, "fa") is None and tr.fops in k.ftrace_ops_list
    assert [w.where for w in k.warnings][1:] == ["bpf_tracing_link_release"]
    # ... and removing the live patch sends DISABLE_PEER to that stale fops (ftrace.c:
    # cleanup_direct_functions_after_ipmodify): the freed trampoline still says ORIG_STACK, its
    # update finds no programs and dereferences the NULL tr->cur_image.
    with pytest.raises(KernelOops):
        ftrace.unregister_ftrace_function(k, lp)


def test_6_1_the_same_sequence_without_a_call_in_between_detaches_cleanly():
    # unregister_ftrace_direct_multi sets fops->func = NULL anyway: nothing is left behind
    k = kernel("linux-6.1")
    lp, _ = standin_live_patch(k, "fa")
    assert attach(k, "en", "fentry") == 0 and attach(k, "fx", "fexit") == 0
    assert detach(k, "fx", "fexit") == 0 and detach(k, "en", "fentry") == 0
    assert ftrace.unregister_ftrace_function(k, lp) == 0
    assert k.recs == {} and k.ftrace_ops_list == [] and k.warnings == [] and k.locks == {}


@pytest.mark.parametrize("policy", ["seed-v2", "linux-6.1"])
def test_the_same_programs_in_the_other_order_share_cleanly(policy):
    # fentry before the live patch: PEER (6.1) / ENABLE (v2) sets the sharing state first, so
    # the later fexit needs no retry.
    k = kernel(policy)
    assert attach(k, "en", "fentry") == 0
    standin_live_patch(k, "fa")
    assert attach(k, "fx", "fexit") == 0
    assert tr_of(k, "fa").fops.func == "call_direct_funcs"
    t = call(k, "fa")
    assert t.programs == ["en", "fx"] and t.body == PATCHED and k.warnings == []


def test_seed_v2_live_patch_fentry_fexit_has_no_modify_check_and_shares_cleanly():
    k = kernel("seed-v2")
    standin_live_patch(k, "fa")
    assert attach(k, "en", "fentry") == 0  # the -EAGAIN retry sets indirect_call
    assert attach(k, "fx", "fexit") == 0   # modify_ftrace_direct_multi: no IPMODIFY check in v2
    tr = tr_of(k, "fa")
    assert tr.fops.func == "call_direct_funcs" and image_flags(k) & T.ORIG_STACK
    t = call(k, "fa")
    assert t.programs == ["en", "fx"] and t.body == PATCHED and k.warnings == []


def test_6_1_self_with_share_already_set_and_no_orig_stack_warns_and_is_ebusy():
    # Crafted state (SHARE without ORIG_STACK on a CALL_ORIG image); the WARN_ON_ONCE guard.
    k = kernel("linux-6.1")
    assert attach(k, "fx", "fexit") == 0
    tr = tr_of(k, "fa")
    tr.flags |= T.SHARE_IPMODIFY
    assert tr.fops.ops_func(tr.fops, SELF) == EBUSY
    assert [w.where for w in k.warnings] == ["bpf_tramp_ftrace_ops_func"]


def test_6_1_unknown_command_is_einval_and_releases_tr_mutex():
    k = kernel("linux-6.1")
    assert attach(k, "fx", "fexit") == 0
    tr = tr_of(k, "fa")
    before = state(k)
    assert tr.fops.ops_func(tr.fops, 7) == -Errno.EINVAL
    assert state(k) == before and k.locks == {}


def test_6_1_an_endless_eagain_is_a_model_error_not_a_hang():
    k = kernel("linux-6.1")
    overlay(k, register_fentry=lambda k2, tr, addr: EAGAIN)
    with pytest.raises(ModelError, match="would never end"):
        attach(k, "fx", "fexit")


def test_6_1_a_failed_update_restores_tr_flags():
    k = kernel("linux-6.1")
    standin_live_patch(k, "fa")
    assert attach(k, "en", "fentry") == 0
    tr = tr_of(k, "fa")
    before = state(k)
    overlay(k, modify_fentry=lambda *a: EBUSY)
    assert attach(k, "fx", "fexit") == EBUSY
    assert tr.flags == T.RESTORE_REGS and state(k) == before and k.locks == {}


# ---------------------------------------------------------------------------------------------
# detach orders with a live patch present
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["seed-v2", "linux-6.1"])
@pytest.mark.parametrize("detach_order", list(itertools.permutations(["fx", "en", "mr"])),
                         ids="-".join)
def test_detach_orders_under_a_live_patch(policy, detach_order):
    kinds = {"fx": "fexit", "en": "fentry", "mr": "fmod_ret"}
    k = kernel(policy)
    target = "security_task_getsid"
    standin_live_patch(k, target)
    for name in ("fx", "en", "mr"):  # fexit first: the sharing state is set on registration
        assert attach(k, name, kinds[name], target) == 0
    left = {"fx", "en", "mr"}
    for name in detach_order:
        assert detach(k, name, kinds[name], target) == 0
        left.discard(name)
        t = call(k, target)
        assert t.body == f"standin_new_{target}"  # the live patch runs at every step
        assert sorted(t.programs) == sorted(left)
        if left:
            calls_orig = left & {"fx", "mr"}
            # v2: ORIG_STACK whenever indirect_call; 6.1: only with CALL_ORIG (SHARE kept)
            assert bool(image_flags(k, target) & T.ORIG_STACK) == (policy == "seed-v2" or bool(calls_orig))
    assert bpf.bpf_trampoline_of(k, target) is None
    rec = k.rec_by_name(target)
    assert rec.count == 1 and rec.flags & R.IPMODIFY and not rec.flags & R.DIRECT
    assert [o.name for o in k.ftrace_ops_list] == ["standin_klp"]
    assert k.warnings == [] and k.locks == {} and k.direct_functions == {}


# ---------------------------------------------------------------------------------------------
# error paths of register_fentry
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy,expect", [
    ("linux-5.18", (EBUSY, None)),       # register_ftrace_direct: the ip already has a direct call
    ("seed-v2", (EBUSY, frozenset())),   # register_fentry (5/5): ip removed from the filter again
    ("linux-6.1", (EBUSY, {"fa"})),      # register_fentry (6.1): reset=1 next time, no removal
])
def test_register_fentry_failure_and_the_fops_filter(policy, expect):
    k = kernel(policy)
    ip = k.cat.lookup("fa")
    if policy == "linux-5.18":
        assert linux_5_18.register_ftrace_direct(k, ip, "sample_tramp") == 0
    else:
        sample = ftrace_ops("sample")
        ftrace.ftrace_set_filter_ip(k, sample, ip)
        assert direct.register_ftrace_direct_multi(k, sample, "sample_tramp") == 0
    tr = bpf.bpf_trampoline_get(k, bpf.bpf_trampoline_compute_key(1, bpf.btf_id_of(k, ip)), ip)
    ret = k.policy.register_fentry(k, tr, "an_image")
    filt = None if tr.fops is None else {k.cat.name_of_ip(i) for i in tr.fops.hash.filter_hash or ()}
    assert (ret, filt) == expect
    if tr.fops is not None:
        assert tr.fops.func is None  # the -EBUSY comes before func is set
    bpf.bpf_trampoline_put(k, tr)
    assert k.locks == {}


def _no_direct_calls_arch() -> ArchProfile:
    # an x86_64-like kernel with a trampoline JIT but without DYNAMIC_FTRACE_WITH_DIRECT_CALLS
    return ArchProfile("jit-without-direct-calls", True, True, False, True, True, True, True, 5)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_trampoline_jit_without_direct_calls(policy):
    k = kernel(policy, _no_direct_calls_arch())
    if policy == "seed-v2":
        # register_fentry (5/5): tr->fops is NULL and goes to ftrace_set_filter_ip
        with pytest.raises(KernelOops):
            attach(k, "fx", "fexit")
        assert any(e.kind == "BUG" for e in k.events)
        return
    before = state(k)
    ret = attach(k, "fx", "fexit")
    # 5.18: register_ftrace_direct is the ftrace.h stub; 6.1: register_fentry, no fops
    assert ret == (-Errno.ENODEV if policy == "linux-5.18" else -Errno.ENOTSUPP)
    assert state(k) == before and k.locks == {}


# ---------------------------------------------------------------------------------------------
# copies
# ---------------------------------------------------------------------------------------------
def test_6_1_copy_reaches_its_own_trampoline_through_ops_private():
    k = kernel("linux-6.1")
    assert attach(k, "fx", "fexit") == 0
    k2 = k.copy()
    tr, tr2 = tr_of(k, "fa"), tr_of(k2, "fa")
    assert tr2.kernel is k2 and tr2.fops.private is tr2 and tr2.fops in k2.ftrace_ops_list
    standin_live_patch(k2, "fa")  # PEER reaches the copy's trampoline only
    assert tr2.flags & T.SHARE_IPMODIFY and not tr.flags & T.SHARE_IPMODIFY
    assert k.locks == {} and k2.locks == {}


# ---------------------------------------------------------------------------------------------
# the three policies differ exactly where facts §4.6 and §5 say
# ---------------------------------------------------------------------------------------------
def _flags_names(f: int) -> str:
    return "|".join(x.name or "" for x in T if int(f) & x.value)


def _outcome_fexit_alone(k: Kernel) -> tuple:
    r = attach(k, "fx", "fexit")
    t = call(k, "fa", orig_ret=3)
    return r, _flags_names(image_flags(k)), t.body, tuple(t.details("bpf_prog"))


def _outcome_fmod_ret_alone(k: Kernel) -> tuple:
    r = attach(k, "m", "fmod_ret", "security_task_getsid", ret=-1)
    t = call(k, "security_task_getsid")
    return r, t.body, t.retval, tuple(t.programs)


def _outcome_lp_then_fexit(k: Kernel) -> tuple:
    standin_live_patch(k, "fa")
    r = attach(k, "fx", "fexit")
    t = call(k, "fa")
    return r, bool(r == 0 and image_flags(k) & T.ORIG_STACK), t.body, tuple(t.programs)


def _outcome_fexit_then_lp(k: Kernel) -> tuple:
    attach(k, "fx", "fexit")
    r = standin_live_patch(k, "fa")[1]
    t = call(k, "fa")
    return r, bool(image_flags(k) & T.ORIG_STACK), t.body, tuple(t.programs)


def _outcome_lp_then_fentry(k: Kernel) -> tuple:
    standin_live_patch(k, "fa")
    r = attach(k, "en", "fentry")
    return r, (_flags_names(image_flags(k)) if r == 0 else None), call(k, "fa").body


def _outcome_lp_removed(k: Kernel) -> tuple:
    attach(k, "fx", "fexit")
    lp, r = standin_live_patch(k, "fa")
    if r == 0:
        ftrace.unregister_ftrace_function(k, lp)
    return r, bool(image_flags(k) & T.ORIG_STACK)


def _outcome_where_sharing_lives(k: Kernel) -> tuple:
    attach(k, "fx", "fexit")
    r = standin_live_patch(k, "fa")[1]
    tr = tr_of(k, "fa")
    fops_bit = bool(tr.fops is not None and tr.fops.flags & F.SHARE_IPMODIFY)
    return r, fops_bit, bool(tr.flags & T.SHARE_IPMODIFY), tr.indirect_call


def _outcome_trylock_busy(k: Kernel) -> tuple:
    attach(k, "fx", "fexit")
    other_task_holds(k, tr_of(k, "fa").mutex)
    slept: list[int] = []
    code = getattr(k.policy.bpf_tramp_ftrace_ops_func, "__code__", None)  # 5.18 has no ops_func at all
    if code is not None and "msleep" in code.co_names:
        real = merged.msleep
        merged.msleep = lambda k2, ms: slept.append(ms)  # type: ignore[assignment]
        try:
            r = standin_live_patch(k, "fa")[1]
        finally:
            merged.msleep = real  # type: ignore[assignment]
    else:
        r = standin_live_patch(k, "fa")[1]
    return r, tuple(slept)


def _outcome_image_name(k: Kernel) -> tuple:
    attach(k, "en", "fentry")
    key = tr_of(k, "fa").key
    return (tr_of(k, "fa").cur_image.addr.replace(str(key), "<key>"),)


def _outcome_lp_fentry_fexit(k: Kernel) -> tuple:
    standin_live_patch(k, "fa")
    r1, r2 = attach(k, "en", "fentry"), attach(k, "fx", "fexit")
    t = call(k, "fa")
    return r1, r2, t.body, tuple(t.programs), len(t.warnings)


def _outcome_register_failure_filter(k: Kernel) -> tuple:
    ip = k.cat.lookup("fa")
    tr = bpf.bpf_trampoline_get(k, bpf.bpf_trampoline_compute_key(1, bpf.btf_id_of(k, ip)), ip)
    if tr.fops is None:
        return (None,)
    sample = ftrace_ops("sample")
    ftrace.ftrace_set_filter_ip(k, sample, ip)
    direct.register_ftrace_direct_multi(k, sample, "sample_tramp")
    k.policy.register_fentry(k, tr, "img")
    return (bool(tr.fops.hash.filter_hash and tr.fops.hash.filter_hash.count),)


#: scenario -> (outcome function, the partition of the policies into classes of equal outcome,
#: the facts row that says so)
DIFFERENCES: dict[str, tuple[Callable[[Kernel], tuple], list[set[str]], str]] = {
    "fexit alone": (_outcome_fexit_alone, [{"linux-5.18", "seed-v2", "linux-6.1"}], "§7.4"),
    "fmod_ret alone": (_outcome_fmod_ret_alone, [{"linux-5.18", "seed-v2", "linux-6.1"}], "§7.4"),
    "live patch, then fexit": (_outcome_lp_then_fexit, [{"linux-5.18"}, {"seed-v2", "linux-6.1"}],
                               "§5; §4.6 IPMODIFY first"),
    "fexit, then live patch": (_outcome_fexit_then_lp, [{"linux-5.18"}, {"seed-v2", "linux-6.1"}],
                               "§5; §4.6 DIRECT first"),
    "live patch, then fentry only": (_outcome_lp_then_fentry, [{"linux-5.18"}, {"seed-v2"}, {"linux-6.1"}],
                                     "§4.6 ORIG_STACK condition"),
    "live patch removed": (_outcome_lp_removed, [{"linux-5.18"}, {"seed-v2"}, {"linux-6.1"}],
                           "§4.6 IPMODIFY ops removed / BPF state"),
    "where the sharing state lives": (_outcome_where_sharing_lives, [{"linux-5.18"}, {"seed-v2"}, {"linux-6.1"}],
                                      "§4.6 sharing state"),
    "tr->mutex busy": (_outcome_trylock_busy, [{"linux-5.18"}, {"seed-v2"}, {"linux-6.1"}],
                       "§4.6 trylock failure"),
    "image name": (_outcome_image_name, [{"linux-5.18", "seed-v2"}, {"linux-6.1"}], "§9.1 (selector)"),
    "live patch, fentry, fexit": (_outcome_lp_fentry_fexit, [{"linux-5.18"}, {"seed-v2"}, {"linux-6.1"}],
                                  "§4.6 -EAGAIN retry guard / modify path"),
    "failed register_fentry": (_outcome_register_failure_filter, [{"linux-5.18"}, {"seed-v2"}, {"linux-6.1"}],
                               "§4.6 filter in register_fentry"),
}


@pytest.mark.parametrize("scenario", list(DIFFERENCES))
def test_the_three_policies_differ_exactly_where_the_facts_say(scenario):
    fn, partition, _row = DIFFERENCES[scenario]
    outcomes = {p: fn(kernel(p)) for p in POLICIES}
    got: list[set[str]] = []
    for p in POLICIES:
        for cls in got:
            if outcomes[next(iter(cls))] == outcomes[p]:
                cls.add(p)
                break
        else:
            got.append({p})
    assert sorted(map(sorted, got)) == sorted(map(sorted, partition)), outcomes
