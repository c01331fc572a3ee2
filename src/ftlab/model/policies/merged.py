"""The design merged in Linux 6.0 (Song Liu's series, v5), which 6.1 and later kernels keep.

What the versions of the merged design share, written once (facts §4; kernel/trace/ftrace.c and
kernel/bpf/trampoline.c of Debian's 6.1.192 tree, the same code in Debian's 6.12.95):

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
6. The BPF trampoline answers SELF without locking (tr->mutex is held by its own update), PEER
   and DISABLE_PEER with a trylock of tr->mutex and msleep(1) when it is busy.

A version package puts these functions in its table; they call other slots through ``k.policy``.
"""

from __future__ import annotations

import enum
from typing import Any

from ...errors import KernelOops
from .. import bpf_trampoline as bt
from ..errno import Errno
from ..flags import OPSF, RECF
from ..ftrace import (
    FTRACE_WARN_ON,
    ftrace_free_filter,
    ftrace_hash_ipmodify_rollback,
    ftrace_shutdown,
    ops_references_ip,
)
from ..hash import ftrace_hash
from ..kernel import Kernel
from ..locks import cross_call, mutex_lock, mutex_trylock, mutex_unlock
from ..ops import ftrace_ops
from ..refusals import kept

F = OPSF
R = RECF


class ftrace_ops_cmd(enum.IntEnum):
    """enum ftrace_ops_cmd (include/linux/ftrace.h, 6.0+; the same in 6.1 and 6.12)."""

    FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF = 0
    FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER = 1
    FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY_PEER = 2


def __ftrace_hash_update_ipmodify(k: Kernel, ops: ftrace_ops, old_hash: ftrace_hash | None,
                                  new_hash: ftrace_hash | None, update_target: bool = False) -> int:
    """__ftrace_hash_update_ipmodify() (ftrace.c, 6.0+; ``update_target`` from 3e9a18e1c3e9).

    IPMODIFY ops: set/clear the record bit, roll back and -EBUSY on a second IPMODIFY. DIRECT
    ops: against a record with the bit, ask the ops with ENABLE_SHARE_IPMODIFY_SELF (no ops_func
    -> -EBUSY; FTRACE_WARN_ON, which kills ftrace, if the record is already DIRECT and this is
    not a target update). The 6.0 function has no ``update_target``; 3e9a18e1c3e9 adds it
    (walk every record of the hash, not only those that change, and skip the DIRECT WARN), so
    called with false -- as every caller before that change does -- it is the 6.0 function.
    Only __modify_ftrace_direct_multi as 3e9a18e1c3e9 leaves it passes true.
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
    return ftrace_hash_ipmodify_rollback(k, walk, old_hash, new_hash, end)


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
    """prepare_direct_functions_for_ipmodify() (ftrace.c, 6.0+): PEER to each overlapping DIRECT ops.

    Called with direct_mutex held; returns 0 or the first error (-EBUSY without ops_func).
    """
    if not ops.flags & F.IPMODIFY:
        return 0
    hash = _filter_or_oops(k, ops, "prepare_direct_functions_for_ipmodify")
    asked = False  # a DIRECT ops of an earlier ip agreed to share
    for ip in hash:
        op = _first_direct_op(k, ip)
        if op is not None:
            if op.ops_func is None:
                _kept_sharing(k, asked)
                return -Errno.EBUSY
            cross_call(k, "ops_func PEER")
            ret = op.ops_func(op, ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER)
            if ret:
                _kept_sharing(k, asked)
                return ret
            asked = True
    return 0


def _kept_sharing(k: Kernel, asked: bool) -> None:
    """The DIRECT ops asked to share stay sharing when a later ip, or the registration, fails."""
    if asked:
        kept(k, "prepare_direct_functions_for_ipmodify", "the DIRECT ops asked to share stay sharing")


def cleanup_direct_functions_after_ipmodify(k: Kernel, ops: ftrace_ops) -> None:
    """cleanup_direct_functions_after_ipmodify() (ftrace.c, 6.0+): DISABLE_PEER, errors ignored."""
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


def register_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function() (ftrace.c, 6.0+): direct_mutex always, prepare, then _nolock."""
    mutex_lock(k, "direct_mutex")
    ret = k.policy.prepare_direct_functions_for_ipmodify(k, ops)
    if ret >= 0:
        ret = k.policy.register_ftrace_function_nolock(k, ops)
        if ret < 0 and ops.flags & F.IPMODIFY:
            filt = ops.hash.filter_hash
            _kept_sharing(k, filt is not None and any(_first_direct_op(k, ip) is not None for ip in filt))
    mutex_unlock(k, "direct_mutex")
    return ret


def unregister_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """unregister_ftrace_function() (ftrace.c, 6.0+): shutdown under ftrace_lock, then cleanup."""
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_shutdown(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    k.policy.cleanup_direct_functions_after_ipmodify(k, ops)
    return ret


# =============================================================================================
# kernel/bpf/trampoline.c
# =============================================================================================
def msleep(k: Kernel, msecs: int) -> None:
    """msleep() (kernel/time/timer.c): the model has no clock and a sleep changes no state: a no-op.

    It stays a named call so that the 6.1 trylock failure path reads like the kernel's and a
    test (or an interleaving scheduler) can observe it.
    """


def bpf_trampoline_put_fops(k: Kernel, tr: bt.bpf_trampoline) -> None:
    """bpf_trampoline_put() (trampoline.c, 6.0+; the same in 6.1 and 6.12): ``ftrace_free_filter(tr->fops)`` then kfree.

    If the fops is still ENABLED (its unregistration failed, e.g. ftrace was killed), the kernel
    frees the hashes of a live ops without a word (ftrace_free_filter checks nothing, in 6.1 as in 6.12) and
    the freed fops stays on ftrace_ops_list: a use after free the model keeps as a listed ops.
    """
    assert tr.fops is not None
    ftrace_free_filter(k, tr.fops)


def bpf_tramp_ftrace_ops_func(ops: ftrace_ops, cmd: int) -> int:
    """bpf_tramp_ftrace_ops_func() (trampoline.c, 6.0+): tr->fops' answer to SELF / PEER / DISABLE_PEER.

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
    tr: bt.bpf_trampoline = ops.private
    k = tr.kernel
    T: Any = k.policy.BPF_TRAMP_F  # the version's bpf.h: these bits exist in every merged-design version
    if cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF:
        if tr.flags & T.CALL_ORIG and not tr.flags & T.ORIG_STACK:
            if tr.flags & T.SHARE_IPMODIFY:
                k.warn("bpf_tramp_ftrace_ops_func", "SELF with BPF_TRAMP_F_SHARE_IPMODIFY already set",
                       once=True)
                return -Errno.EBUSY
            tr.flags |= T.SHARE_IPMODIFY
            return -Errno.EAGAIN
        return 0

    if not mutex_trylock(k, tr.mutex):
        msleep(k, 1)
        return -Errno.EAGAIN
    ret = 0
    if cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_PEER:
        tr.flags |= T.SHARE_IPMODIFY
        if tr.flags & T.CALL_ORIG and not tr.flags & T.ORIG_STACK:
            ret = k.policy.bpf_trampoline_update(k, tr, False)
    elif cmd == ftrace_ops_cmd.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY_PEER:
        tr.flags &= ~T.SHARE_IPMODIFY
        if tr.flags & T.ORIG_STACK:
            ret = k.policy.bpf_trampoline_update(k, tr, False)
    else:
        ret = -Errno.EINVAL
    mutex_unlock(k, tr.mutex)
    return ret
