"""What a user does with live patches (insmod, echo 0 > enabled, rmmod, sysfs) and what the model's
replacement functions do when called."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ...calls import CallContext
from ...calltable import CallTable
from ...errno import Errno
from ...kernel import Kernel
from ...ops import Addr
from .core import (
    enabled_show,
    enabled_store,
    force_store,
    klp_enable_patch,
    klp_free_patch_finish,
    patched_show,
    transition_show,
)
from .patch import klp_find_ops, klp_ftrace_handler
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
    _spell_body,
    _task,
    klp_func,
    klp_object,
    klp_ops,
    klp_patch,
    klp_state,
    klp_task,
)
from .transition import klp_transition_work_fn, klp_update_patch_state


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
    module's klp_object; the others go to the vmlinux object (objects in order of first mention). ``hold``: the task
    sleeps on an affected function,
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
