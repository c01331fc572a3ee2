"""Linux 6.1's kernel/trace/ftrace.c: the direct-call API as 6.0 merged it.

What 6.1 has beyond the merged design (:mod:`..merged`, where its IPMODIFY rules are): the
``_multi`` direct API on a per-ops basis. MULTI_FLAGS is DIRECT|SAVE_REGS and is *assigned*
(caller bits are dropped); register_ftrace_direct_multi registers with
register_ftrace_function_nolock (the caller's direct_mutex is already held), so a DIRECT ops
is never asked PEER by its own registration.

ftrace_ops_init's ops_mutex (a Debian backport) only serialises concurrent first
initialisations and is not modelled. The legacy single-ip direct API (register_ftrace_direct)
is not modelled for this version: no client of 6.1 uses it.
"""

from __future__ import annotations

from ...direct import tmp_ops
from ...flags import OPSF
from ...ftrace import ftrace_ops_init
from ...kernel import Kernel
from ...locks import mutex_lock, mutex_unlock
from ...ops import Addr, ftrace_ops
from ..shared import register_direct_multi_body

F = OPSF

#: MULTI_FLAGS (ftrace.c) in 6.1, assigned (``ops->flags = MULTI_FLAGS``).
MULTI_FLAGS = F.DIRECT | F.SAVE_REGS


def register_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct_multi() (ftrace.c, 6.1): ``flags = MULTI_FLAGS``, register _nolock."""
    return register_direct_multi_body(k, ops, addr, register=k.policy.register_ftrace_function_nolock,
                                      or_flags=False)


def __modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """__modify_ftrace_direct_multi() (ftrace.c, 6.0 .. 6.1.159): tmp_ops on the ops' hash, re-point.

    Registers the STUB tmp_ops on the direct ops' func_hash (every record goes to count >= 2
    and the list function), re-points each direct_functions entry under ftrace_lock, then
    unregisters tmp_ops so the sites call ``addr`` directly. Nothing asks the DIRECT ops again
    whether it may share with an IPMODIFY ops on these records: 3e9a18e1c3e9 (6.1.160) adds
    that (:func:`..backports.__modify_ftrace_direct_multi`). direct_mutex must be held (a
    lockdep assertion in the kernel, silent without lockdep, so the model does not check it).
    """
    tmp = tmp_ops(k)
    ftrace_ops_init(k, tmp)
    tmp.func_hash = ops.hash
    err = k.policy.register_ftrace_function_nolock(k, tmp)
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
