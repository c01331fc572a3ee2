"""Linux 6.12's kernel/trace/ftrace.c: the per-ops direct API as 6.4 renamed it, with direct_call.

What 6.12 has beyond the merged design (:mod:`..merged`, where its IPMODIFY rules are, the same
code as 6.1's):

1. The ``_multi`` suffix is gone (da8bdfbd4223, 8788ca164eb4: the single-ip API is removed):
   register_ftrace_direct(ops, addr), unregister_ftrace_direct(ops, addr, free_filters),
   modify_ftrace_direct(_nolock)(ops, addr).
2. The trampoline is also stored in the ops (dbaccb618fab): ``ops->direct_call`` is set on
   registration and by a modify, and call_direct_funcs reads it instead of looking the ip up
   in direct_functions.
3. The direct_functions hash is replaced, not changed in place, on registration (d05cb470663a,
   v6.7); a failed registration then left its entries behind until 56b3c85e153b (6.12.59) made
   it reset them (reset_direct). The base here is the in-place form; the registry composes the
   two changes onto it (:mod:`.changes`).

MULTI_FLAGS is DIRECT|SAVE_REGS on x86 (an arch with ftrace regs; others use SAVE_ARGS) and
is assigned, as in 6.1.
"""

from __future__ import annotations

from ... import ftrace as core
from ...calls import CallContext, arch_ftrace_set_direct_caller
from ...direct import (
    CALL_DIRECT_FUNCS,
    check_direct_multi,
    ftrace_add_rec_direct,
    remove_direct_functions_hash,
    tmp_ops,
)
from ...errno import Errno
from ...flags import FTRACE_OPS_FL_SUBOP, OPSF
from ...ftrace import (
    FTRACE_REGS_ADDR,
    ftrace_find_rec_direct,
    ftrace_free_filter,
    ftrace_hash_move_and_update_subops,
    ftrace_ops_init,
)
from ...hash import ftrace_hash, ftrace_hash_empty
from ...kernel import Kernel
from ...locks import mutex_lock, mutex_unlock
from ...ops import Addr, ftrace_ops

F = OPSF

#: MULTI_FLAGS (ftrace.c) in 6.12 on x86_64, assigned (``ops->flags = MULTI_FLAGS``).
MULTI_FLAGS = F.DIRECT | F.SAVE_REGS


def call_direct_funcs(k: Kernel, ops: ftrace_ops, ctx: CallContext) -> None:
    """call_direct_funcs() (ftrace.c, 6.4+): orig_ax = READ_ONCE(ops->direct_call), if set.

    The trampoline is the calling ops' own, whatever direct_functions says for the ip.
    """
    addr = ops.direct_call
    if addr:
        arch_ftrace_set_direct_caller(k, ctx, addr)


def register_ftrace_direct(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct() (ftrace.c, 6.4 .. 6.6 form): enter the ops' ips in direct_functions in
    place, set func / flags / trampoline / direct_call, register with _nolock; on failure remove
    the entries again (func and trampoline stay set, as in 6.1).

    -EINVAL: func or trampoline already set, not INITIALIZED, already ENABLED, an empty filter;
    -EBUSY: an ip already has a direct trampoline. d05cb470663a replaces the in-place update by a
    copy of the hash (:func:`.changes.register_ftrace_direct_copy`).
    """
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
    ops.flags = int(k.policy.MULTI_FLAGS)
    ops.trampoline = FTRACE_REGS_ADDR
    ops.direct_call = addr
    err = k.policy.register_ftrace_function_nolock(k, ops)
    if err:
        remove_direct_functions_hash(k, hash, addr)
    mutex_unlock(k, "direct_mutex")
    return err


def unregister_ftrace_direct(k: Kernel, ops: ftrace_ops, addr: Addr, free_filters: bool) -> int:
    """unregister_ftrace_direct() (ftrace.c, 6.4+): unregister under direct_mutex, drop the entries,
    clear func and trampoline (56b3c85e153b spells that reset_direct, with the same effect);
    ``free_filters``: ftrace_free_filter too (the sample modules ask for it, BPF does not)."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    hash = ops.hash.filter_hash
    mutex_lock(k, "direct_mutex")
    err = k.policy.unregister_ftrace_function(k, ops)
    remove_direct_functions_hash(k, hash, addr)
    ops.func = None
    ops.trampoline = 0
    mutex_unlock(k, "direct_mutex")
    if free_filters:
        ftrace_free_filter(k, ops)
    return err


def unregister_direct(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """unregister_ftrace_direct(ops, addr, false) (ftrace.c, 6.4+): the policy's unregister_direct, what
    BPF and the dispatcher of :mod:`ftlab.model.direct` ask for (a sample module then frees its
    filter itself)."""
    return unregister_ftrace_direct(k, ops, addr, False)


def __modify_ftrace_direct(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """__modify_ftrace_direct() (ftrace.c, 6.4 .. 6.12.61): tmp_ops (with direct_call = addr) on the
    ops' hash, re-point the entries and ops->direct_call under ftrace_lock, unregister tmp_ops.

    As in 6.1 before 3e9a18e1c3e9, nothing asks the DIRECT ops again whether it may share with an
    IPMODIFY ops; the registry composes that change (:func:`.changes.__modify_ftrace_direct_self`).
    direct_mutex must be held (lockdep only, not checked).
    """
    hash = ops.hash.filter_hash
    tmp = tmp_ops(k)
    ftrace_ops_init(k, tmp)
    tmp.func_hash = ops.hash
    tmp.direct_call = addr
    err = k.policy.register_ftrace_function_nolock(k, tmp)
    if err:
        return err
    repoint_direct(k, ops, hash, addr)
    k.policy.unregister_ftrace_function(k, tmp)
    return err


def repoint_direct(k: Kernel, ops: ftrace_ops, hash: object, addr: Addr) -> None:
    """The re-pointing step of __modify_ftrace_direct() (ftrace.c, 6.4+): every direct_functions entry
    of the ops' filter and ``ops->direct_call`` get ``addr``, under ftrace_lock."""
    mutex_lock(k, "ftrace_lock")
    if hash is not None:
        for ip in hash:  # type: ignore[attr-defined]
            if ip in k.direct_functions:
                k.direct_functions[ip] = addr
    ops.direct_call = addr
    mutex_unlock(k, "ftrace_lock")


def ftrace_hash_move_and_update_ops(k: Kernel, ops: ftrace_ops, new_hash: ftrace_hash, enable: bool) -> int:
    """ftrace_hash_move_and_update_ops() (ftrace.c, 6.11+): a subops' new hash goes through its manager
    (ftrace_hash_move_and_update_subops); so does that of an ops that is not enabled but shares its
    func_hash with an enabled subops of some manager on ftrace_ops_list (global_ops while the top
    instance's function_graph runs: its filter files write global_ops' hash); else as before 6.11."""
    if ops.flags & FTRACE_OPS_FL_SUBOP:
        return ftrace_hash_move_and_update_subops(k, ops, new_hash, enable)
    if not ops.flags & F.ENABLED:
        for op in list(k.ftrace_ops_list):
            for sub in op.subop_list:
                if sub.flags & F.ENABLED and sub.func_hash is ops.func_hash:
                    return ftrace_hash_move_and_update_subops(k, sub, new_hash, enable)
    # __ftrace_hash_move_and_update_ops: what ftrace_hash_move_and_update_ops was before 6.11
    return core.ftrace_hash_move_and_update_ops(k, ops, new_hash, enable)
