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
"""

from __future__ import annotations

import enum

from ...errors import KernelOops
from ..direct import (CALL_DIRECT_FUNCS, check_direct_multi, ftrace_add_rec_direct,
                      remove_direct_functions_hash, tmp_ops)
from ..errno import Errno
from ..flags import OPSF, RECF
from ..ftrace import (FTRACE_REGS_ADDR, FTRACE_WARN_ON, ftrace_find_rec_direct, ftrace_ops_init,
                      ftrace_shutdown, ftrace_startup, ops_references_ip)
from ..hash import ftrace_hash, ftrace_hash_empty
from ..kernel import Kernel
from ..locks import mutex_lock, mutex_unlock
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
                ret = ops.ops_func(ops, ftrace_ops_cmd.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY_SELF)
                if ret:
                    return ret
            elif is_ipmodify:
                k.set_flags(i, flags | R.IPMODIFY)
        elif is_ipmodify:
            k.set_flags(i, flags & ~R.IPMODIFY)
    else:
        return 0

    for ip in walk:  # rollback (only IPMODIFY ops get here; update_target is never set for them)
        i = cat.index(ip)
        if i is None:
            continue
        flags = k.get_flags(i)
        if flags & R.DISABLED:
            continue
        if ip == end:
            break
        in_old, in_new = ip in old_hash.ips, ip in new_hash.ips
        if in_old == in_new:
            continue
        if in_new:
            k.set_flags(i, flags & ~R.IPMODIFY)
        else:
            k.set_flags(i, flags | R.IPMODIFY)
    return -Errno.EBUSY


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
    ret = prepare_direct_functions_for_ipmodify(k, ops)
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
    if ops.func or ops.trampoline:
        return -Errno.EINVAL
    if not ops.flags & F.INITIALIZED:
        return -Errno.EINVAL
    if ops.flags & F.ENABLED:
        return -Errno.EINVAL
    hash = ops.hash.filter_hash
    if ftrace_hash_empty(hash):
        return -Errno.EINVAL
    assert hash is not None
    mutex_lock(k, "direct_mutex")
    if any(ftrace_find_rec_direct(k, ip) for ip in hash):
        mutex_unlock(k, "direct_mutex")
        return -Errno.EBUSY
    for ip in hash:
        ftrace_add_rec_direct(k, ip, addr)
    ops.func = CALL_DIRECT_FUNCS
    ops.flags = int(MULTI_FLAGS)
    ops.trampoline = FTRACE_REGS_ADDR
    err = register_ftrace_function_nolock(k, ops)
    if err:
        remove_direct_functions_hash(k, hash, addr)
    mutex_unlock(k, "direct_mutex")
    return err


def unregister_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """unregister_ftrace_direct_multi() (ftrace.c, 6.1): same shape as v2's."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    hash = ops.hash.filter_hash
    mutex_lock(k, "direct_mutex")
    err = unregister_ftrace_function(k, ops)
    remove_direct_functions_hash(k, hash, addr)
    mutex_unlock(k, "direct_mutex")
    ops.func = None
    ops.trampoline = 0
    return err


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


def modify_ftrace_direct_multi_nolock(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi_nolock() (ftrace.c, 6.1): the caller holds direct_mutex."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    return __modify_ftrace_direct_multi(k, ops, addr)


def modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi() (ftrace.c, 6.1): direct_mutex around the body."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    mutex_lock(k, "direct_mutex")
    err = __modify_ftrace_direct_multi(k, ops, addr)
    mutex_unlock(k, "direct_mutex")
    return err
