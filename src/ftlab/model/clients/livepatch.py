"""Kernel live patching (livepatch / klp) as an ftrace client.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .._copy import fast_deepcopy
from ..calls import CallContext
from ..calltable import CallTable, install
from ..errno import Errno
from ..flags import OPSF
from ..ftrace import (ftrace_location, ftrace_set_filter_ip, register_ftrace_function,
                      unregister_ftrace_function)
from ..kernel import Kernel
from ..locks import mutex_lock, mutex_unlock
from ..naming import Rename, spell
from ..ops import Addr, ftrace_ops

F = OPSF  # plain ints: hot paths

KLP_UNDEFINED = -1
KLP_UNPATCHED = 0
KLP_PATCHED = 1

#: The function every klp fops calls (kernel/livepatch/patch.c: klp_ftrace_handler).
KLP_FTRACE_HANDLER = "klp_ftrace_handler"
#: Prefix of the code addresses of modelled replacement functions.
LIVEPATCH_CODE_PREFIX = "livepatch_"

_PR = "livepatch: "


# ---------------------------------------------------------------------------------------------
# Structures (include/linux/livepatch.h, kernel/livepatch/patch.h)
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class klp_func:
    """struct klp_func (include/linux/livepatch.h): one replaced function.

    ``new_func`` is a code address; for a nop it is set to ``old_func`` when the object is
    initialised (core.c: klp_init_object_loaded). ``old_func`` is the function's ip.
    """

    __deepcopy__ = fast_deepcopy

    old_name: str | None
    new_func: Addr | None = None
    old_sympos: int = 0
    old_func: int | None = None
    nop: bool = False
    patched: bool = False
    transition: bool = False

    def key(self, nm: Rename | None = None) -> tuple:
        return (self.old_name, _spell_body(self.new_func, nm), self.old_sympos, self.old_func, self.nop,
                self.patched, self.transition)


@dataclass(eq=False)
class klp_object:
    """struct klp_object: the functions patched in one object; ``name`` None is vmlinux."""

    __deepcopy__ = fast_deepcopy

    name: str | None = None
    funcs: list[klp_func] = field(default_factory=list)
    patched: bool = False
    dynamic: bool = False

    def key(self, nm: Rename | None = None) -> tuple:
        return (self.name, self.patched, self.dynamic, tuple(f.key(nm) for f in self.funcs))


@dataclass(eq=False)
class klp_patch:
    """struct klp_patch: ``mod`` is the livepatch module's name (also the sysfs directory)."""

    __deepcopy__ = fast_deepcopy

    mod: str
    objs: list[klp_object] = field(default_factory=list)
    replace: bool = False
    enabled: bool = False
    forced: bool = False

    def key(self, nm: Rename | None = None) -> tuple:
        return (spell(nm, self.mod), self.replace, self.enabled, self.forced, tuple(o.key(nm) for o in self.objs))


@dataclass(eq=False)
class klp_ops:
    """struct klp_ops (kernel/livepatch/patch.h): one fops per patched function + the func stack."""

    __deepcopy__ = fast_deepcopy

    fops: ftrace_ops
    func_stack: list[klp_func] = field(default_factory=list)  # [0] is the newest (list_add_rcu)

    def key(self, nm: Rename | None = None) -> tuple:
        return (self.fops.name, tuple(id_key(f, nm) for f in self.func_stack))


def id_key(func: klp_func, nm: Rename | None = None) -> tuple:
    """Model helper: a klp_func's identity in canonical state forms (no kernel counterpart)."""
    return (func.old_name, _spell_body(func.new_func, nm), func.nop)


def _spell_body(addr: Addr | None, nm: Rename | None) -> Addr | None:
    """A replacement function's address (:func:`default_new_func`) with its patch's name renamed
    (:mod:`ftlab.model.naming`)."""
    if nm is None or not isinstance(addr, str) or not addr.startswith(LIVEPATCH_CODE_PREFIX):
        return addr
    patch, _, rest = addr[len(LIVEPATCH_CODE_PREFIX):].partition(":")
    return f"{LIVEPATCH_CODE_PREFIX}{nm(patch)}:{rest}"


@dataclass(eq=False)
class klp_task:
    """The parts of task_struct the consistency model uses: patch_state and TIF_PATCH_PENDING.

    ``blocked`` is the model's stand-in for "sleeping on a to-be-(un)patched function": while it
    is set, klp_try_switch_task cannot switch the task.
    """

    __deepcopy__ = fast_deepcopy

    patch_state: int = KLP_UNDEFINED
    pending: bool = False
    blocked: bool = False

    def key(self, nm: Rename | None = None) -> tuple:
        return (self.patch_state, self.pending, self.blocked)


_IDLE_TASK = (-1, False, False)  # a task outside any transition: same as no task record


