"""Kernel live patching (livepatch / klp) as an ftrace client, split as kernel/livepatch is.

Kernel source: kernel/livepatch/core.c (patch life cycle, sysfs, replace), kernel/livepatch/patch.c
(klp_ops, klp_ftrace_handler, klp_patch_func / klp_unpatch_func) and kernel/livepatch/transition.c
(the consistency model), Linux 6.1. The client code is the same under every ftrace policy; what a
policy changes is only what register_ftrace_function answers (see ftlab.model.policies).

Theory of operation
-------------------
A live patch is a module whose init calls klp_enable_patch(). Each patched function gets one
``klp_ops`` (found by ``klp_find_ops(old_func)``): one ftrace_ops ``fops`` filtered on the
function's call site and a ``func_stack`` of klp_funcs, newest first. Stacked patches of one
function share that fops; only the first one registers it and only the last one to leave
unregisters it. fops flags are DYNAMIC|IPMODIFY|PERMANENT, plus SAVE_REGS on an architecture
without HAVE_DYNAMIC_FTRACE_WITH_ARGS (so not on x86_64).

klp_ftrace_handler sets the resume address (regs->ip) to the top func's new_func, unless that func
is a nop (replace mode: run the original) or the func is in transition and the calling task is
still KLP_UNPATCHED, in which case the next entry of the stack (the previous patch) is used, or
the original code when there is none.

Enabling or disabling starts a *transition*: every task starts in the initial state and is
switched to the target state when it is not running an affected function. The model has one
task, ``k.current``. By default it can switch at once, so a transition completes inside
livepatch_enable / livepatch_disable, as it does on an idle machine. With ``hold=True`` the task
is sleeping on an affected function: the transition stays open (``transition`` reads 1) until
:func:`klp_transition_complete` lets the task go and runs the transition work. While it is open,
calls made by the task run the *previous* code.

Replace mode (``patch.replace``): nop funcs are added for every function patched by an older
patch but not by the new one; when the new patch's transition completes, the older patches are
unpatched and freed, and the nops are discarded (their functions then run the original code).

Freeing a disabled patch (kobject release, module_put) is work the kernel schedules; the model
runs it as soon as klp_mutex is released, unless ``klp_state(k).defer_free_work`` is set, in
which case :func:`klp_run_free_work` runs it (so the short window where a disabled patch is still
visible in sysfs can be examined).

Kernel messages are recorded with ``k.log``: pr_err and pr_warn as ``ERR``, pr_notice as
``INFO``, with the ``livepatch: `` prefix of the kernel's pr_fmt. A WARN_ON is ``k.warn``.

Modules: loading (``livepatch_enable``) a module whose name is already loaded fails with -EEXIST
(kernel/module/main.c); unloading (``livepatch_unload``) a module whose refcount is held (an
enabled patch, or a forced one, which never drops its reference) fails with -EWOULDBLOCK
(= -EAGAIN).

Modules: :mod:`.structs` (the structures and statics), :mod:`.patch` (patch.c), :mod:`.transition`
(transition.c), :mod:`.core` (core.c and sysfs), :mod:`.actions` (what a user does, and the
replacement functions' code).
"""

from __future__ import annotations

from .actions import (
                      CALLS,
                      default_new_func,
                      klp_expected_body,
                      klp_in_transition,
                      klp_run_free_work,
                      klp_transition_complete,
                      klp_transition_work,
                      livepatch_body_retval,
                      livepatch_disable,
                      livepatch_enable,
                      livepatch_force,
                      livepatch_sysfs,
                      livepatch_unload,
                      livepatch_write_enabled,
)
from .core import enabled_store, force_store, klp_enable_patch, klp_find_object_symbol
from .patch import klp_find_ops, klp_ftrace_handler, klp_patch_func, klp_unpatch_func
from .structs import (
                      KLP_FTRACE_HANDLER,
                      KLP_PATCHED,
                      KLP_UNDEFINED,
                      KLP_UNPATCHED,
                      LIVEPATCH_CODE_PREFIX,
                      KlpState,
                      klp_func,
                      klp_object,
                      klp_ops,
                      klp_patch,
                      klp_state,
                      klp_task,
)

__all__ = [
    "KLP_UNDEFINED", "KLP_UNPATCHED", "KLP_PATCHED", "KLP_FTRACE_HANDLER", "KlpState",
    "klp_func", "klp_object", "klp_patch", "klp_ops", "klp_task", "klp_state",
    "klp_find_ops", "klp_ftrace_handler", "klp_patch_func", "klp_unpatch_func",
    "klp_enable_patch", "enabled_store", "force_store",
    "livepatch_enable", "livepatch_disable", "livepatch_write_enabled", "livepatch_force",
    "livepatch_unload", "klp_transition_complete", "klp_transition_work", "klp_run_free_work",
    "klp_in_transition", "livepatch_sysfs", "livepatch_body_retval", "default_new_func",
    "klp_expected_body", "CALLS", "LIVEPATCH_CODE_PREFIX", "klp_find_object_symbol",
]
