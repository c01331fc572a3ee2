"""Seed v2's kernel/trace/ftrace.c: Song Liu's "ftrace: host klp and bpf trampoline together", v2 (2 Jun 2022).

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

from ....errors import KernelOops
from ...direct import tmp_ops
from ...errno import Errno
from ...flags import OPSF, RECF, ftrace_ops_cmd
from ...ftrace import ftrace_hash_ipmodify_rollback, ftrace_ops_init, ftrace_startup, ops_references_ip
from ...hash import ftrace_hash
from ...kernel import Kernel
from ...locks import cross_call, mutex_is_locked, mutex_lock, mutex_unlock
from ...ops import Addr, ftrace_ops
from ...refusals import kept
from ..shared import register_direct_multi_body

F = OPSF
R = RECF

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
    return ftrace_hash_ipmodify_rollback(k, diff, old_hash, new_hash, end)


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
    asked = False  # an ops_func agreed to share for an earlier ip
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
                _kept_sharing(k, asked)
                return ret
            cross_call(k, "ops_func ENABLE")
            ret = found_op.ops_func(found_op, cmd)
            if ret:
                mutex_unlock(k, "direct_mutex")
                _kept_sharing(k, asked)
                return ret
            asked = True
    return 1


def _kept_sharing(k: Kernel, asked: bool) -> None:
    """The sharing obtained for earlier ips is not undone when a later one fails (nor when the
    registration itself is refused after the walk)."""
    if asked:
        kept(k, "prepare_direct_functions_for_ipmodify", "the DIRECT ops asked to share stay sharing")


def register_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function() (ftrace.c), seed v2 3/5: prepare, startup, release direct_mutex if 1."""
    ftrace_ops_init(k, ops)
    ret = k.policy.prepare_direct_functions_for_ipmodify(k, ops)
    if ret < 0:
        return ret
    direct_mutex_locked = ret == 1
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_startup(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    if direct_mutex_locked:
        mutex_unlock(k, "direct_mutex")
        if ret < 0:
            _kept_sharing(k, bool(ops.flags & F.IPMODIFY) and any(
                op.flags & F.DIRECT and op.flags & F.SHARE_IPMODIFY for op in k.ftrace_ops_list))
    return ret


def register_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct_multi() (ftrace.c) with v2 1/5 (``flags |= MULTI_FLAGS``) and 3/5.

    3/5 adds: IPMODIFY together with SHARE_IPMODIFY -> -EINVAL (after the ENABLED check). For a
    DIRECT ops, register_ftrace_function does not take direct_mutex again (prepare returns 0).
    """
    return register_direct_multi_body(k, ops, addr, register=k.policy.register_ftrace_function, or_flags=True,
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
    err = k.policy.register_ftrace_function(k, tmp)
    if err:
        return err
    mutex_lock(k, "ftrace_lock")
    hash = ops.hash.filter_hash
    if hash is not None:
        for ip in hash:
            if ip in k.direct_functions:
                k.direct_functions[ip] = addr
    mutex_unlock(k, "ftrace_lock")
    k.policy.unregister_ftrace_function(k, tmp)
    return err
