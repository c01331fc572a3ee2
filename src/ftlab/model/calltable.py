"""What runs where on a call: the table a kernel holds of callbacks and code, filled by its clients.

The call path (:mod:`ftlab.model.calls`) meets two kinds of names it cannot run by itself: an
``ftrace_ops->func`` (``klp_ftrace_handler``, ``function_trace_call``, ...) and a code address
that is not an ftrace entry point (a BPF trampoline image, a live patch's new function, a sample
direct trampoline). A :class:`CallTable` maps them to their behaviour. It is a frozen value held
by the kernel (``k.calls``): a client adds its entries explicitly when it first sets up its
state in a kernel (``k.calls = k.calls.merged(CLIENT_CALLS)``), so nothing is registered by
importing a module, and two kernels never share a mutable registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .calls import CallContext
    from .kernel import Kernel
    from .ops import Addr, ftrace_ops

#: ftrace_ops->func name -> behaviour(k, ops, ctx)
Callback = Callable[["Kernel", "ftrace_ops", "CallContext"], None]
#: code address -> behaviour(k, ctx, addr), returning the value that reaches the traced function's
#: caller (see :mod:`ftlab.model.calls` for the return-address convention)
Code = Callable[["Kernel", "CallContext", "Addr"], int]


@dataclass(frozen=True)
class CallTable:
    """Callbacks by ops->func name, code by exact address and by address prefix (first match wins)."""

    callbacks: Mapping[str, Callback] = field(default_factory=dict)
    code: Mapping[str, Code] = field(default_factory=dict)
    prefixes: tuple[tuple[str, Code], ...] = ()
    #: how a client's code addresses (by prefix) spell its name: ``fn(addr, rename) -> addr``
    renamers: tuple[tuple[str, Callable[[str, Callable[[str], str]], str]], ...] = ()

    def merged(self, other: CallTable) -> CallTable:
        """This table with ``other``'s entries added (``other`` wins on the same name or prefix)."""
        if other is self or not (other.callbacks or other.code or other.prefixes):
            return self
        keep = tuple((p, fn) for p, fn in self.prefixes if p not in dict(other.prefixes))
        keep_r = tuple((p, fn) for p, fn in self.renamers if p not in dict(other.renamers))
        return CallTable({**self.callbacks, **other.callbacks}, {**self.code, **other.code},
                         keep + other.prefixes, keep_r + other.renamers)

    def contains(self, other: CallTable) -> bool:
        """Does this table already have every entry of ``other``."""
        return (all(self.callbacks.get(n) is fn for n, fn in other.callbacks.items())
                and all(self.code.get(a) is fn for a, fn in other.code.items())
                and all(p in self.prefixes for p in other.prefixes)
                and all(r in self.renamers for r in other.renamers))

    def callback(self, func: Any) -> Callback | None:
        """The behaviour of ops->func ``func``, if any."""
        return self.callbacks.get(func) if isinstance(func, str) else None

    def code_at(self, addr: Any) -> Code | None:
        """The behaviour of code address ``addr``, if any."""
        if isinstance(addr, str):
            fn = self.code.get(addr)
            if fn is not None:
                return fn
            for p, fn in self.prefixes:
                if addr.startswith(p):
                    return fn
        return None

    def rename_addr(self, addr: Any, nm: Callable[[str], str]) -> Any:
        """Code address ``addr`` with the client name it holds renamed (unchanged if none)."""
        if isinstance(addr, str):
            for p, fn in self.renamers:
                if addr.startswith(p):
                    return fn(addr, nm)
        return addr

    def __deepcopy__(self, memo: dict[int, Any]) -> CallTable:  # a frozen value: share it
        return self


def install(k: Kernel, table: CallTable) -> None:
    """Add ``table``'s entries to the kernel's call table (a client's explicit registration)."""
    if not k.calls.contains(table):
        k.calls = k.calls.merged(table)
