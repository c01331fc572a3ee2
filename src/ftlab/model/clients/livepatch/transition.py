"""kernel/livepatch/transition.c: the consistency model (tasks switch to the target state one by one)."""

from __future__ import annotations

from ...kernel import Kernel
from ...locks import mutex_lock, mutex_unlock
from .patch import klp_unpatch_objects
from .structs import (  # noqa: F401
    _PR,
    KLP_FTRACE_HANDLER,
    KLP_PATCHED,
    KLP_UNDEFINED,
    KLP_UNPATCHED,
    LIVEPATCH_CODE_PREFIX,
    F,
    KlpState,
    _objname,
    _task,
    klp_func,
    klp_object,
    klp_ops,
    klp_patch,
    klp_state,
    klp_task,
)


def klp_complete_transition(k: Kernel) -> None:
    """klp_complete_transition() (kernel/livepatch/transition.c), all policies: finish and clean up."""
    from . import core  # core.c and transition.c call each other: core imports this module

    st = klp_state(k)
    patch = st.transition_patch
    assert patch is not None
    if patch.replace and st.target_state == KLP_PATCHED:
        core.klp_unpatch_replaced_patches(k, patch)
        core.klp_discard_nops(k, patch)
    if st.target_state == KLP_UNPATCHED:
        klp_unpatch_objects(k, patch)
    for obj in patch.objs:
        for func in obj.funcs:
            func.transition = False
    for task in st.tasks.values():
        if task.pending:
            k.warn("klp_complete_transition", "TIF_PATCH_PENDING still set", once=True)
        task.patch_state = KLP_UNDEFINED
        task.blocked = False  # model: the task's stake in this transition ends with it
    k.log("INFO", "klp_complete_transition",
          f"{_PR}'{patch.mod}': {'patching' if st.target_state == KLP_PATCHED else 'unpatching'} complete")
    st.target_state = KLP_UNDEFINED
    st.transition_patch = None


def klp_cancel_transition(k: Kernel) -> None:
    """klp_cancel_transition() (kernel/livepatch/transition.c), all policies.

    Undo a patching transition not yet started.
    """
    st = klp_state(k)
    if st.target_state != KLP_PATCHED:
        k.warn("klp_cancel_transition", "target state is not KLP_PATCHED", once=True)
        return
    st.target_state = KLP_UNPATCHED
    klp_complete_transition(k)


def klp_update_patch_state(k: Kernel, task: klp_task) -> None:
    """klp_update_patch_state() (kernel/livepatch/transition.c), all policies.

    Switch a task with TIF_PATCH_PENDING.
    """
    if task.pending:
        task.pending = False
        task.patch_state = klp_state(k).target_state


def klp_try_switch_task(k: Kernel, task: klp_task) -> bool:
    """klp_try_switch_task() (kernel/livepatch/transition.c), all policies.

    Switch unless the task sits on an affected function.
    """
    st = klp_state(k)
    if task.patch_state == st.target_state:
        return True
    if task.blocked:  # klp_check_and_switch_task(): -EADDRINUSE
        return False
    task.pending = False
    task.patch_state = st.target_state
    return True


def klp_try_complete_transition(k: Kernel) -> None:
    """klp_try_complete_transition() (kernel/livepatch/transition.c), all policies.

    Switch tasks; complete when all have.
    """
    st = klp_state(k)
    if st.target_state == KLP_UNDEFINED:
        k.warn("klp_try_complete_transition", "klp_target_state is KLP_UNDEFINED", once=True)
    complete = True
    for task in st.tasks.values():
        if not klp_try_switch_task(k, task):
            complete = False
    if not complete:
        return  # the kernel schedules klp_transition_work again (every second)
    from . import core  # core.c and transition.c call each other: core imports this module

    patch = st.transition_patch
    assert patch is not None
    klp_complete_transition(k)
    if not patch.enabled:
        core.klp_free_patch_async(k, patch)
    elif patch.replace:
        core.klp_free_replaced_patches_async(k, patch)


def klp_start_transition(k: Kernel) -> None:
    """klp_start_transition() (kernel/livepatch/transition.c), all policies.

    Set TIF_PATCH_PENDING on tasks not at target.
    """
    st = klp_state(k)
    patch = st.transition_patch
    assert patch is not None
    k.log("INFO", "klp_start_transition",
          f"{_PR}'{patch.mod}': starting {'patching' if st.target_state == KLP_PATCHED else 'unpatching'} "
          "transition")
    for task in st.tasks.values():
        if task.patch_state != st.target_state:
            task.pending = True


def klp_init_transition(k: Kernel, patch: klp_patch, state: int) -> None:
    """klp_init_transition() (kernel/livepatch/transition.c), all policies.

    Tasks to the initial state, funcs in transition.
    """
    st = klp_state(k)
    if st.target_state != KLP_UNDEFINED:
        k.warn("klp_init_transition", "a transition is already set up", once=True)
    st.transition_patch = patch
    st.target_state = state
    initial_state = KLP_UNPATCHED if state == KLP_PATCHED else KLP_PATCHED
    for task in st.tasks.values():
        if task.patch_state != KLP_UNDEFINED:
            k.warn("klp_init_transition", "task patch_state is not KLP_UNDEFINED", once=True)
        task.patch_state = initial_state
    for obj in patch.objs:
        for func in obj.funcs:
            func.transition = True


def klp_reverse_transition(k: Kernel) -> None:
    """klp_reverse_transition() (kernel/livepatch/transition.c), all policies.

    Flip the target of the running transition.
    """
    st = klp_state(k)
    patch = st.transition_patch
    assert patch is not None
    patch.enabled = not patch.enabled
    st.target_state = KLP_UNPATCHED if st.target_state == KLP_PATCHED else KLP_PATCHED
    for task in st.tasks.values():
        task.pending = False
    klp_start_transition(k)


def klp_force_transition(k: Kernel) -> None:
    """klp_force_transition() (kernel/livepatch/transition.c), all policies.

    Switch every task now, mark patches forced.
    """
    st = klp_state(k)
    k.log("ERR", "klp_force_transition", f"{_PR}forcing remaining tasks to the patched state")
    for task in st.tasks.values():
        klp_update_patch_state(k, task)
    patch = st.transition_patch
    assert patch is not None
    if st.target_state == KLP_UNPATCHED:
        patch.forced = True
    elif patch.replace:
        for p in st.patches:
            if p is not patch:
                p.forced = True


def klp_transition_work_fn(k: Kernel) -> None:
    """klp_transition_work_fn() (kernel/livepatch/transition.c), all policies.

    The delayed retry, under klp_mutex.
    """
    mutex_lock(k, "klp_mutex")
    if klp_state(k).transition_patch is not None:
        klp_try_complete_transition(k)
    mutex_unlock(k, "klp_mutex")
