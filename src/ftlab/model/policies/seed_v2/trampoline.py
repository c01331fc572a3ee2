"""Seed v2's kernel/bpf/trampoline.c (with the series' 5/5) and include/linux/bpf.h (with 4/5).

The BPF trampoline of bpf-next in June 2022 with v2 4/5 and 5/5 applied: every trampoline gets
its own direct ftrace_ops (tr->fops, ops_func = bpf_tramp_ftrace_ops_func) and the
``indirect_call`` retry. What every version shares is in :mod:`ftlab.model.bpf_trampoline`.

1. First image: register_fentry (ip into tr->fops' filter, register_ftrace_direct_multi);
   later images: modify_fentry (modify_ftrace_direct_multi, or the _nolock twin when the
   caller already holds direct_mutex); no programs left: unregister_fentry.
2. IPMODIFY first (a live patch): the registration gets -EAGAIN from the seed's
   __ftrace_hash_update_ipmodify (#4); on the *first* registration only, the trampoline sets
   indirect_call, resets fops->func / fops->trampoline and JITs again with ORIG_STACK; fops
   gets FTRACE_OPS_FL_SHARE_IPMODIFY (#5) and the retry succeeds. Two WARN_ON_ONCE guards
   give up instead if indirect_call was already set or an image already exists.
3. DIRECT first: prepare_direct_functions_for_ipmodify calls bpf_tramp_ftrace_ops_func(ENABLE)
   with direct_mutex held; it *trylocks* tr->mutex (-EAGAIN when busy), sets indirect_call
   and rebuilds with lock_direct_mutex=false.
4. indirect_call is never cleared by v2 ftrace (DISABLE is never sent): it sticks for the
   life of the trampoline object, also after the live patch is gone; ORIG_STACK is added
   whenever it is set, also to a fentry-only image (where the JIT ignores it).

What seed v2 shares with 6.1 (bpf_trampoline_lookup_fops, modify_fentry, unregister_fentry) is
in :mod:`..shared`.
"""

from __future__ import annotations

import enum

from ....errors import KernelOops
from ... import bpf_trampoline as bt
from ... import direct
from ...errno import Errno
from ...flags import OPSF, ftrace_ops_cmd
from ...ftrace import ftrace_location, ftrace_set_filter_ip
from ...kernel import Kernel
from ...locks import mutex_trylock, mutex_unlock
from ...ops import Addr, ftrace_ops
from ..shared import bpf_tramp_image_alloc

F = OPSF


class BPF_TRAMP_F(enum.IntFlag):
    """BPF_TRAMP_F_* (include/linux/bpf.h, bpf-next June 2022 with v2 4/5): ORIG_STACK is new."""

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4
    ORIG_STACK = 1 << 5  # 4/5


def bpf_trampoline_put_fops(k: Kernel, tr: bt.bpf_trampoline) -> None:
    """bpf_trampoline_put() (trampoline.c), seed v2 5/5: ``kfree(tr->fops)``, its filter not freed first.

    Nothing to do in the model: tr and its fops become unreachable with the table entry (a fops
    left on ftrace_ops_list by a failed unregistration keeps pointing at them, as freed memory
    keeps its contents).
    """


def register_fentry(k: Kernel, tr: bt.bpf_trampoline, new_addr: Addr) -> int:
    """register_fentry() (trampoline.c), seed v2 5/5: filter ip (reset=0), direct_multi, undo on failure.

    With no fops (no DIRECT_CALLS, an arch with a trampoline JIT: none in the v2 era) the code
    passes tr->fops = NULL to ftrace_set_filter_ip, a NULL pointer dereference (6.1 returns
    -ENOTSUPP there instead).
    """
    ip = tr.func_addr
    if ftrace_location(k, ip):
        tr.ftrace_managed = True
    if bt.bpf_trampoline_module_get(k, tr):
        return -Errno.ENOENT
    if tr.ftrace_managed:
        if tr.fops is None:
            k.log("BUG", "register_fentry", "kernel NULL pointer dereference (tr->fops is NULL)")
            raise KernelOops("register_fentry passed a NULL tr->fops to ftrace_set_filter_ip")
        ftrace_set_filter_ip(k, tr.fops, ip, False, False)
        ret = direct.register_ftrace_direct_multi(k, tr.fops, new_addr)
        if ret:
            ftrace_set_filter_ip(k, tr.fops, ip, True, False)
    else:
        ret = bt.bpf_arch_text_poke(k, tr, None, new_addr)
    if ret:
        bt.bpf_trampoline_module_put(k, tr)
    return ret


