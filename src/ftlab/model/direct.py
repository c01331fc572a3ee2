"""The direct-call API's shared parts: direct_functions and the multi-ops helpers.

Kernel source: kernel/trace/ftrace.c, the CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS section
(direct_functions, call_direct_funcs, ftrace_add_rec_direct, remove_direct_functions_hash,
check_direct_multi, tmp_ops of __modify_ftrace_direct_multi). The entry points whose behaviour
differs between versions (register/unregister/modify_ftrace_direct_multi and the _nolock
variant of the seed's 2/5) are the policy's (``register_direct`` ... slots) and dispatched
from here, after the stub check every version has without DIRECT_CALLS.
"""

from __future__ import annotations

from .errno import Errno
from .flags import OPSF
from .hash import ftrace_hash
from .kernel import Kernel
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
    """register_ftrace_direct_multi() (ftrace.c; register_ftrace_direct from 6.4) under ``k.policy``
    (the ftrace.h stub, -ENODEV, without DIRECT_CALLS)."""
    if _no_direct_calls(k):
        return -Errno.ENODEV
    return k.policy.register_direct(k, ops, addr)


def unregister_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """unregister_ftrace_direct_multi() (ftrace.c) under ``k.policy`` (-ENODEV stub without DIRECT_CALLS)."""
    if _no_direct_calls(k):
        return -Errno.ENODEV
    return k.policy.unregister_direct(k, ops, addr)


def modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi() (ftrace.c) under ``k.policy`` (-ENODEV stub without DIRECT_CALLS)."""
    if _no_direct_calls(k):
        return -Errno.ENODEV
    return k.policy.modify_direct(k, ops, addr)


def modify_ftrace_direct_multi_nolock(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi_nolock() (ftrace.c, added by seed v2 2/5) under ``k.policy``: the
    caller holds direct_mutex. A ModelError under 5.18, which does not have it."""
    if _no_direct_calls(k):
        return -Errno.ENODEV
    return k.policy.modify_direct_nolock(k, ops, addr)
