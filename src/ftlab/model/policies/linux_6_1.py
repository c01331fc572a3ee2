"""Policy ``linux-6.1``: the merged design (v5, Linux 6.0) as Debian 12 ships it (6.1.192-2).

What differs from the seed, as this module owns it (facts §4; kernel/trace/ftrace.c of the
linux-source-6.1 6.1.192-2 tree):

1. There is no FTRACE_OPS_FL_SHARE_IPMODIFY: whether a DIRECT ops shares is the DIRECT ops'
   own business (BPF keeps BPF_TRAMP_F_SHARE_IPMODIFY in tr->flags).
2. A DIRECT ops meeting a record that has FTRACE_FL_IPMODIFY is asked through
   ``ops_func(ops, FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF)`` from inside
   __ftrace_hash_update_ipmodify (no ops_func -> -EBUSY; a non-zero answer is returned).
3. An IPMODIFY ops being registered asks every overlapping DIRECT ops with
   ``ENABLE_SHARE_IPMODIFY_PEER`` (prepare_direct_functions_for_ipmodify, no SHARE test, the walk
   only stops at a DIRECT ops that references the ip); when it is unregistered, the same DIRECT
   ops get ``DISABLE_SHARE_IPMODIFY_PEER`` (cleanup_direct_functions_after_ipmodify), result ignored.
4. register_ftrace_function always takes direct_mutex; holders of it use
   register_ftrace_function_nolock.
5. An ops with both IPMODIFY and DIRECT is invalid: WARN_ON_ONCE and 0.
6. MULTI_FLAGS is DIRECT|SAVE_REGS and is *assigned* (caller bits are dropped).
7. Backport 3e9a18e1c3e9 (Debian 6.1.162-1): __ftrace_hash_update_ipmodify has an
   ``update_target`` argument and __modify_ftrace_direct_multi calls it, so changing a direct
   trampoline re-asks the DIRECT ops with SELF.

ftrace_ops_init's ops_mutex (another Debian backport) only serialises concurrent first
initialisations and is not modelled. The legacy single-ip direct API (register_ftrace_direct) is
not modelled for this policy: no client of 6.1 uses it.

The last section is the BPF trampoline of the same tree (kernel/bpf/trampoline.c,
include/linux/bpf.h): sharing state in tr->flags (BPF_TRAMP_F_SHARE_IPMODIFY), the SELF / PEER /
DISABLE_PEER answers of bpf_tramp_ftrace_ops_func, and the unconditional -EAGAIN retry.
"""

from __future__ import annotations

import enum

from ...errors import KernelOops, ModelError
from .. import direct
from ..clients import bpf
from ..direct import register_direct_multi_body, tmp_ops
from ..errno import Errno
from ..flags import OPSF, RECF
from ..ftrace import (FTRACE_WARN_ON, ftrace_free_filter, ftrace_hash_ipmodify_rollback,
                      ftrace_location, ftrace_ops_init, ftrace_set_filter_ip, ftrace_shutdown,
                      ftrace_startup, ops_references_ip)
from ..hash import ftrace_hash
from ..kernel import Kernel
from ..locks import cross_call, mutex_lock, mutex_trylock, mutex_unlock
from ..ops import Addr, ftrace_ops

F = OPSF
R = RECF

NAME = "linux-6.1"
KERNEL = "Linux 6.1.192 (Debian 6.1.0-56), merged v5 design + stable backports"
DESCRIPTION = "merged design: ops_func SELF/PEER/DISABLE_PEER, no ftrace SHARE bit, update_target backport"
HAS_OPS_FUNC = True
HAS_SHARE_IPMODIFY_FLAG = False

#: MULTI_FLAGS (ftrace.c) in 6.1, assigned (``ops->flags = MULTI_FLAGS``).
MULTI_FLAGS = F.DIRECT | F.SAVE_REGS


class ftrace_ops_cmd(enum.IntEnum):
    """enum ftrace_ops_cmd (include/linux/ftrace.h, 6.1)."""

    FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF = 0
    FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER = 1
    FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY_PEER = 2


