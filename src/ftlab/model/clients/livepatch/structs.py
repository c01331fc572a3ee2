"""Live patching's structures (include/linux/livepatch.h, kernel/livepatch/patch.h) and statics.

The objects of a live patch (klp_patch, klp_object, klp_func), the per-function klp_ops, the
tasks' patch state, and the subsystem's globals (:class:`KlpState`, ``k.subsys["klp"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...calltable import install
from ...copying import fast_deepcopy
from ...flags import OPSF
from ...kernel import Kernel
from ...naming import Rename, spell
from ...ops import Addr, ftrace_ops

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

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
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

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
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

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return (spell(nm, self.mod), self.replace, self.enabled, self.forced, tuple(o.key(nm) for o in self.objs))


@dataclass(eq=False)
class klp_ops:
    """struct klp_ops (kernel/livepatch/patch.h): one fops per patched function + the func stack."""

    __deepcopy__ = fast_deepcopy

    fops: ftrace_ops
    func_stack: list[klp_func] = field(default_factory=list)  # [0] is the newest (list_add_rcu)

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return (self.fops.name, tuple(id_key(f, nm) for f in self.func_stack))


def id_key(func: klp_func, nm: Rename | None = None) -> tuple[Any, ...]:
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

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
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

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
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
        from .actions import CALLS  # the client's call table: its handler and replacement bodies
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