@dataclass(eq=False)
class KlpState:
    """Global state of kernel/livepatch (what C keeps in statics), in ``k.subsys["klp"]``."""

    __deepcopy__ = fast_deepcopy

    patches: list[klp_patch] = field(default_factory=list)   # klp_patches, oldest first
    ops: list[klp_ops] = field(default_factory=list)         # klp_ops list, newest first
    transition_patch: klp_patch | None = None                # klp_transition_patch
    target_state: int = KLP_UNDEFINED                         # klp_target_state
    tasks: dict[str, klp_task] = field(default_factory=dict)
    sysfs: dict[str, klp_patch] = field(default_factory=dict)  # live kobjects by name
    modules: dict[str, int] = field(default_factory=dict)      # loaded livepatch module -> refcnt
    free_work: list[klp_patch] = field(default_factory=list)   # scheduled klp_free_patch_work_fn
    defer_free_work: bool = False

    def key(self, nm: Rename | None = None) -> tuple:
        """Hashable value of the livepatch state (for canonical state forms; ``nm``: client renaming)."""
        tp = spell(nm, self.transition_patch.mod) if self.transition_patch is not None else None
        return (tuple(p.key(nm) for p in self.patches), tuple(o.key(nm) for o in self.ops), tp,
                self.target_state,
                tuple(sorted((n, t.key()) for n, t in self.tasks.items() if t.key() != _IDLE_TASK)),
                tuple(sorted(spell(nm, n) for n in self.sysfs)),
                tuple(sorted((spell(nm, n), c) for n, c in self.modules.items())),
                tuple(spell(nm, p.mod) for p in self.free_work))


def klp_state(k: Kernel) -> KlpState:
    """The livepatch state of ``k`` (created on first use, with one task: ``k.current``)."""
    st = k.subsys.get("klp")
    if st is None:
        st = k.subsys["klp"] = KlpState()
        install(k, CALLS)
        st.tasks[k.current] = klp_task()
    return st


def _task(k: Kernel) -> klp_task:
    st = klp_state(k)
    t = st.tasks.get(k.current)
    if t is None:
        t = st.tasks[k.current] = klp_task()
    return t


def _objname(obj: klp_object) -> str:
    return obj.name if obj.name is not None else "vmlinux"


# ---------------------------------------------------------------------------------------------
# kernel/livepatch/patch.c
# ---------------------------------------------------------------------------------------------
def klp_find_ops(k: Kernel, old_func: int) -> klp_ops | None:
    """klp_find_ops() (kernel/livepatch/patch.c), all policies.

    The klp_ops whose stack top patches ``old_func``.
    """
    for ops in klp_state(k).ops:
        if ops.func_stack and ops.func_stack[0].old_func == old_func:
            return ops
    return None


def klp_ftrace_handler(k: Kernel, fops: ftrace_ops, ctx: CallContext) -> None:
    """klp_ftrace_handler() (kernel/livepatch/patch.c), all policies.

    Pick the func for the task, set regs->ip.
    """
    ops: klp_ops = fops.private
    func = ops.func_stack[0] if ops.func_stack else None
    if func is None:
        k.warn("klp_ftrace_handler", "func_stack is empty", once=True)
        return
    if func.transition:
        patch_state = _task(k).patch_state
        if patch_state == KLP_UNDEFINED:
            k.warn("klp_ftrace_handler", "task patch_state is KLP_UNDEFINED in a transition",
                   once=True)
        if patch_state == KLP_UNPATCHED:
            # the previously patched version, or the original function when there is none
            if len(ops.func_stack) < 2:
                return
            func = ops.func_stack[1]
    if func.nop:
        return
    assert func.new_func is not None
    ctx.regs.ip = func.new_func


def klp_unpatch_func(k: Kernel, func: klp_func) -> None:
    """klp_unpatch_func() (kernel/livepatch/patch.c), all policies.

    Pop ``func``; the last one unregisters fops.
    """
    if not func.patched:
        k.warn("klp_unpatch_func", f"{func.old_name} is not patched")
        return
    if not func.old_func:
        k.warn("klp_unpatch_func", f"{func.old_name} has no old_func")
        return
    ops = klp_find_ops(k, func.old_func)
    if ops is None:
        k.warn("klp_unpatch_func", f"no klp_ops for {func.old_name}")
        return
    if len(ops.func_stack) == 1:
        ftrace_loc = ftrace_location(k, func.old_func)
        if not ftrace_loc:
            k.warn("klp_unpatch_func", f"{func.old_name} is not an ftrace location")
            return
        if unregister_ftrace_function(k, ops.fops):
            k.warn("klp_unpatch_func", f"unregister_ftrace_function({ops.fops.name}) failed")
        if ftrace_set_filter_ip(k, ops.fops, ftrace_loc, True, False):
            k.warn("klp_unpatch_func", f"ftrace_set_filter_ip({ops.fops.name}, remove) failed")
        ops.func_stack.remove(func)
        klp_state(k).ops.remove(ops)
    else:
        ops.func_stack.remove(func)
    func.patched = False


