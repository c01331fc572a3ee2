"""kernel/livepatch/patch.c: one klp_ops and ftrace_ops per patched function, and klp_ftrace_handler."""

from __future__ import annotations

from ...calls import CallContext
from ...errno import Errno
from ...ftrace import ftrace_location, ftrace_set_filter_ip, register_ftrace_function, unregister_ftrace_function
from ...kernel import Kernel
from ...ops import ftrace_ops
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
