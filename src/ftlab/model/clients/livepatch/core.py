"""kernel/livepatch/core.c: the patch life cycle (init, enable, disable, free), replace mode and sysfs."""

from __future__ import annotations

from ...errno import Errno
from ...kernel import Kernel
from ...locks import mutex_lock, mutex_unlock
from .patch import klp_patch_object, klp_unpatch_objects, klp_unpatch_objects_dynamic
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
from .transition import (
    klp_cancel_transition,
    klp_force_transition,
    klp_init_transition,
    klp_reverse_transition,
    klp_start_transition,
    klp_try_complete_transition,
)


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