def _fops_name(k: Kernel, func: klp_func) -> str:
    assert func.old_func is not None
    name = k.cat.qualified_name_of_ip(func.old_func)
    idx = k.cat.scope_indices(name)
    if len(idx) > 1:
        return f"klp_ops[{name},{idx.index(k.rec_index(func.old_func)) + 1}]"
    return f"klp_ops[{name}]"


def klp_patch_func(k: Kernel, func: klp_func) -> int:
    """klp_patch_func() (kernel/livepatch/patch.c), all policies.

    Push ``func``; the first one registers fops.

    Same code under every ftrace policy; the fops is DYNAMIC|IPMODIFY|PERMANENT, plus SAVE_REGS
    on an arch without HAVE_DYNAMIC_FTRACE_WITH_ARGS.
    """
    if not func.old_func:
        k.warn("klp_patch_func", f"{func.old_name} has no old_func")
        return -Errno.EINVAL
    if func.patched:
        k.warn("klp_patch_func", f"{func.old_name} is already patched")
        return -Errno.EINVAL
    ops = klp_find_ops(k, func.old_func)
    if ops is None:
        ftrace_loc = ftrace_location(k, func.old_func)
        if not ftrace_loc:
            k.log("ERR", "klp_patch_func",
                  f"{_PR}failed to find location for function '{func.old_name}'")
            return -Errno.EINVAL
        flags = F.DYNAMIC | F.IPMODIFY | F.PERMANENT
        if not k.arch.with_args:  # !CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
            flags |= F.SAVE_REGS
        fops = ftrace_ops(_fops_name(k, func), KLP_FTRACE_HANDLER, flags)
        ops = klp_ops(fops)
        fops.private = ops
        st = klp_state(k)
        st.ops.insert(0, ops)
        ops.func_stack.insert(0, func)
        ret = ftrace_set_filter_ip(k, fops, ftrace_loc, False, False)
        if ret:
            k.log("ERR", "klp_patch_func",
                  f"{_PR}failed to set ftrace filter for function '{func.old_name}' ({ret})")
            ops.func_stack.remove(func)
            st.ops.remove(ops)
            return ret
        ret = register_ftrace_function(k, fops)
        if ret:
            k.log("ERR", "klp_patch_func",
                  f"{_PR}failed to register ftrace handler for function '{func.old_name}' ({ret})")
            ftrace_set_filter_ip(k, fops, ftrace_loc, True, False)
            ops.func_stack.remove(func)
            st.ops.remove(ops)
            return ret
    else:
        ops.func_stack.insert(0, func)
    func.patched = True
    return 0


def __klp_unpatch_object(k: Kernel, obj: klp_object, nops_only: bool) -> None:
    """__klp_unpatch_object() (kernel/livepatch/patch.c), all policies."""
    for func in obj.funcs:
        if nops_only and not func.nop:
            continue
        if func.patched:
            klp_unpatch_func(k, func)
    if obj.dynamic or not nops_only:
        obj.patched = False


def klp_unpatch_object(k: Kernel, obj: klp_object) -> None:
    """klp_unpatch_object() (kernel/livepatch/patch.c), all policies."""
    __klp_unpatch_object(k, obj, False)


def klp_patch_object(k: Kernel, obj: klp_object) -> int:
    """klp_patch_object() (kernel/livepatch/patch.c), all policies.

    Patch every func; on failure unpatch the object.
    """
    if obj.patched:
        k.warn("klp_patch_object", f"{_objname(obj)} is already patched")
        return -Errno.EINVAL
    for func in obj.funcs:
        ret = klp_patch_func(k, func)
        if ret:
            klp_unpatch_object(k, obj)
            return ret
    obj.patched = True
    return 0


def __klp_unpatch_objects(k: Kernel, patch: klp_patch, nops_only: bool) -> None:
    """__klp_unpatch_objects() (kernel/livepatch/patch.c), all policies."""
    for obj in patch.objs:
        if obj.patched:
            __klp_unpatch_object(k, obj, nops_only)


def klp_unpatch_objects(k: Kernel, patch: klp_patch) -> None:
    """klp_unpatch_objects() (kernel/livepatch/patch.c), all policies."""
    __klp_unpatch_objects(k, patch, False)


def klp_unpatch_objects_dynamic(k: Kernel, patch: klp_patch) -> None:
    """klp_unpatch_objects_dynamic() (kernel/livepatch/patch.c), all policies: only the nops."""
    __klp_unpatch_objects(k, patch, True)


