"""Upstream changes between 6.12 builds, as the functions they leave (registry: ``CHANGES``).

The package's ``OVERLAYS`` put them in the table: ``linux-6.12`` (Debian's 6.12.95) carries them
all, ``linux-6.12.58`` only d05cb470663a (every 6.12 has it: v6.7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ... import bpf_trampoline as bt
from ... import direct
from ...direct import CALL_DIRECT_FUNCS, remove_direct_functions_hash, tmp_ops
from ...errno import Errno
from ...flags import OPSF
from ...ftrace import FTRACE_REGS_ADDR, ftrace_find_rec_direct, ftrace_location, ftrace_ops_init, ftrace_set_filter_ip
from ...hash import ftrace_hash_empty
from ...kernel import Kernel
from ...locks import mutex_lock, mutex_unlock
from ...ops import Addr, ftrace_ops
from .. import rebind
from ..merged import __ftrace_hash_update_ipmodify
from .ftrace import repoint_direct

F = OPSF


def _register_copy(k: Kernel, ops: ftrace_ops, addr: Addr, reset_on_error: bool) -> int:
    """The body of register_ftrace_direct() (ftrace.c) from d05cb470663a on; 56b3c85e153b adds the
    reset on failure (``reset_on_error``)."""
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
    # a copy of direct_functions with the old entries and the ops' new ones, published at once
    new_hash = dict(k.direct_functions)
    for ip in hash:
        new_hash[ip] = addr
    k.direct_functions = new_hash
    ops.func = CALL_DIRECT_FUNCS
    ops.flags = int(k.policy.MULTI_FLAGS)
    ops.trampoline = FTRACE_REGS_ADDR
    ops.direct_call = addr
    err = k.policy.register_ftrace_function_nolock(k, ops)
    if err and reset_on_error:
        reset_direct(k, ops, addr)
    mutex_unlock(k, "direct_mutex")
    return err


def register_ftrace_direct_copy(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct() (ftrace.c, v6.7 .. 6.12.58), with d05cb470663a "ftrace: Fix
    modification of direct_function hash while in use": direct_functions is replaced by a copy
    holding the old entries and the ops' new ones. A failed registration leaves the new entries
    (and func / trampoline) behind: the next attempt on those ips is -EBUSY, so a BPF trampoline
    that a live patch's SELF asked to rebuild (-EAGAIN) cannot register again and the attach
    fails."""
    return _register_copy(k, ops, addr, reset_on_error=False)


def reset_direct(k: Kernel, ops: ftrace_ops, addr: Addr) -> None:
    """reset_direct() (ftrace.c, 56b3c85e153b, 6.12.59+): drop the ops' direct_functions entries that
    point at ``addr``; func and trampoline back to 0 so the ops can register again (flags keep
    MULTI_FLAGS; direct_call is not cleared)."""
    remove_direct_functions_hash(k, ops.hash.filter_hash, addr)
    ops.func = None
    ops.trampoline = 0


def register_ftrace_direct_reset(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct() (ftrace.c, 6.12.59+), with 56b3c85e153b "ftrace: Fix BPF fexit with
    livepatch": a failed registration runs reset_direct, so a retry starts clean."""
    return _register_copy(k, ops, addr, reset_on_error=True)


def __modify_ftrace_direct_self(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """__modify_ftrace_direct() (ftrace.c, 6.12.62+), with 3e9a18e1c3e9 "ftrace: bpf: Fix IPMODIFY +
    DIRECT in modify_ftrace_direct()": after tmp_ops is registered, __ftrace_hash_update_ipmodify
    (ops, hash, hash, true) asks the DIRECT ops with SELF about the records of its filter a live
    patch holds; a non-zero answer skips the re-pointing and is returned (tmp_ops is
    unregistered either way)."""
    hash = ops.hash.filter_hash
    tmp = tmp_ops(k)
    ftrace_ops_init(k, tmp)
    tmp.func_hash = ops.hash
    tmp.direct_call = addr
    err = k.policy.register_ftrace_function_nolock(k, tmp)
    if err:
        return err
    err = __ftrace_hash_update_ipmodify(k, ops, hash, hash, True)
    if not err:
        repoint_direct(k, ops, hash, addr)
    k.policy.unregister_ftrace_function(k, tmp)
    return err


def _leave_fops(tr: bt.bpf_trampoline) -> None:
    """The -EAGAIN block of bpf_trampoline_update after 56b3c85e153b: tr->fops is left as it is."""


def without_retry_reset(update: Callable[..., Any]) -> Callable[..., Any]:
    """bpf_trampoline_update() (trampoline.c, 6.12.59+), with 56b3c85e153b: the two lines of the -EAGAIN
    block that reset tr->fops' func and trampoline are gone (register_ftrace_direct's failure
    path resets them now), so a retry from the *modify* path keeps the registered fops working.
    The same function otherwise: its retry block reads as :func:`_leave_fops`."""
    return rebind(update, retry_reset_fops=_leave_fops)


def register_fentry_checked(k: Kernel, tr: bt.bpf_trampoline, new_addr: Addr) -> int:
    """register_fentry() (trampoline.c, 6.12.63+), with fea3f5e83c5c "bpf: Handle return value of
    ftrace_set_filter_ip in register_fentry": its error (-ENODEV once ftrace is dead) is returned
    before anything registers."""
    ip = tr.func_addr
    if ftrace_location(k, ip):
        if tr.fops is None:
            return -Errno.ENOTSUPP
        tr.ftrace_managed = True
    if tr.ftrace_managed:
        assert tr.fops is not None
        ret = ftrace_set_filter_ip(k, tr.fops, ip, False, True)
        if ret:
            return ret
        return direct.register_ftrace_direct_multi(k, tr.fops, new_addr)
    return bt.bpf_arch_text_poke(k, tr, None, new_addr)
