"""Policy ``seed-v2``: Song Liu's "ftrace: host klp and bpf trampoline together", v2 (2 Jun 2022).

The seed is patch 3/5 ("ftrace: introduce FTRACE_OPS_FL_SHARE_IPMODIFY"), on top of 1/5 (custom
flags for direct_multi ops: MULTI_FLAGS is DIRECT|SAVE_REGS and is or-ed in) and 2/5
(modify_ftrace_direct_multi_nolock). Every function here is the seed's code, as written,
including the parts that look odd; each oddity is pinned by a test, not fixed.

Theory of operation (the rules this module owns):

1. A function may have at most one IPMODIFY ops and at most one DIRECT ops.
2. A DIRECT ops may carry IPMODIFY (combination #3) or not (#4, #5).
3. One non-DIRECT IPMODIFY ops (#2, a live patch) and one non-IPMODIFY DIRECT ops may share a
   function if the DIRECT ops sets FTRACE_OPS_FL_SHARE_IPMODIFY (#5), meaning its trampoline
   calls whatever regs->ip holds.
4. IPMODIFY first, then a DIRECT ops without SHARE: __ftrace_hash_update_ipmodify returns
   -EAGAIN and the DIRECT ops' owner is expected to set SHARE and retry.
5. DIRECT first, then an IPMODIFY ops: register_ftrace_function calls
   prepare_direct_functions_for_ipmodify, which asks the DIRECT ops to share through
   ``ops_func(op, FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY)`` while holding direct_mutex, and returns
   1 to say "direct_mutex is still held"; register_ftrace_function releases it at the end.
6. Nothing ever sends FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY.

The five valid (IPMODIFY, DIRECT, SHARE) combinations, as the seed numbers them:
#1 (0,0,0) ignored; #2 (1,0,0) and #3 (1,1,0) own the record bit and refuse a second one with
-EBUSY after a rollback; #4 (0,1,0) gets -EAGAIN against the bit; #5 (0,1,1) is ignored.

The last section is the BPF trampoline's side of the series (kernel/bpf/trampoline.c with 5/5,
include/linux/bpf.h with 4/5): tr->fops, bpf_tramp_ftrace_ops_func and the indirect_call retry.
"""

from __future__ import annotations

import enum

from ...errors import KernelOops
from .. import direct
from ..clients import bpf
from ..direct import register_direct_multi_body, tmp_ops
from ..errno import Errno
from ..flags import OPSF, RECF, ftrace_ops_cmd  # noqa: F401  (ftrace_ops_cmd is part of the policy interface)
from ..ftrace import (ftrace_hash_ipmodify_rollback, ftrace_location, ftrace_ops_init,
                      ftrace_set_filter_ip, ftrace_shutdown, ftrace_startup, ops_references_ip)
from ..hash import ftrace_hash
from ..kernel import Kernel
from ..locks import cross_call, mutex_is_locked, mutex_lock, mutex_trylock, mutex_unlock
from ..ops import Addr, ftrace_ops

F = OPSF
R = RECF

NAME = "seed-v2"
KERNEL = "bpf-next + v2 series, June 2022"
DESCRIPTION = "Song Liu's v2 series (June 2022): FTRACE_OPS_FL_SHARE_IPMODIFY, ops_func ENABLE/DISABLE"
HAS_OPS_FUNC = True
HAS_SHARE_IPMODIFY_FLAG = True

#: MULTI_FLAGS (ftrace.c) after v2 1/5: IPMODIFY is no longer forced on direct_multi ops.
MULTI_FLAGS = F.DIRECT | F.SAVE_REGS