# ---------------------------------------------------------------------------------------------
# kernel/livepatch/transition.c
# ---------------------------------------------------------------------------------------------
def klp_complete_transition(k: Kernel) -> None:
    """klp_complete_transition() (kernel/livepatch/transition.c), all policies: finish and clean up."""
    st = klp_state(k)
    patch = st.transition_patch
    assert patch is not None
    if patch.replace and st.target_state == KLP_PATCHED:
        klp_unpatch_replaced_patches(k, patch)
        klp_discard_nops(k, patch)
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
    patch = st.transition_patch
    assert patch is not None
    klp_complete_transition(k)
    if not patch.enabled:
        klp_free_patch_async(k, patch)
    elif patch.replace:
        klp_free_replaced_patches_async(k, patch)


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


# ---------------------------------------------------------------------------------------------
# kernel/livepatch/core.c
# ---------------------------------------------------------------------------------------------
def klp_find_func(obj: klp_object, old_func: klp_func) -> klp_func | None:
    """klp_find_func() (kernel/livepatch/core.c), all policies.

    Same name, and sympos equal (0 and 1 are the same).
    """
    for func in obj.funcs:
        if old_func.old_name == func.old_name and (
                old_func.old_sympos == func.old_sympos
                or (old_func.old_sympos, func.old_sympos) in ((0, 1), (1, 0))):
            return func
    return None


def klp_find_object(patch: klp_patch, old_obj: klp_object) -> klp_object | None:
    """klp_find_object() (kernel/livepatch/core.c), all policies.

    The object of ``patch`` for the same module / vmlinux.
    """
    for obj in patch.objs:
        if old_obj.name is not None:
            if obj.name is not None and obj.name == old_obj.name:
                return obj
        elif obj.name is None:
            return obj
    return None


def klp_find_object_symbol(k: Kernel, objname: str | None, name: str, sympos: int) -> int:
    """klp_find_object_symbol() (kernel/livepatch/core.c), all policies.

    The address of ``name`` (0 plus a message if none).

    The model's symbol table is the catalogue: the object's records of that name (a module's
    are ``module:name``), duplicates counted in record order.
    """
    idx = k.cat.object_indices(name, objname)
    shown = objname if objname is not None else "(null)"
    if not idx:
        k.log("ERR", "klp_find_object_symbol", f"{_PR}symbol '{name}' not found in symbol table")
    elif len(idx) > 1 and sympos == 0:
        k.log("ERR", "klp_find_object_symbol",
              f"{_PR}unresolvable ambiguity for symbol '{name}' in object '{shown}'")
    elif sympos > 0 and sympos > len(idx):
        k.log("ERR", "klp_find_object_symbol",
              f"{_PR}symbol position {sympos} for symbol '{name}' in object "
              f"'{objname if objname is not None else 'vmlinux'}' not found")
    else:
        return k.cat.ip(idx[sympos - 1 if sympos else 0])
    return 0


def klp_alloc_object_dynamic(patch: klp_patch, name: str | None) -> klp_object:
    """klp_alloc_object_dynamic() (kernel/livepatch/core.c), all policies: an object added for nops."""
    obj = klp_object(name, dynamic=True)
    patch.objs.append(obj)
    return obj


def klp_alloc_func_nop(old_func: klp_func, obj: klp_object) -> klp_func:
    """klp_alloc_func_nop() (kernel/livepatch/core.c), all policies.

    A nop func (new_func set when loaded).
    """
    func = klp_func(old_func.old_name, None, old_func.old_sympos, nop=True)
    obj.funcs.append(func)
    return func


def klp_add_object_nops(patch: klp_patch, old_obj: klp_object) -> int:
    """klp_add_object_nops() (kernel/livepatch/core.c), all policies."""
    obj = klp_find_object(patch, old_obj)
    if obj is None:
        obj = klp_alloc_object_dynamic(patch, old_obj.name)
    for old_func in old_obj.funcs:
        if klp_find_func(obj, old_func) is None:
            klp_alloc_func_nop(old_func, obj)
    return 0


def klp_add_nops(k: Kernel, patch: klp_patch) -> int:
    """klp_add_nops() (kernel/livepatch/core.c), all policies.

    Nops for every function of every older patch.
    """
    for old_patch in klp_state(k).patches:
        for old_obj in old_patch.objs:
            err = klp_add_object_nops(patch, old_obj)
            if err:
                return err
    return 0


def __klp_free_funcs(obj: klp_object, nops_only: bool) -> None:
    """__klp_free_funcs() (kernel/livepatch/core.c), all policies."""
    obj.funcs = [f for f in obj.funcs if nops_only and not f.nop]


def __klp_free_objects(patch: klp_patch, nops_only: bool) -> None:
    """__klp_free_objects() (kernel/livepatch/core.c), all policies."""
    keep = []
    for obj in patch.objs:
        __klp_free_funcs(obj, nops_only)
        if nops_only and not obj.dynamic:
            keep.append(obj)
    patch.objs = keep