def __ftrace_hash_update_ipmodify(k: Kernel, ops: ftrace_ops, old_hash: ftrace_hash | None,
                                  new_hash: ftrace_hash | None, update_target: bool = False) -> int:
    """__ftrace_hash_update_ipmodify() (ftrace.c, 6.1.192 with the update_target backport).

    IPMODIFY ops: set/clear the record bit, roll back and -EBUSY on a second IPMODIFY. DIRECT
    ops: against a record with the bit, ask the ops with ENABLE_SHARE_IPMODIFY_SELF (no ops_func
    -> -EBUSY; FTRACE_WARN_ON, which kills ftrace, if the record is already DIRECT and this is
    not a target update).
    """
    if not ops.flags & F.ENABLED:
        return 0
    is_ipmodify = bool(ops.flags & F.IPMODIFY)
    is_direct = bool(ops.flags & F.DIRECT)
    if not is_ipmodify and not is_direct:
        return 0
    if is_ipmodify and is_direct:
        k.warn("__ftrace_hash_update_ipmodify", f"{ops.name} has both IPMODIFY and DIRECT", once=True)
        return 0
    if new_hash is None or old_hash is None:
        return -Errno.EINVAL

    cat = k.cat
    walk = sorted(old_hash.ips | new_hash.ips) if update_target else sorted(old_hash.ips ^ new_hash.ips)
    end = None
    for ip in walk:
        i = cat.index(ip)
        if i is None:
            continue
        flags = k.get_flags(i)
        if flags & R.DISABLED:
            continue
        in_old, in_new = ip in old_hash.ips, ip in new_hash.ips
        if not update_target and in_old == in_new:
            continue
        if in_new:
            if flags & R.IPMODIFY:
                if is_ipmodify:
                    end = ip
                    break
                FTRACE_WARN_ON(k, not update_target and bool(flags & R.DIRECT),
                               "__ftrace_hash_update_ipmodify",
                               f"direct ops {ops.name} added to an already DIRECT record")
                if ops.ops_func is None:
                    return -Errno.EBUSY
                cross_call(k, "ops_func SELF")
                ret = ops.ops_func(ops, ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF)
                if ret:
                    return ret
            elif is_ipmodify:
                k.set_flags(i, flags | R.IPMODIFY)
        elif is_ipmodify:
            k.set_flags(i, flags & ~R.IPMODIFY)
    else:
        return 0
    # rollback (only IPMODIFY ops get here; update_target is never set for them)
    return ftrace_hash_ipmodify_rollback(k, walk, old_hash, new_hash, end)  # type: ignore[arg-type]


def _first_direct_op(k: Kernel, ip: int) -> ftrace_ops | None:
    """The per-ip search of prepare/cleanup: first listed DIRECT ops referencing ``ip`` (under ftrace_lock)."""
    mutex_lock(k, "ftrace_lock")
    found = None
    for op in k.ftrace_ops_list:
        if not op.flags & F.DIRECT:
            continue
        if ops_references_ip(op, ip):
            found = op
            break
    mutex_unlock(k, "ftrace_lock")
    return found


def _filter_or_oops(k: Kernel, ops: ftrace_ops, where: str) -> ftrace_hash:
    hash = ops.hash.filter_hash
    if hash is None:
        k.log("BUG", where, "kernel NULL pointer dereference (ops->func_hash->filter_hash is NULL)")
        raise KernelOops(f"NULL filter_hash of {ops.name} dereferenced in {where}")
    return hash


def prepare_direct_functions_for_ipmodify(k: Kernel, ops: ftrace_ops) -> int:
    """prepare_direct_functions_for_ipmodify() (ftrace.c, 6.1): PEER to each overlapping DIRECT ops.

    Called with direct_mutex held; returns 0 or the first error (-EBUSY without ops_func).
    """
    if not ops.flags & F.IPMODIFY:
        return 0
    hash = _filter_or_oops(k, ops, "prepare_direct_functions_for_ipmodify")
    for ip in hash:
        op = _first_direct_op(k, ip)
        if op is not None:
            if op.ops_func is None:
                return -Errno.EBUSY
            cross_call(k, "ops_func PEER")
            ret = op.ops_func(op, ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER)
            if ret:
                return ret
    return 0


def cleanup_direct_functions_after_ipmodify(k: Kernel, ops: ftrace_ops) -> None:
    """cleanup_direct_functions_after_ipmodify() (ftrace.c, 6.1): DISABLE_PEER, errors ignored."""
    if not ops.flags & F.IPMODIFY:
        return
    mutex_lock(k, "direct_mutex")
    hash = _filter_or_oops(k, ops, "cleanup_direct_functions_after_ipmodify")
    for ip in hash:
        op = _first_direct_op(k, ip)
        if op is not None and op.ops_func is not None:
            cross_call(k, "ops_func DISABLE_PEER")
            op.ops_func(op, ftrace_ops_cmd.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY_PEER)
    mutex_unlock(k, "direct_mutex")