def __ftrace_hash_update_ipmodify(k: Kernel, ops: ftrace_ops, old_hash: ftrace_hash | None,
                                  new_hash: ftrace_hash | None) -> int:
    """__ftrace_hash_update_ipmodify() (ftrace.c), seed v2 3/5: the five-combination IPMODIFY rule.

    0 when nothing needs doing or the update is applied; -EINVAL for a NULL ("all functions")
    hash of an IPMODIFY or DIRECT ops (tested before the #5 shortcut, so it hits #4/#5 too);
    -EAGAIN for #4 against a record that has FTRACE_FL_IPMODIFY (returned at once, nothing to
    undo); -EBUSY for #2/#3 against one, after rolling back the records changed so far.
    """
    if not ops.flags & F.ENABLED:
        return 0
    is_ipmodify = bool(ops.flags & F.IPMODIFY)
    is_direct = bool(ops.flags & F.DIRECT)
    if not is_ipmodify and not is_direct:  # combination #1
        return 0
    if new_hash is None or old_hash is None:
        return -Errno.EINVAL
    share_ipmodify = bool(ops.flags & F.SHARE_IPMODIFY)
    if not is_ipmodify and share_ipmodify:  # combination #5
        return 0

    # Records where membership differs, in record order (the kernel walks every record and
    # skips those with in_old == in_new; the result is the same).
    cat = k.cat
    diff = sorted(old_hash.ips ^ new_hash.ips)
    end = None
    for ip in diff:
        i = cat.index(ip)
        if i is None:
            continue
        flags = k.get_flags(i)
        if flags & R.DISABLED:
            continue
        if ip in new_hash.ips:
            if flags & R.IPMODIFY:
                if is_ipmodify:  # combinations #2 and #3: cannot have two on one record
                    end = ip
                    break
                return -Errno.EAGAIN  # combination #4: let the owner enable SHARE and retry
            if is_ipmodify:
                k.set_flags(i, flags | R.IPMODIFY)
        elif is_ipmodify:  # removed entry
            k.set_flags(i, flags & ~R.IPMODIFY)
    else:
        return 0
    return ftrace_hash_ipmodify_rollback(k, diff, old_hash, new_hash, end)  # type: ignore[arg-type]


def prepare_direct_functions_for_ipmodify(k: Kernel, ops: ftrace_ops) -> int:
    """prepare_direct_functions_for_ipmodify() (ftrace.c), new in seed v2 3/5.

    Returns 0 when ``ops`` lacks IPMODIFY or is DIRECT (no lock taken); 1 with direct_mutex
    *still held* when every ip of the filter is free of non-sharing DIRECT ops or their owner
    agreed to share; -EBUSY when such an op has no ops_func; the ops_func's error otherwise
    (direct_mutex released on every error). Per ip, the walk of ftrace_ops_list (newest first)
    skips non-DIRECT ops and *stops at the first SHARE_IPMODIFY ops*, whether or not that ops
    traces the ip. Ops converted for an earlier ip stay converted when a later ip fails. The
    kernel visits the filter's ips in hash-bucket order; the model uses record order.
    """
    if not ops.flags & F.IPMODIFY or ops.flags & F.DIRECT:
        return 0
    mutex_lock(k, "direct_mutex")
    hash = ops.hash.filter_hash
    if hash is None:
        k.log("BUG", "prepare_direct_functions_for_ipmodify",
              "kernel NULL pointer dereference (ops->func_hash->filter_hash is NULL)")
        raise KernelOops(f"NULL filter_hash of {ops.name} dereferenced in "
                         "prepare_direct_functions_for_ipmodify")
    cmd = ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY
    for ip in hash:
        found_op = None
        mutex_lock(k, "ftrace_lock")
        for op in k.ftrace_ops_list:
            if not op.flags & F.DIRECT:
                continue
            if op.flags & F.SHARE_IPMODIFY:
                break
            if ops_references_ip(op, ip):
                found_op = op
                break
        mutex_unlock(k, "ftrace_lock")
        if found_op is not None:
            if found_op.ops_func is None:
                ret = -Errno.EBUSY
                mutex_unlock(k, "direct_mutex")
                return ret
            cross_call(k, "ops_func ENABLE")
            ret = found_op.ops_func(found_op, cmd)
            if ret:
                mutex_unlock(k, "direct_mutex")
                return ret
    return 1