def klp_free_objects(patch: klp_patch) -> None:
    """klp_free_objects() (kernel/livepatch/core.c), all policies."""
    __klp_free_objects(patch, False)


def klp_free_objects_dynamic(patch: klp_patch) -> None:
    """klp_free_objects_dynamic() (kernel/livepatch/core.c), all policies."""
    __klp_free_objects(patch, True)


def klp_free_patch_start(k: Kernel, patch: klp_patch) -> None:
    """klp_free_patch_start() (kernel/livepatch/core.c), all policies.

    Off klp_patches, objects freed (under klp_mutex).
    """
    st = klp_state(k)
    if patch in st.patches:
        st.patches.remove(patch)
    klp_free_objects(patch)


def klp_free_patch_finish(k: Kernel, patch: klp_patch) -> None:
    """klp_free_patch_finish() (kernel/livepatch/core.c), all policies.

    Release the kobject, put the module unless forced.
    """
    st = klp_state(k)
    if st.sysfs.get(patch.mod) is patch:
        del st.sysfs[patch.mod]
    if not patch.forced and patch.mod in st.modules:
        st.modules[patch.mod] -= 1


def klp_free_patch_async(k: Kernel, patch: klp_patch) -> None:
    """klp_free_patch_async() (kernel/livepatch/core.c), all policies.

    Start now, finish in scheduled work.
    """
    klp_free_patch_start(k, patch)
    klp_state(k).free_work.append(patch)


def klp_free_replaced_patches_async(k: Kernel, new_patch: klp_patch) -> None:
    """klp_free_replaced_patches_async() (kernel/livepatch/core.c), all policies.

    Free every patch older than ``new_patch``.
    """
    for old_patch in list(klp_state(k).patches):
        if old_patch is new_patch:
            return
        klp_free_patch_async(k, old_patch)


def klp_init_func(obj: klp_object, func: klp_func) -> int:
    """klp_init_func() (kernel/livepatch/core.c), all policies: a name, and a new_func unless a nop."""
    if not func.old_name:
        return -Errno.EINVAL
    if not func.new_func and not func.nop:
        return -Errno.EINVAL
    if len(func.old_name) >= 512:  # KSYM_NAME_LEN
        return -Errno.EINVAL
    func.patched = False
    func.transition = False
    return 0


def klp_init_object_loaded(k: Kernel, patch: klp_patch, obj: klp_object) -> int:
    """klp_init_object_loaded() (kernel/livepatch/core.c), all policies.

    Resolve old_func; a nop's new_func is old_func.
    """
    for func in obj.funcs:
        assert func.old_name is not None
        addr = klp_find_object_symbol(k, obj.name, func.old_name, func.old_sympos)
        if not addr:
            func.old_func = None
            return -Errno.EINVAL
        func.old_func = addr
        if func.nop:
            func.new_func = func.old_func
    return 0


def klp_init_object(k: Kernel, patch: klp_patch, obj: klp_object) -> int:
    """klp_init_object() (kernel/livepatch/core.c), all policies.

    Vmlinux is always loaded; a module object is loaded when the catalogue has its records (the
    model does not load or unload modules, so klp_module_coming/going never run).
    """
    obj.patched = False
    for func in obj.funcs:
        ret = klp_init_func(obj, func)
        if ret:
            return ret
    return klp_init_object_loaded(k, patch, obj)


def klp_init_patch(k: Kernel, patch: klp_patch) -> int:
    """klp_init_patch() (kernel/livepatch/core.c), all policies.

    Sysfs directory, nops for replace, objects, klp_patches.
    """
    st = klp_state(k)
    if patch.mod in st.sysfs:
        return -Errno.EEXIST  # kobject_add: the directory exists
    st.sysfs[patch.mod] = patch
    if patch.replace:
        ret = klp_add_nops(k, patch)
        if ret:
            return ret
    for obj in patch.objs:
        ret = klp_init_object(k, patch, obj)
        if ret:
            return ret
    st.patches.append(patch)
    return 0


def __klp_disable_patch(k: Kernel, patch: klp_patch) -> int:
    """__klp_disable_patch() (kernel/livepatch/core.c), all policies: start the unpatching transition."""
    st = klp_state(k)
    if not patch.enabled:
        k.warn("__klp_disable_patch", f"{patch.mod} is not enabled")
        return -Errno.EINVAL
    if st.transition_patch is not None:
        return -Errno.EBUSY
    klp_init_transition(k, patch, KLP_UNPATCHED)
    klp_start_transition(k)
    patch.enabled = False
    klp_try_complete_transition(k)
    return 0


