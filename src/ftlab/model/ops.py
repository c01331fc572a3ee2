"""struct ftrace_ops: one user of the ftrace hook.

Kernel source: include/linux/ftrace.h (struct ftrace_ops; ``ops_func`` is added by the seed,
v2 3/5, and kept by Linux 6.1; 5.18 has none). Policy-independent data.

``func`` and ``trampoline`` are code addresses. The model writes a code address as the kernel
symbol it names (``"call_direct_funcs"``, ``"ftrace_regs_caller"``), or as an ``int`` for memory
allocated at run time (an ops trampoline made by create_trampoline), which is how %pS prints it.
``0``/``None`` are the kernel's NULL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .flags import FTRACE_OPS_FL, ops_flag_names
from .hash import EMPTY_HASH, ftrace_ops_hash
from .naming import Rename

#: A code address: a kernel symbol name, a run-time allocated address, or 0 (NULL).
Addr = str | int

#: ftrace_ops_func_t (seed v2 3/5): ``int (*)(struct ftrace_ops *op, enum ftrace_ops_cmd cmd)``.
OpsFunc = Callable[["ftrace_ops", int], int]


class ftrace_ops:
    """struct ftrace_ops (include/linux/ftrace.h).

    ``name`` is the model's label for the object (``"klp_ops[cmdline_proc_show]"``); it has no
    kernel counterpart but makes views readable. ``core_data`` says whether the object lives in
    core kernel data (a static ops such as global_ops or kprobe_ftrace_ops), which decides
    FTRACE_OPS_FL_DYNAMIC in __register_ftrace_function.
    """

    __slots__ = ("name", "func", "flags", "private", "ops_func", "trampoline", "trampoline_size",
                 "saved_func", "local_hash", "func_hash", "old_hash", "core_data", "owner", "name_template",
                 "direct_call", "subop_list", "managed",
                 "__weakref__")

    def __init__(self, name: str, func: Addr | None = None, flags: int = 0, *, private: Any = None,
                 ops_func: OpsFunc | None = None, trampoline: Addr = 0,
                 core_data: bool = False, owner: str | None = None) -> None:
        #: ``owner``: the client whose name this ops' name is made of (``name`` is then a template
        #: with ``{}`` where the owner's name goes: ``direct[{}]``)
        self.owner = owner
        self.name_template = name if owner is not None else None
        name = name.format(owner) if owner is not None else name
        self.name = name
        self.func: Addr | None = func
        self.flags = int(flags)
        self.private = private
        self.ops_func = ops_func
        self.trampoline: Addr = trampoline
        self.trampoline_size = 0
        #: ops->direct_call (6.4+: the trampoline call_direct_funcs jumps to; 0 before)
        self.direct_call: Addr = 0
        self.saved_func: Addr | None = None
        self.local_hash = ftrace_ops_hash(f"regex_lock[{name}]")
        # Before ftrace_ops_init() the kernel's func_hash is NULL; the model points it at
        # local_hash only once INITIALIZED, like the kernel.
        self.func_hash: ftrace_ops_hash | None = None
        self.old_hash = ftrace_ops_hash(f"old_hash[{name}]", None, None)
        self.core_data = core_data
        #: ops->subop_list (6.11+): the subops a manager ops traces for, head first
        self.subop_list: tuple[ftrace_ops, ...] = ()
        #: ops->managed (6.11+): the manager ops of a subops
        self.managed: ftrace_ops | None = None

    # -- convenience ---------------------------------------------------------------------------
    @property
    def hash(self) -> ftrace_ops_hash:
        """func_hash once initialised, else local_hash (what ftrace_ops_init will install)."""
        return self.func_hash if self.func_hash is not None else self.local_hash

    def has(self, flag: FTRACE_OPS_FL) -> bool:
        return bool(self.flags & flag)

    def __repr__(self) -> str:
        return f"<ftrace_ops {self.name} {ops_flag_names(self.flags)}>"

    def __deepcopy__(self, memo: dict[int, Any]) -> ftrace_ops:
        """Field-wise copy (much faster than the generic one; state copies are hot in the explorer)."""
        from .copying import clone as deepcopy

        new = ftrace_ops.__new__(ftrace_ops)
        memo[id(self)] = new
        new.name, new.func, new.flags = self.name, self.func, self.flags
        new.trampoline, new.trampoline_size = self.trampoline, self.trampoline_size
        new.saved_func, new.core_data = self.saved_func, self.core_data
        new.owner, new.name_template = self.owner, self.name_template
        new.direct_call = self.direct_call
        new.private = deepcopy(self.private, memo)
        new.ops_func = deepcopy(self.ops_func, memo)
        new.local_hash = deepcopy(self.local_hash, memo)
        new.func_hash = deepcopy(self.func_hash, memo)
        new.old_hash = deepcopy(self.old_hash, memo)
        new.subop_list = tuple(deepcopy(op, memo) for op in self.subop_list) if self.subop_list else ()
        new.managed = deepcopy(self.managed, memo) if self.managed is not None else None
        return new

    def key_name(self, nm: Rename | None = None) -> str:
        """The ops' name as a key under ``nm`` spells it (its owner's name renamed)."""
        if nm is None or self.owner is None:
            return self.name
        assert self.name_template is not None
        return self.name_template.format(nm(self.owner))

    def key(self, nm: Rename | None = None, rename_addr: Callable[[Addr], Addr] | None = None) -> tuple[Any, ...]:
        """Hashable value of this ops (canonical state forms), including the state of the object
        ``private`` points at (a BPF trampoline, a klp_ops): a registered ops can outlive that
        object's place in its subsystem's tables (a trampoline put while ftrace is dead and its
        fops stays registered), and what it still does through it must tell states apart.
        ``nm``: the renaming of client names (:mod:`ftlab.model.naming`), and ``rename_addr`` how it
        spells a code address (the kernel's call table knows their forms)."""
        p = self.private
        if p is None:
            pk: Any = None
        elif hasattr(p, "key_tuple"):
            pk = p.key_tuple(nm)
        elif hasattr(p, "key"):
            pk = p.key(nm)
        else:
            pk = repr(p)
        direct_call = self.direct_call if rename_addr is None else rename_addr(self.direct_call)
        key: tuple[Any, ...] = (self.key_name(nm), self.flags, self.func, self.trampoline, self.hash.key(),
               self.ops_func is not None, pk, direct_call)
        if self.subop_list:  # a manager (6.11+): whom it traces for, with their filters
            key += (tuple((op.key_name(nm), op.hash.key()) for op in self.subop_list),)
        return key


__all__ = ["ftrace_ops", "Addr", "OpsFunc", "EMPTY_HASH"]