def register_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function() (ftrace.c), seed v2 3/5: prepare, startup, release direct_mutex if 1."""
    ftrace_ops_init(k, ops)
    # mutation skip-prepare: register as if no DIRECT ops had to be asked
    ret = 0 if "skip-prepare" in k.mutations else prepare_direct_functions_for_ipmodify(k, ops)
    if ret < 0:
        return ret
    direct_mutex_locked = ret == 1
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_startup(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    if direct_mutex_locked:
        mutex_unlock(k, "direct_mutex")
    return ret


def unregister_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """unregister_ftrace_function() (ftrace.c), unchanged by v2: ftrace_lock + ftrace_shutdown only."""
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_shutdown(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    return ret


def register_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct_multi() (ftrace.c) with v2 1/5 (``flags |= MULTI_FLAGS``) and 3/5.

    3/5 adds: IPMODIFY together with SHARE_IPMODIFY -> -EINVAL (after the ENABLED check). For a
    DIRECT ops, register_ftrace_function does not take direct_mutex again (prepare returns 0).
    """
    return register_direct_multi_body(k, ops, addr, register=register_ftrace_function, or_flags=True,
                                      refuse=_ipmodify_with_share)


def _ipmodify_with_share(ops: ftrace_ops) -> int:
    """v2 3/5's new check in register_ftrace_direct_multi: an IPMODIFY ops cannot also share."""
    if ops.flags & F.IPMODIFY and ops.flags & F.SHARE_IPMODIFY:
        return -Errno.EINVAL
    return 0


def __modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """__modify_ftrace_direct_multi() (ftrace.c), v2 2/5: WARN and -EINVAL unless direct_mutex is held.

    Registers the STUB tmp_ops on the direct ops' func_hash (every record goes to count >= 2 and
    the list function), re-points each direct_functions entry under ftrace_lock, then
    unregisters tmp_ops so the sites call ``addr`` directly.
    """
    if not mutex_is_locked(k, "direct_mutex"):
        k.warn("__modify_ftrace_direct_multi", "direct_mutex is not held", once=True)
        return -Errno.EINVAL
    tmp = tmp_ops(k)
    ftrace_ops_init(k, tmp)
    tmp.func_hash = ops.hash
    err = register_ftrace_function(k, tmp)
    if err:
        return err
    mutex_lock(k, "ftrace_lock")
    hash = ops.hash.filter_hash
    if hash is not None:
        for ip in hash:
            if ip in k.direct_functions:
                k.direct_functions[ip] = addr
    mutex_unlock(k, "ftrace_lock")
    unregister_ftrace_function(k, tmp)
    return err


# =============================================================================================
# kernel/bpf/trampoline.c (with the series' 5/5) and include/linux/bpf.h (with 4/5)
# =============================================================================================
# The BPF trampoline of bpf-next in June 2022 with v2 4/5 and 5/5 applied: every trampoline gets
# its own direct ftrace_ops (tr->fops, ops_func = bpf_tramp_ftrace_ops_func) and the
# ``indirect_call`` retry. What every version shares is in ftlab.model.clients.bpf.
#
# 1. First image: register_fentry (ip into tr->fops' filter, register_ftrace_direct_multi);
#    later images: modify_fentry (modify_ftrace_direct_multi, or the _nolock twin when the
#    caller already holds direct_mutex); no programs left: unregister_fentry.
# 2. IPMODIFY first (a live patch): the registration gets -EAGAIN from the seed's
#    __ftrace_hash_update_ipmodify (#4); on the *first* registration only, the trampoline sets
#    indirect_call, resets fops->func / fops->trampoline and JITs again with ORIG_STACK; fops
#    gets FTRACE_OPS_FL_SHARE_IPMODIFY (#5) and the retry succeeds. Two WARN_ON_ONCE guards
#    give up instead if indirect_call was already set or an image already exists.
# 3. DIRECT first: prepare_direct_functions_for_ipmodify calls bpf_tramp_ftrace_ops_func(ENABLE)
#    with direct_mutex held; it *trylocks* tr->mutex (-EAGAIN when busy), sets indirect_call
#    and rebuilds with lock_direct_mutex=false.
# 4. indirect_call is never cleared by v2 ftrace (DISABLE is never sent): it sticks for the
#    life of the trampoline object, also after the live patch is gone; ORIG_STACK is added
#    whenever it is set, also to a fentry-only image (where the JIT ignores it).