def bpf_trampoline_update(k: Kernel, tr: bt.bpf_trampoline, lock_direct_mutex: bool) -> int:
    """bpf_trampoline_update() (trampoline.c), seed v2 5/5: rebuild the image and (re)attach it.

    Caller holds tr->mutex. No programs: unregister_fentry, drop the image, selector = 0.
    Otherwise JIT a new image (flags per the programs, ORIG_STACK if indirect_call) and register
    it (first image) or modify to it. -EAGAIN from the registration: WARN_ON_ONCE and give up if
    indirect_call is already set or an image already exists; else set indirect_call, reset
    fops->func and fops->trampoline and JIT again into the same image (``again:``). A failed
    update leaks the image it allocated (not modelled: the image is simply dropped).
    """
    tlinks, total, ip_arg = bt.bpf_trampoline_get_progs(tr)
    if total == 0:
        err = bt.update_without_progs(k, tr)
        tr.selector = 0
        return err

    im = bpf_tramp_image_alloc(k, tr)
    flags = bt.prog_flags(BPF_TRAMP_F, tlinks, ip_arg)

    while True:  # again:
        if tr.indirect_call:
            flags |= BPF_TRAMP_F.ORIG_STACK
        err, im = bt.arch_prepare_bpf_trampoline(k, im, flags, tlinks, tr)
        if err < 0:
            return err
        if tr.indirect_call:
            assert tr.fops is not None  # indirect_call is only ever set through the fops
            tr.fops.flags |= F.SHARE_IPMODIFY
        bt.check_selector(k, tr)
        err = bt.attach_image(k, tr, im, lock_direct_mutex)
        if err == -Errno.EAGAIN:
            if tr.indirect_call:
                k.warn("bpf_trampoline_update", "-EAGAIN with tr->indirect_call already set", once=True)
                return err
            if tr.cur_image is not None:  # the retry is for a first registration only
                k.warn("bpf_trampoline_update", "-EAGAIN with tr->cur_image set", once=True)
                return err
            assert tr.fops is not None  # -EAGAIN comes only from the fops' registration
            tr.indirect_call = True
            tr.fops.func = None
            tr.fops.trampoline = 0
            continue
        break
    if err:
        return err
    bt.install_image(k, tr, im)
    tr.selector += 1
    return 0


def bpf_tramp_ftrace_ops_func(ops: ftrace_ops, cmd: int) -> int:
    """bpf_tramp_ftrace_ops_func() (trampoline.c), new in seed v2 5/5: tr->fops' ops_func.

    ftrace calls it from prepare_direct_functions_for_ipmodify while holding direct_mutex. The
    documented lock order is tr->mutex -> direct_mutex -> ftrace_lock, and a BPF attach or
    detach on this trampoline holds tr->mutex while it waits for direct_mutex; blocking on
    tr->mutex here could therefore deadlock (ABBA), so it only trylocks and returns -EAGAIN
    when the mutex is busy (no sleep in v2; the live patch registration fails and must be
    retried). For the same reason the rebuild passes lock_direct_mutex = false (direct_mutex
    is already held). ENABLE sets indirect_call and rebuilds; DISABLE (never sent by v2
    ftrace) clears indirect_call and SHARE_IPMODIFY and rebuilds; any other command is -EINVAL.
    """
    tr: bt.bpf_trampoline = ops.private
    k = tr.kernel
    if not mutex_trylock(k, tr.mutex):
        return -Errno.EAGAIN
    if cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY:
        tr.indirect_call = True
        ret = k.policy.bpf_trampoline_update(k, tr, False)
    elif cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY:
        tr.indirect_call = False
        ops.flags &= ~F.SHARE_IPMODIFY  # tr->fops->flags
        ret = k.policy.bpf_trampoline_update(k, tr, False)
    else:
        ret = -Errno.EINVAL
    mutex_unlock(k, tr.mutex)
    return ret
