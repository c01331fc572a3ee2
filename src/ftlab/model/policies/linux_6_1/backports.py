"""Upstream changes Debian's 6.1 carries on top of the 6.1 base, as the functions they leave.

Each function here is what one commit (registry: :data:`ftlab.model.policies.registry.CHANGES`)
makes of a base function; the package's ``OVERLAYS`` put it in the table.
"""

from __future__ import annotations

from ...direct import tmp_ops
from ...ftrace import ftrace_ops_init
from ...kernel import Kernel
from ...locks import mutex_lock, mutex_unlock
from ...ops import Addr, ftrace_ops
from ..merged import __ftrace_hash_update_ipmodify


def __modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """__modify_ftrace_direct_multi() (ftrace.c, 6.1.160+, with 3e9a18e1c3e9): tmp_ops, SELF via
    update_target, re-point.

    3e9a18e1c3e9 "ftrace: bpf: Fix IPMODIFY + DIRECT in modify_ftrace_direct()" (stable 6.1.160,
    Debian 6.1.162-1): after tmp_ops is registered, __ftrace_hash_update_ipmodify(ops, hash,
    hash, true) asks the DIRECT ops with ENABLE_SHARE_IPMODIFY_SELF about every record of its
    filter that a live patch holds; a non-zero answer skips the re-pointing (tmp_ops is
    unregistered either way) and is returned. direct_mutex must be held (not checked, as above).
    """
    hash = ops.hash.filter_hash
    tmp = tmp_ops(k)
    ftrace_ops_init(k, tmp)
    tmp.func_hash = ops.hash
    err = k.policy.register_ftrace_function_nolock(k, tmp)
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
    k.policy.unregister_ftrace_function(k, tmp)
    return err
