"""Kernel functions that two or more versions have verbatim, written once.

Each docstring says which versions put the function in their table. What the whole merged
design (Linux 6.0 and later) shares is in :mod:`.merged`; what every version shares is not a
policy's at all (:mod:`ftlab.model.ftrace`, :mod:`ftlab.model.direct`,
:mod:`ftlab.model.bpf_trampoline`). Calls into a slot go through ``k.policy``, so an overlay on
one version reaches this code too.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import bpf_trampoline as bt
from .. import direct
from ..calls import CallContext, arch_ftrace_set_direct_caller
from ..direct import CALL_DIRECT_FUNCS, check_direct_multi, ftrace_add_rec_direct, remove_direct_functions_hash
from ..errno import Errno
from ..flags import OPSF
from ..ftrace import FTRACE_REGS_ADDR, ftrace_find_rec_direct, ftrace_ops_init, ftrace_shutdown, ftrace_startup
from ..hash import ftrace_hash_empty
from ..kernel import Kernel
from ..locks import mutex_lock, mutex_unlock
from ..ops import Addr, ftrace_ops

F = OPSF


# =============================================================================================
# kernel/trace/ftrace.c
# =============================================================================================
def register_ftrace_function_nolock(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function_nolock() (ftrace.c, 6.0+): ftrace_ops_init, ftrace_startup under ftrace_lock.

    The same body was the whole of register_ftrace_function() before the series (5.18), so the
    5.18 table has it in that slot.
    """
    ftrace_ops_init(k, ops)
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_startup(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    return ret


def unregister_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """unregister_ftrace_function() (ftrace.c, 5.18 and seed v2, which leaves it unchanged):
    ftrace_shutdown under ftrace_lock."""
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_shutdown(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    return ret


def register_direct_multi_body(k: Kernel, ops: ftrace_ops, addr: Addr, *,
                               register: Callable[[Kernel, ftrace_ops], int], or_flags: bool,
                               refuse: Callable[[ftrace_ops], int] | None = None) -> int:
    """The body of register_ftrace_direct_multi() (ftrace.c) that 5.18, seed v2 and 6.1 share.

    The versions differ only in an extra refusal after the ENABLED check (``refuse``: v2 3/5's
    IPMODIFY+SHARE_IPMODIFY), whether MULTI_FLAGS is or-ed into the caller's flags (v2 1/5) or
    assigned, and which register they call (``register_ftrace_function`` or 6.1's ``_nolock``).
    The direct entries are made under direct_mutex first and removed if registering fails; func
    and trampoline stay set then.
    """
    if ops.func or ops.trampoline:
        return -Errno.EINVAL
    if not ops.flags & F.INITIALIZED:
        return -Errno.EINVAL
    if ops.flags & F.ENABLED:
        return -Errno.EINVAL
    if refuse is not None:
        ret = refuse(ops)
        if ret:
            return ret
    hash = ops.hash.filter_hash
    if ftrace_hash_empty(hash):
        return -Errno.EINVAL
    assert hash is not None
    mutex_lock(k, "direct_mutex")
    if any(k.direct_functions.get(ip) for ip in hash):
        mutex_unlock(k, "direct_mutex")
        return -Errno.EBUSY
    for ip in hash:
        ftrace_add_rec_direct(k, ip, addr)
    ops.func = CALL_DIRECT_FUNCS
    multi = int(k.policy.MULTI_FLAGS)
    ops.flags = (ops.flags | multi) if or_flags else multi
    ops.trampoline = FTRACE_REGS_ADDR
    err = register(k, ops)
    if err:
        remove_direct_functions_hash(k, hash, addr)
    mutex_unlock(k, "direct_mutex")
    return err


def call_direct_funcs(k: Kernel, ops: ftrace_ops, ctx: CallContext) -> None:
    """call_direct_funcs() (ftrace.c, 5.5 .. 6.3): orig_ax = direct_functions[ip], if any (the trampoline
    registered for the traced ip, whichever direct ops registered it)."""
    addr = ftrace_find_rec_direct(k, ctx.ip)
    if addr:
        arch_ftrace_set_direct_caller(k, ctx, addr)


def unregister_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """unregister_ftrace_direct_multi() (ftrace.c; the same in 5.18, seed v2 and 6.1).

    Unregister under direct_mutex, drop the direct entries, clear func and trampoline so that the
    ops can be registered again.
    """
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


def modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi() (ftrace.c, seed v2 2/5 and 6.1): checks, then the policy's
    __modify_ftrace_direct_multi under direct_mutex."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    mutex_lock(k, "direct_mutex")
    err = k.policy.modify_direct_body(k, ops, addr)
    mutex_unlock(k, "direct_mutex")
    return err


def modify_ftrace_direct_multi_nolock(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi_nolock() (ftrace.c, added by seed v2 2/5, kept by 6.1): the caller
    holds direct_mutex."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    return k.policy.modify_direct_body(k, ops, addr)


# =============================================================================================
# kernel/bpf/trampoline.c
# =============================================================================================
def bpf_trampoline_lookup_fops(k: Kernel, tr: bt.bpf_trampoline) -> ftrace_ops | None:
    """bpf_trampoline_lookup() (trampoline.c): its DIRECT_CALLS block, new in seed v2 5/5, kept by 6.1.

    A new trampoline gets its own zeroed ftrace_ops with private = tr and ops_func =
    bpf_tramp_ftrace_ops_func (the policy's); without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS the
    block is compiled out and tr->fops stays NULL (6.1's register_fentry then answers -ENOTSUPP).
    """
    if not k.arch.direct_calls:
        return None
    return ftrace_ops(f"tr->fops[{tr.key}]", None, 0, private=tr, ops_func=k.policy.bpf_tramp_ftrace_ops_func)


def bpf_tramp_image_alloc(k: Kernel, tr: bt.bpf_trampoline) -> bt.bpf_tramp_image:
    """bpf_tramp_image_alloc(key, idx) (trampoline.c, 5.18 and seed v2): a fresh page, ksym
    ``bpf_trampoline_<key>_<idx>``.

    ``idx`` is tr->selector, so each live image of a trampoline has its own name.
    """
    return bt.bpf_tramp_image(addr=f"{bt.IMAGE_PREFIX}{tr.key}_{tr.selector}", key=tr.key, ip=tr.func_addr)


def modify_fentry(k: Kernel, tr: bt.bpf_trampoline, old_addr: Addr, new_addr: Addr,
                  lock_direct_mutex: bool) -> int:
    """modify_fentry() (trampoline.c, seed v2 5/5 and 6.1): modify_ftrace_direct_multi or its _nolock
    twin; nothing undone on failure.

    Since stable 6.1.160 (3e9a18e1c3e9) the ftrace side asks SELF again, so a modify on a
    live-patched function can get SELF's -EAGAIN (or -EBUSY) back.
    """
    if tr.ftrace_managed:
        assert tr.fops is not None
        if lock_direct_mutex:
            return direct.modify_ftrace_direct_multi(k, tr.fops, new_addr)
        return direct.modify_ftrace_direct_multi_nolock(k, tr.fops, new_addr)
    return bt.bpf_arch_text_poke(k, tr, old_addr, new_addr)


def unregister_fentry(k: Kernel, tr: bt.bpf_trampoline, old_addr: Addr) -> int:
    """unregister_fentry() (trampoline.c, seed v2 5/5 and 6.1): unregister_ftrace_direct_multi(tr->fops);
    the module reference is put on success.

    On failure (ftrace killed: -ENODEV; not enabled: -EINVAL) the module reference is kept;
    unregister_ftrace_direct_multi has dropped the direct entries and fops->func anyway.
    """
    if tr.ftrace_managed:
        assert tr.fops is not None
        ret = direct.unregister_ftrace_direct_multi(k, tr.fops, old_addr)
    else:
        ret = bt.bpf_arch_text_poke(k, tr, old_addr, None)
    if not ret:
        bt.bpf_trampoline_module_put(k, tr)
    return ret