def register_ftrace_function_nolock(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function_nolock() (ftrace.c, 6.1): init + ftrace_startup under ftrace_lock."""
    ftrace_ops_init(k, ops)
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_startup(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    return ret


def register_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function() (ftrace.c, 6.1): direct_mutex always, prepare, then _nolock."""
    mutex_lock(k, "direct_mutex")
    # mutation skip-prepare: register as if no DIRECT ops had to be asked
    ret = 0 if "skip-prepare" in k.mutations else prepare_direct_functions_for_ipmodify(k, ops)
    if ret >= 0:
        ret = register_ftrace_function_nolock(k, ops)
    mutex_unlock(k, "direct_mutex")
    return ret


def unregister_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """unregister_ftrace_function() (ftrace.c, 6.1): shutdown under ftrace_lock, then cleanup."""
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_shutdown(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    cleanup_direct_functions_after_ipmodify(k, ops)
    return ret


def register_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct_multi() (ftrace.c, 6.1): ``flags = MULTI_FLAGS``, register _nolock."""
    return register_direct_multi_body(k, ops, addr, register=register_ftrace_function_nolock, or_flags=False)


def __modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """__modify_ftrace_direct_multi() (ftrace.c, 6.1.192): tmp_ops, SELF via update_target, re-point.

    direct_mutex must be held (a lockdep assertion in the kernel, silent without lockdep, so the
    model does not check it either).
    """
    hash = ops.hash.filter_hash
    tmp = tmp_ops(k)
    ftrace_ops_init(k, tmp)
    tmp.func_hash = ops.hash
    err = register_ftrace_function_nolock(k, tmp)
    if err:
        return err
    err = __ftrace_hash_update_ipmodify(k, ops, hash, hash, True)
    if not err:
        mutex_lock(k, "ftrace_lock")
        if hash is not None:
            for ip in hash:
                if ip in k.direct_functions:
                    k.direct_functions[ip] = addr
        mutex_unlock(k, "ftrace_lock")
    unregister_ftrace_function(k, tmp)
    return err


# =============================================================================================
# kernel/bpf/trampoline.c and include/linux/bpf.h (6.1.192)
# =============================================================================================
# The merged design as the 6.1.192-2 tree has it, with the stable backports that touch this file:
# "bpf: Remove bpf trampoline selector" and "bpf: Fix memleak due to fentry attach failure"
# (stable 6.1.39, Debian 6.1.52-1: no tr->selector, image ksym ``bpf_trampoline_<key>``, a failed
# update frees its image), and "ftrace: bpf: Fix IPMODIFY + DIRECT in modify_ftrace_direct()"
# (3e9a18e1c3e9, stable 6.1.160, Debian 6.1.162-1), whose ftrace half makes the modify path ask
# SELF (__modify_ftrace_direct_multi, update_target). Its companion upstream, 56b3c85e153b
# "ftrace: Fix BPF fexit with livepatch", which moved the fops->func / fops->trampoline reset out
# of bpf_trampoline_update into register_ftrace_direct's error path, is marked for 6.6+ and is
# *not* in this tree: here the ``again:`` reset runs for every -EAGAIN, also on the modify path
# of a live fops (see bpf_trampoline_update).
#
# 1. tr->flags holds the JIT flags plus BPF_TRAMP_F_SHARE_IPMODIFY (BIT(6)) and TAIL_CALL_CTX
#    (BIT(7)); an update keeps only those two and recomputes the rest; ORIG_STACK iff SHARE and
#    CALL_ORIG; any error restores the flags the update started with.
# 2. IPMODIFY first: registering (or, since 6.1.160, modifying) tr->fops meets the live patch's
#    record bit and ftrace asks SELF. A trampoline that calls the original (CALL_ORIG) without
#    ORIG_STACK sets SHARE and answers -EAGAIN; bpf_trampoline_update retries unconditionally
#    and the new image has ORIG_STACK. A fentry-only trampoline (or one already ORIG_STACK)
#    answers 0 without setting SHARE: its image returns into [rbp+8], the patched code.
# 3. DIRECT first: the live patch's registration sends PEER (direct_mutex held): trylock
#    tr->mutex (busy: msleep(1), -EAGAIN, the live patch fails and must be retried), set SHARE,
#    rebuild with ORIG_STACK only if the image calls the original and lacks it.
# 4. Live patch removed: DISABLE_PEER (result ignored): trylock, clear SHARE, rebuild only if
#    the image has ORIG_STACK.

class BPF_TRAMP_F(enum.IntFlag):
    """BPF_TRAMP_F_* (include/linux/bpf.h, 6.1.192): ORIG_STACK, SHARE_IPMODIFY and TAIL_CALL_CTX exist."""

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4
    ORIG_STACK = 1 << 5
    SHARE_IPMODIFY = 1 << 6
    TAIL_CALL_CTX = 1 << 7


_T = BPF_TRAMP_F
#: The model's bound on ``goto again``: the 6.1 loop has none, so an -EAGAIN that never stops
#: would spin forever in the kernel; the model raises ModelError instead (unreachable through
#: this tree's ftrace: SELF answers -EAGAIN only while ORIG_STACK is missing).
AGAIN_LIMIT = 16


def msleep(k: Kernel, msecs: int) -> None:
    """msleep() (kernel/time/timer.c): the model has no clock and a sleep changes no state: a no-op.

    It stays a named call so that the 6.1 trylock failure path reads like the kernel's and a
    test (or an interleaving scheduler) can observe it.
    """


def bpf_trampoline_lookup_fops(k: Kernel, tr: "bpf.bpf_trampoline") -> ftrace_ops | None:
    """bpf_trampoline_lookup() (trampoline.c, 6.1): its DIRECT_CALLS block, as in seed v2 5/5.

    A new trampoline gets its own zeroed ftrace_ops with private = tr and ops_func =
    bpf_tramp_ftrace_ops_func; without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS tr->fops stays
    NULL (and register_fentry answers -ENOTSUPP for ftrace locations).
    """
    if not k.arch.direct_calls:
        return None
    return ftrace_ops(f"tr->fops[{tr.key}]", None, 0, private=tr, ops_func=bpf_tramp_ftrace_ops_func)


def bpf_trampoline_put_fops(k: Kernel, tr: "bpf.bpf_trampoline") -> None:
    """bpf_trampoline_put() (trampoline.c, 6.1): ``ftrace_free_filter(tr->fops)`` then kfree.

    If the fops is still ENABLED (its unregistration failed, e.g. ftrace was killed), the kernel
    frees the hashes of a live ops without a word (6.1's ftrace_free_filter checks nothing) and
    the freed fops stays on ftrace_ops_list: a use after free the model keeps as a listed ops.
    """
    assert tr.fops is not None
    ftrace_free_filter(k, tr.fops)


def register_fentry(k: Kernel, tr: "bpf.bpf_trampoline", new_addr: Addr) -> int:
    """register_fentry() (trampoline.c, 6.1): filter ip with reset=1, register_ftrace_direct_multi.

    An ftrace location without a fops (no DIRECT_CALLS) is -ENOTSUPP. On failure the filter
    is left as it is (the next attempt resets it) and fops->func / fops->trampoline stay set
    by register_ftrace_direct_multi; only the module reference is put back.
    """
    ip = tr.func_addr
    if ftrace_location(k, ip):
        if tr.fops is None:
            return -Errno.ENOTSUPP
        tr.ftrace_managed = True
    if bpf.bpf_trampoline_module_get(k, tr):
        return -Errno.ENOENT
    if tr.ftrace_managed:
        assert tr.fops is not None
        ftrace_set_filter_ip(k, tr.fops, ip, False, True)
        ret = direct.register_ftrace_direct_multi(k, tr.fops, new_addr)
    else:
        ret = bpf.bpf_arch_text_poke(k, tr, None, new_addr)
    if ret:
        bpf.bpf_trampoline_module_put(k, tr)
    return ret


def modify_fentry(k: Kernel, tr: "bpf.bpf_trampoline", old_addr: Addr, new_addr: Addr,
                  lock_direct_mutex: bool) -> int:
    """modify_fentry() (trampoline.c, 6.1): modify_ftrace_direct_multi or _nolock, nothing undone on failure.

    Since stable 6.1.160 the ftrace side runs the IPMODIFY check with update_target, so a
    modify on a live-patched function can get SELF's -EAGAIN (or -EBUSY) back.
    """
    if tr.ftrace_managed:
        assert tr.fops is not None
        if lock_direct_mutex:
            return direct.modify_ftrace_direct_multi(k, tr.fops, new_addr)
        return direct.modify_ftrace_direct_multi_nolock(k, tr.fops, new_addr)
    return bpf.bpf_arch_text_poke(k, tr, old_addr, new_addr)


def unregister_fentry(k: Kernel, tr: "bpf.bpf_trampoline", old_addr: Addr) -> int:
    """unregister_fentry() (trampoline.c, 6.1): unregister_ftrace_direct_multi(tr->fops); module put on success.

    On failure (ftrace killed: -ENODEV; not enabled: -EINVAL) the module reference is kept;
    unregister_ftrace_direct_multi has dropped the direct entries and fops->func anyway.
    """
    if tr.ftrace_managed:
        assert tr.fops is not None
        ret = direct.unregister_ftrace_direct_multi(k, tr.fops, old_addr)
    else:
        ret = bpf.bpf_arch_text_poke(k, tr, old_addr, None)
    if not ret:
        bpf.bpf_trampoline_module_put(k, tr)
    return ret


def bpf_tramp_image_alloc(k: Kernel, tr: "bpf.bpf_trampoline") -> "bpf.bpf_tramp_image":
    """bpf_tramp_image_alloc(key) (trampoline.c, 6.1.192): a fresh page, ksym ``bpf_trampoline_<key>``.

    No index since "bpf: Remove bpf trampoline selector" (stable 6.1.39), so the old and the new
    image of an update have the same name; the model tells them apart with ``#0`` / ``#1``
    (the one the current image does not use), which %pS strips.
    """
    n = 1 if tr.cur_image is not None and tr.cur_image.addr.endswith("#0") else 0
    return bpf.bpf_tramp_image(addr=f"{bpf.IMAGE_PREFIX}{tr.key}#{n}", key=tr.key, ip=tr.func_addr)


def bpf_trampoline_update(k: Kernel, tr: "bpf.bpf_trampoline", lock_direct_mutex: bool) -> int:
    """bpf_trampoline_update() (trampoline.c, 6.1.192): rebuild the image from tr->flags and (re)attach it.

    Caller holds tr->mutex. No programs: unregister_fentry and drop the image (tr->flags keep
    their value). Otherwise: keep only SHARE_IPMODIFY and TAIL_CALL_CTX of tr->flags, add
    CALL_ORIG|SKIP_FRAME (fexit or fmod_ret) or RESTORE_REGS, IP_ARG; ``again:`` add ORIG_STACK
    if SHARE and CALL_ORIG, JIT, register (first image) or modify. -EAGAIN (SELF asked for a
    rebuild and set SHARE) -> fops->func = NULL, fops->trampoline = 0, image back to RW, goto
    again: no guard, first registration or not. Any other error frees the image (backport of
    "bpf: Fix memleak due to fentry attach failure") and restores the flags of the start.

    Consequence of the unguarded reset in this tree (pinned by the tests): when the -EAGAIN
    comes from the *modify* path (live patch, then a fentry-only trampoline, then an fexit
    program: SELF on modify_ftrace_direct_multi), fops->func and fops->trampoline are cleared
    on a registered, live fops and nothing sets them again; the next call of the function
    through the list function trips FTRACE_WARN_ON(!op->func) and kills ftrace.
    """
    orig_flags = tr.flags
    tlinks, total, ip_arg = bpf.bpf_trampoline_get_progs(tr)
    if total == 0:
        err = unregister_fentry(k, tr, bpf.cur_image_of_empty(k, tr).addr)
        bpf.bpf_tramp_image_put(k, tr.cur_image)
        tr.cur_image = None
        if err:
            tr.flags = orig_flags
        return err

    im = bpf_tramp_image_alloc(k, tr)
    tr.flags &= _T.SHARE_IPMODIFY | _T.TAIL_CALL_CTX
    if bpf.has_call_orig(tlinks):
        tr.flags |= _T.CALL_ORIG | _T.SKIP_FRAME
    else:
        tr.flags |= _T.RESTORE_REGS
    if ip_arg:
        tr.flags |= _T.IP_ARG

    retries = 0
    while True:  # again:
        if tr.flags & _T.SHARE_IPMODIFY and tr.flags & _T.CALL_ORIG and "no-orig-stack" not in k.mutations:
            tr.flags |= _T.ORIG_STACK
        err, im = bpf.arch_prepare_bpf_trampoline(k, im, tr.flags, tlinks, tr)
        if err < 0:
            break  # out_free
        if tr.cur_image is not None and total == 0:  # WARN_ON; cannot hold here
            k.warn("bpf_trampoline_update", "an image is installed but there are no programs")
        if tr.cur_image is not None:
            err = modify_fentry(k, tr, tr.cur_image.addr, im.addr, lock_direct_mutex)
        else:
            err = register_fentry(k, tr, im.addr)
        if err == -Errno.EAGAIN:
            assert tr.fops is not None  # -EAGAIN comes only from the fops' ftrace calls
            tr.fops.func = None
            tr.fops.trampoline = 0
            retries += 1
            if retries > AGAIN_LIMIT:
                raise ModelError(f"bpf_trampoline_update of {tr.func_name}: -EAGAIN {retries} times in a "
                                 "row; the kernel's 'goto again' would never end")
            continue
        break
    if err:
        # out_free: bpf_tramp_image_free(im); out: restore the flags
        tr.flags = orig_flags
        return err
    if tr.cur_image is not None:
        bpf.bpf_tramp_image_put(k, tr.cur_image)
    tr.cur_image = im
    return 0


def bpf_tramp_ftrace_ops_func(ops: ftrace_ops, cmd: int) -> int:
    """bpf_tramp_ftrace_ops_func() (trampoline.c, 6.1): tr->fops' answer to SELF / PEER / DISABLE_PEER.

    SELF comes from __ftrace_hash_update_ipmodify while this trampoline's own registration or
    modify runs, so tr->mutex is already held by the caller: no locking (the kernel's
    lockdep_assert_held_once is silent on Debian's config, which has no lockdep; not checked
    here). If the image calls the original (CALL_ORIG) without ORIG_STACK: SHARE already set
    -> WARN_ON_ONCE, -EBUSY; else set SHARE and answer -EAGAIN so bpf_trampoline_update
    rebuilds and retries. Otherwise answer 0 without setting SHARE (a fentry-only image
    already returns into [rbp+8]).

    PEER (prepare_direct_functions_for_ipmodify) and DISABLE_PEER
    (cleanup_direct_functions_after_ipmodify) come with direct_mutex held; the documented order
    is tr->mutex -> direct_mutex, so they only trylock tr->mutex, and on failure msleep(1) (to
    let the holder progress) and answer -EAGAIN. PEER sets SHARE and rebuilds only if CALL_ORIG
    and not ORIG_STACK; DISABLE_PEER clears SHARE and rebuilds only if ORIG_STACK; both rebuild
    with lock_direct_mutex = false. Any other command: -EINVAL.
    """
    tr: bpf.bpf_trampoline = ops.private
    k = tr.kernel
    if cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF:
        if tr.flags & _T.CALL_ORIG and not tr.flags & _T.ORIG_STACK:
            if tr.flags & _T.SHARE_IPMODIFY:
                k.warn("bpf_tramp_ftrace_ops_func", "SELF with BPF_TRAMP_F_SHARE_IPMODIFY already set",
                       once=True)
                return -Errno.EBUSY
            tr.flags |= _T.SHARE_IPMODIFY
            return -Errno.EAGAIN
        return 0

    if "ops-func-blocking-lock" in k.mutations:  # mutation: wait for tr->mutex
        mutex_lock(k, tr.mutex)
    elif not mutex_trylock(k, tr.mutex):
        msleep(k, 1)
        return -Errno.EAGAIN
    ret = 0
    if cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER:
        tr.flags |= _T.SHARE_IPMODIFY
        if tr.flags & _T.CALL_ORIG and not tr.flags & _T.ORIG_STACK:
            ret = bpf_trampoline_update(k, tr, False)
    elif cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY_PEER:
        tr.flags &= ~_T.SHARE_IPMODIFY
        if tr.flags & _T.ORIG_STACK:
            ret = bpf_trampoline_update(k, tr, False)
    else:
        ret = -Errno.EINVAL
    mutex_unlock(k, tr.mutex)
    return ret