def __klp_enable_patch(k: Kernel, patch: klp_patch) -> int:
    """__klp_enable_patch() (kernel/livepatch/core.c), all policies.

    Patch every object, start and try the transition.
    """
    st = klp_state(k)
    if st.transition_patch is not None:
        return -Errno.EBUSY
    if patch.enabled:
        k.warn("__klp_enable_patch", f"{patch.mod} is already enabled")
        return -Errno.EINVAL
    k.log("INFO", "__klp_enable_patch", f"{_PR}enabling patch '{patch.mod}'")
    klp_init_transition(k, patch, KLP_PATCHED)
    for obj in patch.objs:
        ret = klp_patch_object(k, obj)
        if ret:
            k.log("ERR", "__klp_enable_patch", f"{_PR}failed to patch object '{_objname(obj)}'")
            k.log("ERR", "__klp_enable_patch", f"{_PR}failed to enable patch '{patch.mod}'")
            klp_cancel_transition(k)
            return ret
    klp_start_transition(k)
    patch.enabled = True
    klp_try_complete_transition(k)
    return 0


def klp_enable_patch(k: Kernel, patch: klp_patch) -> int:
    """klp_enable_patch() (kernel/livepatch/core.c), all policies.

    Init under klp_mutex, enable; on error free the patch.
    """
    if not patch.mod or not patch.objs:
        return -Errno.EINVAL
    for obj in patch.objs:
        if not obj.funcs:
            return -Errno.EINVAL
    if not k.arch.livepatch:  # no HAVE_LIVEPATCH: klp_init() never ran, klp_initialized() is false
        return -Errno.ENODEV
    st = klp_state(k)
    mutex_lock(k, "klp_mutex")
    # klp_is_patch_compatible(): no klp_states are modelled, so every patch is compatible.
    st.modules[patch.mod] = st.modules.get(patch.mod, 0) + 1  # try_module_get
    ret = klp_init_patch(k, patch)
    if not ret:
        ret = __klp_enable_patch(k, patch)
    if ret:
        klp_free_patch_start(k, patch)
        mutex_unlock(k, "klp_mutex")
        klp_free_patch_finish(k, patch)
        return ret
    mutex_unlock(k, "klp_mutex")
    return 0


def klp_unpatch_replaced_patches(k: Kernel, new_patch: klp_patch) -> None:
    """klp_unpatch_replaced_patches() (kernel/livepatch/core.c), all policies.

    Disable and unpatch every older patch.
    """
    for old_patch in klp_state(k).patches:
        if old_patch is new_patch:
            return
        old_patch.enabled = False
        klp_unpatch_objects(k, old_patch)


def klp_discard_nops(k: Kernel, new_patch: klp_patch) -> None:
    """klp_discard_nops() (kernel/livepatch/core.c), all policies.

    Unpatch and free the nops of the transition patch.
    """
    patch = klp_state(k).transition_patch
    assert patch is not None
    klp_unpatch_objects_dynamic(k, patch)
    klp_free_objects_dynamic(patch)


def enabled_store(k: Kernel, patch: klp_patch, enabled: bool) -> int:
    """enabled_store() (kernel/livepatch/core.c), all policies.

    Reverse this patch's transition, or start a disable.
    """
    st = klp_state(k)
    mutex_lock(k, "klp_mutex")
    ret = 0
    if patch.enabled == enabled:
        ret = -Errno.EINVAL
    elif patch is st.transition_patch:
        klp_reverse_transition(k)
    elif not enabled:
        ret = __klp_disable_patch(k, patch)
    else:
        ret = -Errno.EINVAL
    mutex_unlock(k, "klp_mutex")
    return ret


def enabled_show(patch: klp_patch) -> str:
    """enabled_show() (kernel/livepatch/core.c), all policies."""
    return f"{int(patch.enabled)}\n"


def transition_show(k: Kernel, patch: klp_patch) -> str:
    """transition_show() (kernel/livepatch/core.c), all policies.

    1 while this patch is the transition patch.
    """
    return f"{int(patch is klp_state(k).transition_patch)}\n"


def force_store(k: Kernel, patch: klp_patch, val: bool) -> int:
    """force_store() (kernel/livepatch/core.c), all policies: force the running transition of this patch."""
    if not val:
        return 0
    mutex_lock(k, "klp_mutex")
    if patch is not klp_state(k).transition_patch:
        mutex_unlock(k, "klp_mutex")
        return -Errno.EINVAL
    klp_force_transition(k)
    mutex_unlock(k, "klp_mutex")
    return 0


def patched_show(obj: klp_object) -> str:
    """patched_show() (kernel/livepatch/core.c), all policies."""
    return f"{int(obj.patched)}\n"


# ---------------------------------------------------------------------------------------------
# Code the model runs: the handler and the replacement functions
# ---------------------------------------------------------------------------------------------
def livepatch_body_retval(addr: str) -> int:
    """The marker a modelled replacement function returns: a stable number derived from its address."""
    h = 0
    for ch in addr.encode():
        h = (h * 131 + ch) & 0xFFFF
    return 0x4C500000 | h  # "LP" in the high half