class BPF_TRAMP_F(enum.IntFlag):
    """BPF_TRAMP_F_* (include/linux/bpf.h, bpf-next June 2022 with v2 4/5): ORIG_STACK is new."""

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4
    ORIG_STACK = 1 << 5  # 4/5


def bpf_trampoline_lookup_fops(k: Kernel, tr: "bpf.bpf_trampoline") -> ftrace_ops | None:
    """bpf_trampoline_lookup() (trampoline.c), seed v2 5/5: its new DIRECT_CALLS block.

    A new trampoline gets its own zeroed ftrace_ops with private = tr and ops_func =
    bpf_tramp_ftrace_ops_func. Without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS the block is
    compiled out and tr->fops stays NULL.
    """
    if not k.arch.direct_calls:
        return None
    return ftrace_ops(f"tr->fops[{tr.key}]", None, 0, private=tr, ops_func=bpf_tramp_ftrace_ops_func)


def bpf_trampoline_put_fops(k: Kernel, tr: "bpf.bpf_trampoline") -> None:
    """bpf_trampoline_put() (trampoline.c), seed v2 5/5: ``kfree(tr->fops)``, its filter not freed first.

    Nothing to do in the model: tr and its fops become unreachable with the table entry (a fops
    left on ftrace_ops_list by a failed unregistration keeps pointing at them, as freed memory
    keeps its contents).
    """


def register_fentry(k: Kernel, tr: "bpf.bpf_trampoline", new_addr: Addr) -> int:
    """register_fentry() (trampoline.c), seed v2 5/5: filter ip (reset=0), direct_multi, undo on failure.

    With no fops (no DIRECT_CALLS, an arch with a trampoline JIT: none in the v2 era) the code
    passes tr->fops = NULL to ftrace_set_filter_ip, a NULL pointer dereference (6.1 returns
    -ENOTSUPP there instead).
    """
    ip = tr.func_addr
    if ftrace_location(k, ip):
        tr.ftrace_managed = True
    if bpf.bpf_trampoline_module_get(k, tr):
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
        ret = bpf.bpf_arch_text_poke(k, tr, None, new_addr)
    if ret:
        bpf.bpf_trampoline_module_put(k, tr)
    return ret


def modify_fentry(k: Kernel, tr: "bpf.bpf_trampoline", old_addr: Addr, new_addr: Addr,
                  lock_direct_mutex: bool) -> int:
    """modify_fentry() (trampoline.c), seed v2 5/5: modify_ftrace_direct_multi or its _nolock twin."""
    if tr.ftrace_managed:
        assert tr.fops is not None
        if lock_direct_mutex:
            return direct.modify_ftrace_direct_multi(k, tr.fops, new_addr)
        return direct.modify_ftrace_direct_multi_nolock(k, tr.fops, new_addr)
    return bpf.bpf_arch_text_poke(k, tr, old_addr, new_addr)


def unregister_fentry(k: Kernel, tr: "bpf.bpf_trampoline", old_addr: Addr) -> int:
    """unregister_fentry() (trampoline.c), seed v2 5/5: unregister_ftrace_direct_multi(tr->fops)."""
    if tr.ftrace_managed:
        assert tr.fops is not None
        ret = direct.unregister_ftrace_direct_multi(k, tr.fops, old_addr)
    else:
        ret = bpf.bpf_arch_text_poke(k, tr, old_addr, None)
    if not ret:
        bpf.bpf_trampoline_module_put(k, tr)
    return ret


