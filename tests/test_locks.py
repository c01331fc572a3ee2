"""Locks as model objects: holders, misuse raised loudly, none held after a top-level call."""

from __future__ import annotations

import pytest
from kutil import SharingOwner, direct_ops, ftrace, ipmodify_ops, register_direct, small_kernel

from ftlab.errors import ModelError
from ftlab.model.locks import mutex_is_locked, mutex_lock, mutex_trylock, mutex_unlock


def test_recursive_mutex_lock_is_a_model_error():
    k = small_kernel()
    mutex_lock(k, "direct_mutex")
    with pytest.raises(ModelError, match="already holds"):
        mutex_lock(k, "direct_mutex")


def test_unlock_by_a_non_holder_is_a_model_error():
    k = small_kernel()
    with pytest.raises(ModelError, match="releases"):
        mutex_unlock(k, "ftrace_lock")
    k.current = "other"
    mutex_lock(k, "ftrace_lock")
    k.current = "task"
    with pytest.raises(ModelError):
        mutex_unlock(k, "ftrace_lock")


def test_trylock_fails_when_held_even_by_the_caller():
    k = small_kernel()
    assert mutex_trylock(k, "tr->mutex[1]")
    assert not mutex_trylock(k, "tr->mutex[1]")
    assert mutex_is_locked(k, "tr->mutex[1]")


def test_waiting_for_a_lock_another_task_holds_is_a_deadlock_when_sequential():
    k = small_kernel()
    k.current = "other"
    mutex_lock(k, "direct_mutex")
    k.current = "task"
    with pytest.raises(ModelError, match="deadlock"):
        ftrace.register_ftrace_function(k, ipmodify_ops(k, "klp", "fa"))


def test_no_lock_is_held_after_top_level_calls():
    k = small_kernel()
    d = direct_ops(k, "bpf", "fa", owner=SharingOwner())
    assert register_direct(k, d, "t") == 0
    live = ipmodify_ops(k, "klp", "fa")
    assert ftrace.register_ftrace_function(k, live) == 0
    assert ftrace.unregister_ftrace_function(k, live) == 0
    assert k.locks == {}