def _livepatch_body(k: Kernel, ctx: CallContext, addr: Addr) -> int:
    """A replacement function (new_func): a body that returns its marker.

    calls.run_body records it (``ctx.body`` and a ("body", "<addr> returns <marker>") event).
    """
    return livepatch_body_retval(str(addr))




# ---------------------------------------------------------------------------------------------
# Client API: what a user does (insmod, echo 0 > enabled, rmmod) and what sysfs shows
# ---------------------------------------------------------------------------------------------
FuncSpec = str | tuple[str, int] | klp_func


def default_new_func(patch: str, old_name: str, old_sympos: int = 0) -> str:
    """The model's address of the replacement of ``old_name`` in ``patch``: ``livepatch_<patch>:<func>``."""
    suffix = f",{old_sympos}" if old_sympos > 1 else ""
    return f"{LIVEPATCH_CODE_PREFIX}{patch}:{old_name}{suffix}"


def _make_objects(patch: str, funcs: Sequence[FuncSpec]) -> list[klp_object]:
    """The patch's klp_objects: ``module:func`` names go to that module's object (func ``func``)."""
    by_obj: dict[str | None, list[FuncSpec]] = {}
    for spec in funcs:
        name = spec.old_name if isinstance(spec, klp_func) else spec[0] if isinstance(spec, tuple) else spec
        mod, sep, plain = (name or "").partition(":")
        if not sep or isinstance(spec, klp_func):
            by_obj.setdefault(None, []).append(spec)
        else:
            by_obj.setdefault(mod, []).append((plain, spec[1]) if isinstance(spec, tuple) else plain)
    return [klp_object(obj, _make_funcs(patch, specs)) for obj, specs in by_obj.items()]


def _make_funcs(patch: str, funcs: Iterable[FuncSpec]) -> list[klp_func]:
    out = []
    for spec in funcs:
        if isinstance(spec, klp_func):
            out.append(spec)
        elif isinstance(spec, tuple):
            name, pos = spec
            out.append(klp_func(name, default_new_func(patch, name, pos), pos))
        else:
            out.append(klp_func(spec, default_new_func(patch, spec)))
    return out


def _flush_free_work(k: Kernel) -> None:
    st = klp_state(k)
    if st.defer_free_work:
        return
    klp_run_free_work(k)


def klp_run_free_work(k: Kernel) -> None:
    """Run the scheduled klp_free_patch_work_fn items (kernel/livepatch/core.c): klp_free_patch_finish."""
    st = klp_state(k)
    while st.free_work:
        klp_free_patch_finish(k, st.free_work.pop(0))


def livepatch_enable(k: Kernel, name: str, funcs: Sequence[FuncSpec], replace: bool = False,
                     hold: bool = False) -> int:
    """insmod of a livepatch module ``name`` whose init calls klp_enable_patch().

    ``funcs``: function names, ``(name, old_sympos)`` pairs, or klp_func objects; the new
    functions are ``livepatch_<name>:<func>``. A ``module:func`` name puts the function in that
    module's klp_object; the others go to the vmlinux object (objects in order of first mention). ``hold``: the task sleeps on an affected function,
    so the transition stays open until :func:`klp_transition_complete`. Returns the init's
    result; on failure the module is not loaded. -EEXIST if a module of that name is loaded.
    """
    st = klp_state(k)
    if name in st.modules:
        return -Errno.EEXIST
    patch = klp_patch(name, _make_objects(name, funcs), replace=replace)
    task = _task(k)
    was_blocked = task.blocked
    if hold:
        task.blocked = True
    ret = klp_enable_patch(k, patch)
    if ret:
        task.blocked = was_blocked
        st.modules.pop(name, None)  # do_init_module failed: the module is freed
    _flush_free_work(k)
    return ret


def livepatch_write_enabled(k: Kernel, name: str, value: int) -> int:
    """``echo value > /sys/kernel/livepatch/<name>/enabled`` (enabled_store); -ENOENT: no such file."""
    patch = klp_state(k).sysfs.get(name)
    if patch is None:
        return -Errno.ENOENT
    ret = enabled_store(k, patch, bool(value))
    _flush_free_work(k)
    return ret


def livepatch_disable(k: Kernel, name: str, hold: bool = False) -> int:
    """``echo 0 > /sys/kernel/livepatch/<name>/enabled``; ``hold``: the task stays in the function."""
    if name not in klp_state(k).sysfs:
        return -Errno.ENOENT
    task = _task(k)
    was_blocked = task.blocked
    if hold:
        task.blocked = True
    ret = livepatch_write_enabled(k, name, 0)
    if ret:
        task.blocked = was_blocked
    return ret


