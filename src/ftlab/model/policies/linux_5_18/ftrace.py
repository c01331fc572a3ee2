"""Linux 5.18's kernel/trace/ftrace.c: before the series (any 5.5-5.19 kernel; the code did not change there).

Facts §5: every direct ops carries IPMODIFY (MULTI_FLAGS and the legacy direct_ops), there is no
ops_func and no SHARE_IPMODIFY, and __ftrace_hash_update_ipmodify only knows IPMODIFY ops: a
second one on a record is refused with -EBUSY after a rollback. So a live patch and a BPF
trampoline refuse each other with -EBUSY in both orders. register_ftrace_function takes only
ftrace_lock. The BPF trampoline of this era attaches through the legacy single-ip API
(register_ftrace_direct / modify_ftrace_direct / unregister_ftrace_direct on the shared
``direct_ops``), which this module models too. Sources: the removed ("-") lines of the seed
series, kernel/trace/ftrace.c of 6.1 for the unchanged parts, facts §5.
"""

from __future__ import annotations

import enum

from ...direct import CALL_DIRECT_FUNCS, check_direct_multi, ftrace_add_rec_direct, tmp_ops
from ...errno import Errno
from ...flags import OPSF, RECF
from ...ftrace import (
    FTRACE_REGS_ADDR,
    ftrace_find_rec_direct,
    ftrace_hash_ipmodify_rollback,
    ftrace_location,
    ftrace_ops_init,
    ftrace_set_filter_ip,
)
from ...hash import ftrace_hash
from ...kernel import Kernel
from ...locks import mutex_lock, mutex_unlock
from ...ops import Addr, ftrace_ops
from ..shared import register_direct_multi_body

F = OPSF
R = RECF

#: MULTI_FLAGS (ftrace.c) before v2 1/5: IPMODIFY is forced on direct_multi ops, and assigned.
MULTI_FLAGS = F.IPMODIFY | F.DIRECT | F.SAVE_REGS


class ftrace_ops_cmd(enum.IntEnum):
    """5.18 has no enum ftrace_ops_cmd (and no ops_func): empty."""


def __ftrace_hash_update_ipmodify(k: Kernel, ops: ftrace_ops, old_hash: ftrace_hash | None,
                                  new_hash: ftrace_hash | None) -> int:
    """__ftrace_hash_update_ipmodify() (ftrace.c, 5.18): one IPMODIFY ops per record, else -EBUSY."""
    if not ops.flags & F.ENABLED:
        return 0
    if not ops.flags & F.IPMODIFY:
        return 0
    if new_hash is None or old_hash is None:
        return -Errno.EINVAL
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
                end = ip
                break
            k.set_flags(i, flags | R.IPMODIFY)
        else:
            k.set_flags(i, flags & ~R.IPMODIFY)
    else:
        return 0
    return ftrace_hash_ipmodify_rollback(k, diff, old_hash, new_hash, end)


