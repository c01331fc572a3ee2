"""A module's own ftrace_ops: register_ftrace_function on chosen functions, without ops_func.

Kernel counterpart: any module that hooks functions through the ftrace API directly (the
pattern of samples/ftrace/ftrace-ops.c and of out-of-tree "ftrace hook" modules): an ops with
a filter of several addresses, optionally IPMODIFY and SAVE_REGS, registered in one call. It is
the one client here whose IPMODIFY ops covers several functions at registration time, which is
what exercises the rollback of __ftrace_hash_update_ipmodify. Same under every policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..calls import CallContext
from ..calltable import CallTable, install
from ..copying import fast_deepcopy
from ..errno import Errno
from ..flags import FTRACE_OPS_FL
from ..ftrace import ftrace_free_filter, ftrace_set_filter_ip, register_ftrace_function, unregister_ftrace_function
from ..kernel import Kernel
from ..naming import Rename, spell
from ..ops import ftrace_ops

CALLBACK = "my_ops_func"


@dataclass(eq=False)
class OpsClientState:
    """The registered ops by name, in ``k.subsys["ops_client"]``."""

    __deepcopy__ = fast_deepcopy

    ops: dict[str, ftrace_ops] = field(default_factory=dict)

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return tuple(sorted(spell(nm, n) for n in self.ops))


def ops_client_state(k: Kernel) -> OpsClientState:
    """The client's state in ``k.subsys["ops_client"]`` (created on first use)."""
    st = k.subsys.get("ops_client")
    if st is None:
        st = k.subsys["ops_client"] = OpsClientState()
        install(k, CALLS)
    return st


def ops_client_register(k: Kernel, name: str, ips: Sequence[int], ipmodify: bool = False,
                        save_regs: bool = False) -> int:
    """Module init: ftrace_set_filter_ip for each ip, then register_ftrace_function; -EEXIST if loaded."""
    st = ops_client_state(k)
    if name in st.ops:
        return -Errno.EEXIST
    flags = (FTRACE_OPS_FL.IPMODIFY if ipmodify else 0) | (FTRACE_OPS_FL.SAVE_REGS if save_regs else 0)
    ops = ftrace_ops("{}", CALLBACK, flags, owner=name)
    for ip in ips:
        ret = ftrace_set_filter_ip(k, ops, ip, False, False)
        if ret:
            return ret
    ret = register_ftrace_function(k, ops)
    if ret == 0:
        st.ops[name] = ops
    return ret


def ops_client_unregister(k: Kernel, name: str) -> int:
    """Module exit: unregister_ftrace_function and ftrace_free_filter; -ENOENT if not loaded."""
    st = ops_client_state(k)
    ops = st.ops.pop(name, None)
    if ops is None:
        return -Errno.ENOENT
    ret = unregister_ftrace_function(k, ops)
    ftrace_free_filter(k, ops)
    return ret


def my_ops_func(k: Kernel, ops: ftrace_ops, ctx: CallContext) -> None:
    """The module's callback: records that it ran; leaves regs->ip alone."""
    ctx.emit("ops", ops.name)


#: What this client adds to a kernel's call table (:mod:`ftlab.model.calltable`).
CALLS = CallTable(callbacks={CALLBACK: my_ops_func})