def livepatch_force(k: Kernel, name: str) -> int:
    """``echo 1 > /sys/kernel/livepatch/<name>/force`` (force_store)."""
    patch = klp_state(k).sysfs.get(name)
    if patch is None:
        return -Errno.ENOENT
    ret = force_store(k, patch, True)
    _flush_free_work(k)
    return ret


def livepatch_unload(k: Kernel, name: str) -> int:
    """rmmod of the livepatch module (delete_module): -ENOENT if absent, -EWOULDBLOCK while referenced."""
    st = klp_state(k)
    if name not in st.modules:
        return -Errno.ENOENT
    if st.modules[name] != 0:
        return -Errno.EAGAIN  # EWOULDBLOCK: the patch still holds a module reference
    del st.modules[name]
    return 0


def klp_transition_work(k: Kernel) -> int:
    """Run the delayed transition work once (klp_transition_work_fn); the task stays where it is.

    Returns 0, or -EINVAL when no transition is in progress (model convention, nothing runs).
    """
    if klp_state(k).transition_patch is None:
        return -Errno.EINVAL
    klp_transition_work_fn(k)
    _flush_free_work(k)
    return 0


def klp_transition_complete(k: Kernel) -> int:
    """Let a held transition finish: the task leaves the affected function, then the work runs.

    The task returns to user space (klp_update_patch_state) and the delayed work completes the
    transition. Returns 0, or -EINVAL when no transition is in progress.
    """
    st = klp_state(k)
    if st.transition_patch is None:
        return -Errno.EINVAL
    task = _task(k)
    task.blocked = False
    klp_update_patch_state(k, task)
    return klp_transition_work(k)


def klp_in_transition(k: Kernel) -> bool:
    """A livepatch transition is in progress (klp_transition_patch is set)."""
    st = k.subsys.get("klp")
    return st is not None and st.transition_patch is not None


def livepatch_sysfs(k: Kernel) -> str:
    """/sys/kernel/livepatch as ``path`` lines for directories and ``path: value`` for readable files.

    Per patch (core.c: klp_init_patch, klp_init_object, klp_init_func): ``enabled``,
    ``transition``, ``force`` (write-only, listed without value), ``<object>/patched`` and the
    ``<object>/<function>,<sympos>/`` directories (sympos 1 for 0).
    """
    st = klp_state(k)
    out = ["/sys/kernel/livepatch/\n"]
    for name in sorted(st.sysfs):
        patch = st.sysfs[name]
        base = f"/sys/kernel/livepatch/{name}"
        out.append(f"{base}/\n")
        out.append(f"{base}/enabled: {enabled_show(patch)}")
        out.append(f"{base}/force\n")
        out.append(f"{base}/transition: {transition_show(k, patch)}")
        for obj in patch.objs:
            ob = f"{base}/{_objname(obj)}"
            out.append(f"{ob}/\n")
            out.append(f"{ob}/patched: {patched_show(obj)}")
            for func in obj.funcs:
                out.append(f"{ob}/{func.old_name},{func.old_sympos or 1}/\n")
    return "".join(out)


def klp_expected_body(k: Kernel, ip: int) -> Addr | None:
    """The code klp_ftrace_handler sends the current task to for ``ip``, or None (original code).

    A pure reading of the state (klp_find_ops + the handler's choice), for invariants and views.
    """
    st = k.subsys.get("klp")
    if st is None:
        return None
    ops = klp_find_ops(k, ip)
    if ops is None:
        return None
    func = ops.func_stack[0]
    task = st.tasks.get(k.current)
    if func.transition and task is not None and task.patch_state == KLP_UNPATCHED:
        if len(ops.func_stack) < 2:
            return None
        func = ops.func_stack[1]
    return None if func.nop else func.new_func


#: What this client adds to a kernel's call table (:mod:`ftlab.model.calltable`).
CALLS = CallTable(callbacks={KLP_FTRACE_HANDLER: klp_ftrace_handler},
                  prefixes=((LIVEPATCH_CODE_PREFIX, _livepatch_body),),
                  renamers=((LIVEPATCH_CODE_PREFIX, _spell_body),))  # type: ignore[arg-type]


__all__ = [
    "KLP_UNDEFINED", "KLP_UNPATCHED", "KLP_PATCHED", "KLP_FTRACE_HANDLER", "KlpState",
    "klp_func", "klp_object", "klp_patch", "klp_ops", "klp_task", "klp_state",
    "klp_find_ops", "klp_ftrace_handler", "klp_patch_func", "klp_unpatch_func",
    "klp_enable_patch", "enabled_store", "force_store",
    "livepatch_enable", "livepatch_disable", "livepatch_write_enabled", "livepatch_force",
    "livepatch_unload", "klp_transition_complete", "klp_transition_work", "klp_run_free_work",
    "klp_in_transition", "livepatch_sysfs", "livepatch_body_retval", "default_new_func",
    "klp_expected_body",
]