def register_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct_multi() (ftrace.c, 5.18): ``flags = MULTI_FLAGS`` (with IPMODIFY)."""
    return register_direct_multi_body(k, ops, addr, register=k.policy.register_ftrace_function, or_flags=False)


def modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi() (ftrace.c, 5.18): tmp_ops under direct_mutex, re-point entries."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    mutex_lock(k, "direct_mutex")
    tmp = tmp_ops(k)
    ftrace_ops_init(k, tmp)
    tmp.func_hash = ops.hash
    err = k.policy.register_ftrace_function(k, tmp)
    if not err:
        mutex_lock(k, "ftrace_lock")
        for ip in ops.hash.filter_hash or ():
            if ip in k.direct_functions:
                k.direct_functions[ip] = addr
        mutex_unlock(k, "ftrace_lock")
        k.policy.unregister_ftrace_function(k, tmp)
    mutex_unlock(k, "direct_mutex")
    return err


# ---------------------------------------------------------------------------------------------
# The legacy single-ip API (what the 5.18 BPF trampoline uses)
# ---------------------------------------------------------------------------------------------
def direct_ops(k: Kernel) -> ftrace_ops:
    """The static ``direct_ops`` (ftrace.c, 5.18): IPMODIFY|DIRECT|SAVE_REGS|PERMANENT, preset trampoline."""
    ops = k.statics.get("direct_ops")
    if ops is None:
        ops = ftrace_ops("direct_ops", CALL_DIRECT_FUNCS,
                         F.IPMODIFY | F.DIRECT | F.SAVE_REGS | F.PERMANENT,
                         trampoline=FTRACE_REGS_ADDR, core_data=True)
        k.statics["direct_ops"] = ops
    return ops


def _stub_ops(k: Kernel) -> ftrace_ops:
    """The static ``stub_ops`` of ftrace_modify_direct_caller (ftrace.c)."""
    ops = k.statics.get("stub_ops")
    if ops is None:
        ops = k.statics["stub_ops"] = ftrace_ops("stub_ops", "ftrace_stub", 0, core_data=True)
    return ops


def register_ftrace_direct(k: Kernel, ip: int, addr: Addr) -> int:
    """register_ftrace_direct() (ftrace.c, 5.18): add ``ip`` to direct_ops, registering it on first use.

    Without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS it is the ftrace.h inline stub: -ENODEV.
    """
    if not k.arch.direct_calls:
        return -Errno.ENODEV
    mutex_lock(k, "direct_mutex")
    try:
        ip = ftrace_location(k, ip)
        if not ip:
            return -Errno.ENODEV
        if ftrace_find_rec_direct(k, ip):
            return -Errno.EBUSY
        if k.rec(ip).flags & R.DIRECT:
            k.warn("register_ftrace_direct", "record already DIRECT")
            return -Errno.ENODEV
        ftrace_add_rec_direct(k, ip, addr)
        ops = direct_ops(k)
        ret = ftrace_set_filter_ip(k, ops, ip, False, False)
        if not ret and not ops.flags & F.ENABLED:
            ret = k.policy.register_ftrace_function(k, ops)
            if ret:
                ftrace_set_filter_ip(k, ops, ip, True, False)
        if ret:
            del k.direct_functions[ip]
        return ret
    finally:
        mutex_unlock(k, "direct_mutex")


def unregister_ftrace_direct(k: Kernel, ip: int, addr: Addr) -> int:
    """unregister_ftrace_direct() (ftrace.c, 5.18): drop ``ip``; unregister direct_ops with its last ip.

    Without DIRECT_CALLS: the ftrace.h stub, -ENODEV.
    """
    if not k.arch.direct_calls:
        return -Errno.ENODEV
    mutex_lock(k, "direct_mutex")
    try:
        ip = ftrace_location(k, ip)
        if not ip or ip not in k.direct_functions:
            return -Errno.ENODEV
        ops = direct_ops(k)
        hash = ops.hash.filter_hash
        if hash is not None and hash.count == 1:
            k.policy.unregister_ftrace_function(k, ops)
        ret = ftrace_set_filter_ip(k, ops, ip, True, False)
        if ret:
            k.warn("unregister_ftrace_direct", f"filter removal failed ({ret})")
        del k.direct_functions[ip]
        return ret
    finally:
        mutex_unlock(k, "direct_mutex")


def ftrace_modify_direct_caller(k: Kernel, ip: int, new_addr: Addr) -> int:
    """ftrace_modify_direct_caller() (ftrace.c, 5.18): a stub ops forces the list function meanwhile.

    Called with direct_mutex and ftrace_lock held; drops ftrace_lock around the stub registration.
    """
    mutex_unlock(k, "ftrace_lock")
    stub = _stub_ops(k)
    ret = ftrace_set_filter_ip(k, stub, ip, False, False)
    if not ret:
        ret = k.policy.register_ftrace_function(k, stub)
        if ret:
            ftrace_set_filter_ip(k, stub, ip, True, False)
        else:
            k.direct_functions[ip] = new_addr
            k.policy.unregister_ftrace_function(k, stub)
            ftrace_set_filter_ip(k, stub, ip, True, False)
    mutex_lock(k, "ftrace_lock")
    return ret


def modify_ftrace_direct(k: Kernel, ip: int, old_addr: Addr, new_addr: Addr) -> int:
    """modify_ftrace_direct() (ftrace.c, 5.18): re-point one ip's direct trampoline.

    Without DIRECT_CALLS: the ftrace.h stub, -ENODEV.
    """
    if not k.arch.direct_calls:
        return -Errno.ENODEV
    mutex_lock(k, "direct_mutex")
    mutex_lock(k, "ftrace_lock")
    try:
        ip = ftrace_location(k, ip)
        if not ip or ip not in k.direct_functions:
            return -Errno.ENODEV
        if k.direct_functions[ip] != old_addr:
            return -Errno.EINVAL
        if k.rec(ip).count == 1:
            return ftrace_modify_direct_caller(k, ip, new_addr)
        k.direct_functions[ip] = new_addr
        return 0
    finally:
        mutex_unlock(k, "ftrace_lock")
        mutex_unlock(k, "direct_mutex")
