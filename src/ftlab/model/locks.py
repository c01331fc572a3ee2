"""Kernel mutexes as model objects, with holders.

Kernel source: kernel/locking/mutex.c semantics (mutex_lock, mutex_trylock, mutex_unlock,
mutex_is_locked). The locks the model names: ``ftrace_lock``, ``direct_mutex``, ``text_mutex``
(kernel/trace/ftrace.c, mm/memory.c), per-ops ``regex_lock[<ops>]``, and those clients add
(``tr->mutex[<key>]``, ``klp_mutex``, ``kprobe_mutex``, ``trampoline_mutex``).

Every acquisition is made by the kernel's *current task* (``k.current``). Acquisitions, releases
and cross-subsystem calls are the scheduling points of the interleaving explorer. Taking a mutex the
current task already holds, or releasing one it does not hold, is a kernel bug that the model
raises as :class:`~ftlab.errors.ModelError` (lockdep would splat). Taking a mutex that another
task holds goes through ``k.sched.block``: in plain sequential use nobody else can release it, so
that is a deadlock and is raised too; an interleaving scheduler plugs in there
(:mod:`ftlab.model.sched`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import Kernel


def mutex_lock(k: Kernel, lock: str) -> None:
    """mutex_lock(): acquire ``lock`` for the current task, blocking while another task holds it."""
    k.sched.point(k, "lock", lock)
    holder = k.locks.get(lock)
    me = k.current
    if holder == me:
        raise ModelError(f"{me} takes {lock} which it already holds (recursive locking)")
    while holder is not None:
        k.sched.block(k, lock)
        holder = k.locks.get(lock)
        if holder == me:
            raise ModelError(f"{me} takes {lock} which it already holds (recursive locking)")
    k.locks[lock] = me
    k.sched.acquired(k, lock)


def mutex_trylock(k: Kernel, lock: str) -> bool:
    """mutex_trylock(): take ``lock`` if it is free; True on success (also fails for the holder)."""
    k.sched.point(k, "trylock", lock)
    if k.locks.get(lock) is not None:
        return False
    k.locks[lock] = k.current
    k.sched.acquired(k, lock)
    return True


def mutex_unlock(k: Kernel, lock: str) -> None:
    """mutex_unlock(): release ``lock``; only its holder may."""
    holder = k.locks.get(lock)
    if holder != k.current:
        raise ModelError(f"{k.current} releases {lock} held by {holder or 'nobody'}")
    del k.locks[lock]
    k.sched.released(k, lock)
    k.sched.point(k, "unlock", lock)


def cross_call(k: Kernel, what: str) -> None:
    """A call into another subsystem (ftrace calling a DIRECT ops' ops_func): a scheduling point."""
    k.sched.point(k, "call", what)


def mutex_is_locked(k: Kernel, lock: str) -> bool:
    """mutex_is_locked(): held by anyone."""
    return k.locks.get(lock) is not None


def lockdep_assert_held(k: Kernel, lock: str) -> None:
    """lockdep_assert_held(): the current task must hold ``lock`` (a model error otherwise)."""
    if k.locks.get(lock) != k.current:
        raise ModelError(f"{k.current} must hold {lock} here")
