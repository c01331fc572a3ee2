"""A plain direct-call user, like samples/ftrace/ftrace-direct-multi{,-modify}.c.

Kernel source: samples/ftrace/ftrace-direct-multi.c and ftrace-direct-multi-modify.c (Linux 6.1).
The module has its own ``static struct ftrace_ops direct`` (module data, so DYNAMIC once
registered) with **no ops_func**: it cannot share a function with an IPMODIFY ops. Its init adds
each function to the filter with ftrace_set_filter_ip (results ignored, as in the sample) and
calls register_ftrace_direct_multi(&direct, my_tramp); the modify sample flips the trampoline
with modify_ftrace_direct_multi; its exit calls unregister_ftrace_direct_multi and
ftrace_free_filter. A failed init means the module is not loaded (its ops is discarded).

Consequences under the seed (facts §2.7): an IPMODIFY ops first (a live patch) -> the direct
registration gets -EAGAIN (combination #4), although this client has no way to set
SHARE_IPMODIFY; direct first -> the IPMODIFY registration gets -EBUSY (no ops_func).

The trampoline: the sample's my_tramp saves the argument registers, calls my_direct_func(ip)
(a trace_printk) and returns into the traced function. The model registers every address
``my_tramp*#<module>`` as code that emits ("direct", "<module>:<tramp>") and then continues at
its return address (``calls.run_body(k, ctx, ctx.ret_addr)``): the original body when the call
site calls it directly, or whatever regs->ip held when it was reached through
ftrace_regs_caller's orig_ax (e.g. a live patch's new function). ``#<module>`` only tells
modules apart in the model; %pS shows ``my_tramp1+0x0/...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import InputError
from ..calls import CallContext, run_body
from ..calltable import CallTable, install
from ..copying import fast_deepcopy
from ..direct import modify_ftrace_direct_multi, register_ftrace_direct_multi, unregister_ftrace_direct_multi
from ..errno import Errno
from ..ftrace import ftrace_free_filter, ftrace_set_filter_ip
from ..kernel import Kernel
from ..naming import Rename, spell
from ..ops import Addr, ftrace_ops

#: Every sample trampoline's symbol starts with this.
TRAMP_PREFIX = "my_tramp"


@dataclass(eq=False)
class DirectModule:
    """One loaded direct-call sample module: its ``direct`` ops and current trampoline."""

    __deepcopy__ = fast_deepcopy

    name: str
    ops: ftrace_ops
    funcs: tuple[str, ...]
    tramp: Addr

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return (spell(nm, self.name), self.funcs, _spell_tramp(self.tramp, nm))


@dataclass(eq=False)
class DirectClientState:
    """Loaded direct-call sample modules by name, in ``k.subsys["direct_client"]``."""

    __deepcopy__ = fast_deepcopy

    modules: dict[str, DirectModule] = field(default_factory=dict)

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return tuple(sorted((spell(nm, n), m.key(nm)) for n, m in self.modules.items()))


def direct_client_state(k: Kernel) -> DirectClientState:
    """The direct-client state of ``k`` (created on first use)."""
    st = k.subsys.get("direct_client")
    if st is None:
        st = k.subsys["direct_client"] = DirectClientState()
        install(k, CALLS)
    return st


def tramp_addr(module: str, tramp: str) -> str:
    """The model's code address of trampoline ``tramp`` of ``module``: ``<tramp>#<module>``."""
    if not tramp.startswith(TRAMP_PREFIX):
        raise InputError(f"trampoline {tramp!r}: sample trampolines are named {TRAMP_PREFIX}*")
    return f"{tramp}#{module}"


def _spell_tramp(addr: Addr, nm: Rename | None) -> Addr:
    """A sample trampoline's address (:func:`tramp_addr`) with its module's name renamed."""
    if nm is None or not isinstance(addr, str):
        return addr
    sym, sep, module = addr.partition("#")
    return f"{sym}#{nm(module)}" if sep else addr


def my_tramp(k: Kernel, ctx: CallContext, addr: Addr) -> int:
    """my_tramp (samples/ftrace/ftrace-direct-multi.c), all policies.

    my_direct_func(ip) (a trace_printk), then return into the traced function.
    """
    sym, _, module = str(addr).partition("#")
    ctx.emit("direct", f"{module}:{sym}")
    return run_body(k, ctx, ctx.ret_addr)




def direct_client_load(k: Kernel, name: str = "ftrace_direct_multi",
                       funcs: Sequence[str | tuple[str, int]] = ("wake_up_process", "schedule"),
                       tramp: str = "my_tramp") -> int:
    """ftrace_direct_multi_init() (samples/ftrace/ftrace-direct-multi.c), all policies: insmod.

    ftrace_set_filter_ip for each function (results ignored, as the sample does), then
    register_ftrace_direct_multi(&direct, my_tramp). Returns the init's result; -EEXIST if a
    module of that name is loaded. Functions are looked up by name (kallsyms: the first one); a
    ``(name, sympos)`` with a sympos is the address of that occurrence, as a module that found it
    itself would pass it.
    """
    st = direct_client_state(k)
    if name in st.modules:
        return -Errno.EEXIST
    ips = []
    names = []
    for f in funcs:
        fname, sympos = (f, 0) if isinstance(f, str) else f
        names.append(fname)
        if sympos:
            ips.append(k.cat.lookup(fname, sympos))
            continue
        idx = k.cat.indices(fname)
        if not idx:
            raise InputError(f"unknown function {fname!r} (not in catalogue {k.cat.source})")
        ips.append(k.cat.ip(idx[0]))
    addr = tramp_addr(name, tramp)
    ops = ftrace_ops("direct[{}]", None, 0, owner=name)
    for ip in ips:
        ftrace_set_filter_ip(k, ops, ip, False, False)
    ret = register_ftrace_direct_multi(k, ops, addr)
    if ret == 0:
        st.modules[name] = DirectModule(name, ops, tuple(names), addr)
    return ret


def direct_client_modify(k: Kernel, name: str, tramp: str) -> int:
    """The kthread step of samples/ftrace/ftrace-direct-multi-modify.c, all policies.

    modify_ftrace_direct_multi(&direct, tramp); -ENOENT (model) if the module is not loaded.
    """
    mod = direct_client_state(k).modules.get(name)
    if mod is None:
        return -Errno.ENOENT
    addr = tramp_addr(name, tramp)
    ret = modify_ftrace_direct_multi(k, mod.ops, addr)
    if ret == 0:
        mod.tramp = addr
    return ret


def direct_client_unload(k: Kernel, name: str) -> int:
    """ftrace_direct_multi_exit() (samples/ftrace/ftrace-direct-multi.c), all policies: rmmod.

    unregister_ftrace_direct_multi, then ftrace_free_filter.

    The exit function is void; the model returns the unregister result (and unloads anyway).
    """
    st = direct_client_state(k)
    mod = st.modules.get(name)
    if mod is None:
        return -Errno.ENOENT
    ret = unregister_ftrace_direct_multi(k, mod.ops, mod.tramp)
    ftrace_free_filter(k, mod.ops)
    del st.modules[name]
    return ret


#: What this client adds to a kernel's call table (:mod:`ftlab.model.calltable`).
CALLS = CallTable(prefixes=((TRAMP_PREFIX, my_tramp),), renamers=((TRAMP_PREFIX, _spell_tramp),))  # type: ignore[arg-type]


__all__ = ["DirectModule", "DirectClientState", "direct_client_state", "direct_client_load",
           "direct_client_modify", "direct_client_unload", "my_tramp", "tramp_addr", "TRAMP_PREFIX"]
