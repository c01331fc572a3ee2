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
"""

from __future__ import annotations

from ...errors import KernelOops
from ..direct import (CALL_DIRECT_FUNCS, check_direct_multi, ftrace_add_rec_direct,
                      remove_direct_functions_hash, tmp_ops)
from ..errno import Errno
from ..flags import OPSF, RECF, ftrace_ops_cmd  # noqa: F401  (ftrace_ops_cmd is part of the policy interface)
from ..ftrace import (FTRACE_REGS_ADDR, ftrace_find_rec_direct, ftrace_ops_init, ftrace_shutdown,
                      ftrace_startup, ops_references_ip)
from ..hash import ftrace_hash, ftrace_hash_empty
from ..kernel import Kernel
from ..locks import mutex_is_locked, mutex_lock, mutex_unlock
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

    # rollback: undo every differing record before the failing one
    for ip in diff:
        i = cat.index(ip)
        if i is None:
            continue
        flags = k.get_flags(i)
        if flags & R.DISABLED:
            continue
        if ip == end:
            break
        if ip in new_hash.ips:
            k.set_flags(i, flags & ~R.IPMODIFY)
        else:
            k.set_flags(i, flags | R.IPMODIFY)
    return -Errno.EBUSY


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
            ret = found_op.ops_func(found_op, cmd)
            if ret:
                mutex_unlock(k, "direct_mutex")
                return ret
    return 1


def register_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function() (ftrace.c), seed v2 3/5: prepare, startup, release direct_mutex if 1."""
    ftrace_ops_init(k, ops)
    ret = prepare_direct_functions_for_ipmodify(k, ops)
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

    3/5 adds: IPMODIFY together with SHARE_IPMODIFY -> -EINVAL. The direct entries are made
    under direct_mutex before register_ftrace_function (which, for a DIRECT ops, does not take
    it again); on failure they are removed, while func and trampoline stay set.
    """
    if ops.func or ops.trampoline:
        return -Errno.EINVAL
    if not ops.flags & F.INITIALIZED:
        return -Errno.EINVAL
    if ops.flags & F.ENABLED:
        return -Errno.EINVAL
    if ops.flags & F.IPMODIFY and ops.flags & F.SHARE_IPMODIFY:
        return -Errno.EINVAL
    hash = ops.hash.filter_hash
    if ftrace_hash_empty(hash):
        return -Errno.EINVAL
    assert hash is not None
    mutex_lock(k, "direct_mutex")
    err = -Errno.EBUSY
    if any(ftrace_find_rec_direct(k, ip) for ip in hash):
        mutex_unlock(k, "direct_mutex")
        return err
    for ip in hash:
        ftrace_add_rec_direct(k, ip, addr)
    ops.func = CALL_DIRECT_FUNCS
    ops.flags |= MULTI_FLAGS
    ops.trampoline = FTRACE_REGS_ADDR
    err = register_ftrace_function(k, ops)
    if err:
        remove_direct_functions_hash(k, hash, addr)
    mutex_unlock(k, "direct_mutex")
    return err


def unregister_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """unregister_ftrace_direct_multi() (ftrace.c), same in v2 and 6.1: unregister, drop entries, clear func."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    hash = ops.hash.filter_hash
    mutex_lock(k, "direct_mutex")
    err = k.policy.unregister_ftrace_function(k, ops)
    remove_direct_functions_hash(k, hash, addr)
    mutex_unlock(k, "direct_mutex")
    ops.func = None
    ops.trampoline = 0
    return err


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


def modify_ftrace_direct_multi_nolock(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi_nolock() (ftrace.c), new in v2 2/5: the caller holds direct_mutex."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    return __modify_ftrace_direct_multi(k, ops, addr)


def modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi() (ftrace.c), v2 2/5: take direct_mutex around the body."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    mutex_lock(k, "direct_mutex")
    err = __modify_ftrace_direct_multi(k, ops, addr)
    mutex_unlock(k, "direct_mutex")
    return err
