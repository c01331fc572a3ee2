"""Mutations as overlays: each deliberate bug changes one thing inside one kernel function.

The names and descriptions are the registry's (:data:`.registry.MUTATIONS`); this module says
how each one is made. A mutation never edits kernel code and no kernel function tests for it:
its overlay puts a copy of the policy's own function in the slot, with one global name rebound
(:func:`~ftlab.model.policies.rebind`) -- a callee replaced by another, or a constant read as
0 -- or replaces a whole slot with a trivial function. The explorer run with each mutation must
find a violation the unmutated policy does not have (``ftlab explore --mutations``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from ..errno import Errno
from ..locks import mutex_lock
from . import Overlay, rebind
from .registry import MUTATIONS, NO_ORIG_STACK, NO_ROLLBACK, OPS_FUNC_BLOCKING_LOCK, SKIP_PREPARE


def _lock_instead_of_trylock(k: Any, lock: str) -> bool:
    """mutex_lock() where the kernel has mutex_trylock(): wait for the lock, then succeed."""
    mutex_lock(k, lock)
    return True


def _rollback_nothing(k: Any, walk: Any, old_hash: Any, new_hash: Any, end: Any) -> int:
    """The ``rollback:`` label without its loop: -EBUSY, every record left as the first pass set it."""
    return -Errno.EBUSY


def _prepare_nothing(k: Any, ops: Any) -> int:
    """prepare_direct_functions_for_ipmodify() that asks no DIRECT ops and succeeds."""
    return 0


def without_bit(flags: type[enum.IntFlag], bit: str) -> Any:
    """A stand-in for the flags enum ``flags`` in which ``bit`` reads as 0 (the other bits keep their values)."""
    members: dict[str, Any] = {f.name: f for f in flags if f.name is not None}
    members[bit] = 0
    return type(f"{flags.__name__}_without_{bit}", (), members)


def _no_orig_stack(update: Callable[..., Any]) -> Callable[..., Any]:
    """bpf_trampoline_update() in which BPF_TRAMP_F_ORIG_STACK reads as 0: it is never set."""
    flags = update.__globals__["BPF_TRAMP_F"]
    return rebind(update, BPF_TRAMP_F=without_bit(flags, "ORIG_STACK"))


#: How each mutation is made: the slots it replaces, each as a function of the policy's entry.
_MAKE: dict[str, dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]] = {
    OPS_FUNC_BLOCKING_LOCK.name: {
        "bpf_tramp_ftrace_ops_func": lambda fn: rebind(fn, mutex_trylock=_lock_instead_of_trylock)},
    NO_ORIG_STACK.name: {"bpf_trampoline_update": _no_orig_stack},
    SKIP_PREPARE.name: {"prepare_direct_functions_for_ipmodify": lambda fn: _prepare_nothing},
    NO_ROLLBACK.name: {
        "ftrace_hash_update_ipmodify": lambda fn: rebind(fn, ftrace_hash_ipmodify_rollback=_rollback_nothing)},
}

assert set(_MAKE) == set(MUTATIONS), "every registered mutation has an overlay, and only those"


def overlay(name: str) -> Overlay:
    """The overlay of mutation ``name``."""
    return Overlay(name, _MAKE[name])