def bpf_tramp_image_alloc(k: Kernel, tr: "bpf.bpf_trampoline", idx: int) -> "bpf.bpf_tramp_image":
    """bpf_tramp_image_alloc(key, idx) (trampoline.c), seed-v2: a fresh page, ksym ``bpf_trampoline_<key>_<idx>``.

    ``idx`` is tr->selector, so each live image of a trampoline has its own name.
    """
    return bpf.bpf_tramp_image(addr=f"{bpf.IMAGE_PREFIX}{tr.key}_{idx}", key=tr.key, ip=tr.func_addr)


def bpf_trampoline_update(k: Kernel, tr: "bpf.bpf_trampoline", lock_direct_mutex: bool) -> int:
    """bpf_trampoline_update() (trampoline.c), seed v2 5/5: rebuild the image and (re)attach it.

    Caller holds tr->mutex. No programs: unregister_fentry, drop the image, selector = 0.
    Otherwise JIT a new image (flags per the programs, ORIG_STACK if indirect_call) and register
    it (first image) or modify to it. -EAGAIN from the registration: WARN_ON_ONCE and give up if
    indirect_call is already set or an image already exists; else set indirect_call, reset
    fops->func and fops->trampoline and JIT again into the same image (``again:``). A failed
    update leaks the image it allocated (not modelled: the image is simply dropped).
    """
    tlinks, total, ip_arg = bpf.bpf_trampoline_get_progs(tr)
    if total == 0:
        err = unregister_fentry(k, tr, bpf.cur_image_of_empty(k, tr).addr)
        bpf.bpf_tramp_image_put(k, tr.cur_image)
        tr.cur_image = None
        tr.selector = 0
        return err

    im = bpf_tramp_image_alloc(k, tr, tr.selector)
    flags = BPF_TRAMP_F.RESTORE_REGS
    if bpf.has_call_orig(tlinks):
        flags = BPF_TRAMP_F.CALL_ORIG | BPF_TRAMP_F.SKIP_FRAME
    if ip_arg:
        flags |= BPF_TRAMP_F.IP_ARG

    while True:  # again:
        if tr.indirect_call and "no-orig-stack" not in k.mutations:
            flags |= BPF_TRAMP_F.ORIG_STACK
        err, im = bpf.arch_prepare_bpf_trampoline(k, im, flags, tlinks, tr)
        if err < 0:
            return err
        if tr.indirect_call:
            assert tr.fops is not None  # indirect_call is only ever set through the fops
            tr.fops.flags |= F.SHARE_IPMODIFY
        if tr.cur_image is not None and tr.selector == 0:
            k.warn("bpf_trampoline_update", "an image is installed but the selector is 0")
        if tr.cur_image is None and tr.selector:
            k.warn("bpf_trampoline_update", "no image is installed but the selector is not 0")
        if tr.cur_image is not None:
            err = modify_fentry(k, tr, tr.cur_image.addr, im.addr, lock_direct_mutex)
        else:
            err = register_fentry(k, tr, im.addr)
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
    if tr.cur_image is not None:
        bpf.bpf_tramp_image_put(k, tr.cur_image)
    tr.cur_image = im
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
    tr: bpf.bpf_trampoline = ops.private
    k = tr.kernel
    if "ops-func-blocking-lock" in k.mutations:  # mutation: wait for tr->mutex
        mutex_lock(k, tr.mutex)
    elif not mutex_trylock(k, tr.mutex):
        return -Errno.EAGAIN
    if cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY:
        tr.indirect_call = True
        ret = bpf_trampoline_update(k, tr, False)
    elif cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY:
        tr.indirect_call = False
        ops.flags &= ~F.SHARE_IPMODIFY  # tr->fops->flags
        ret = bpf_trampoline_update(k, tr, False)
    else:
        ret = -Errno.EINVAL
    mutex_unlock(k, tr.mutex)
    return ret
