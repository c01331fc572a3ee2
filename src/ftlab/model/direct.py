"""The direct-call API's shared parts: direct_functions and the multi-ops helpers.

Kernel source: kernel/trace/ftrace.c, the CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS section
(direct_functions, call_direct_funcs, ftrace_add_rec_direct, remove_direct_functions_hash,
check_direct_multi, tmp_ops of __modify_ftrace_direct_multi). The entry points whose behaviour
differs between versions (register/unregister/modify_ftrace_direct_multi and the _nolock
variant of the seed's 2/5) are in the policy modules and dispatched from here.
"""

from __future__ import annotations

from typing import Callable

from .errno import Errno
from .flags import OPSF
from .hash import ftrace_hash, ftrace_hash_empty
from .kernel import Kernel
from .locks import mutex_lock, mutex_unlock
from .ops import Addr, ftrace_ops

F = OPSF

#: call_direct_funcs (ftrace.c): the func of every direct ops; stores the direct trampoline of
#: the traced ip in regs->orig_ax when called from the list function.
CALL_DIRECT_FUNCS = "call_direct_funcs"


def ftrace_add_rec_direct(k: Kernel, ip: int, addr: Addr) -> bool:
    """ftrace_add_rec_direct() (ftrace.c): enter ip -> addr in direct_functions (no -ENOMEM in the model)."""
    k.direct_functions[ip] = addr
    return True


def remove_direct_functions_hash(k: Kernel, hash: ftrace_hash | None, addr: Addr) -> None:
    """remove_direct_functions_hash() (ftrace.c): drop the entries of ``hash`` that point at ``addr``."""
    if hash is None:
        return
    for ip in hash:
        if k.direct_functions.get(ip) == addr:
            del k.direct_functions[ip]


def check_direct_multi(k: Kernel, ops: ftrace_ops) -> int:
    """check_direct_multi() (ftrace.c): INITIALIZED and both MULTI_FLAGS bits, else -EINVAL."""
    multi = k.policy.MULTI_FLAGS
    if not ops.flags & F.INITIALIZED:
        return -Errno.EINVAL
    if (ops.flags & multi) != multi:
        return -Errno.EINVAL
    return 0


def register_direct_multi_body(k: Kernel, ops: ftrace_ops, addr: Addr, *,
                               register: Callable[[Kernel, ftrace_ops], int], or_flags: bool,
                               refuse: Callable[[ftrace_ops], int] | None = None) -> int:
    """The body of register_ftrace_direct_multi() (ftrace.c) that 5.18, v2 and 6.1 share.

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
    ops.trampoline = "ftrace_regs_caller"  # FTRACE_REGS_ADDR
    err = register(k, ops)
    if err:
        remove_direct_functions_hash(k, hash, addr)
    mutex_unlock(k, "direct_mutex")
    return err


def tmp_ops(k: Kernel) -> ftrace_ops:
    """The static ``tmp_ops`` of __modify_ftrace_direct_multi (ftrace.c): func ftrace_stub, flags STUB.

    It is core kernel data (not DYNAMIC), so the trampoline x86 allocates for it on first use is
    never freed, as in the kernel.
    """
    ops = k.statics.get("tmp_ops")
    if ops is None:
        ops = k.statics["tmp_ops"] = ftrace_ops("tmp_ops", "ftrace_stub", F.STUB, core_data=True)
    return ops


# ---------------------------------------------------------------------------------------------
# Public entry points: dispatch to the kernel's policy
# ---------------------------------------------------------------------------------------------
def _no_direct_calls(k: Kernel) -> bool:
    """Without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS the API is inline stubs returning -ENODEV."""
    return not k.arch.direct_calls


def register_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct_multi() (ftrace.c) under ``k.policy`` (-ENODEV stub without DIRECT_CALLS)."""
    if _no_direct_calls(k):
        return -Errno.ENODEV
    return k.policy.register_ftrace_direct_multi(k, ops, addr)


def unregister_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """unregister_ftrace_direct_multi() (ftrace.c; the same in 5.18, v2 and 6.1).

    Unregister under direct_mutex, drop the direct entries, clear func and trampoline so that the
    ops can be registered again (-ENODEV stub without DIRECT_CALLS).
    """
    if _no_direct_calls(k):
        return -Errno.ENODEV
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
    """modify_ftrace_direct_multi() (ftrace.c): checks, then the policy's __modify_ftrace_direct_multi
    under direct_mutex (v2 2/5 and 6.1); 5.18, which has its own body, defines it in its module."""
    if _no_direct_calls(k):
        return -Errno.ENODEV
    if k.policy.has("modify_ftrace_direct_multi"):
        return k.policy.modify_ftrace_direct_multi(k, ops, addr)
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    mutex_lock(k, "direct_mutex")
    err = k.policy.__modify_ftrace_direct_multi(k, ops, addr)
    mutex_unlock(k, "direct_mutex")
    return err


def modify_ftrace_direct_multi_nolock(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi_nolock() (ftrace.c, added by v2 2/5, kept by 6.1): the caller holds
    direct_mutex. A ModelError under 5.18, which does not have it."""
    if _no_direct_calls(k):
        return -Errno.ENODEV
    body = k.policy.__modify_ftrace_direct_multi
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    return body(k, ops, addr)
