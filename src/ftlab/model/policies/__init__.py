"""Policies: the parts of the ftrace hook core that differ between kernel versions.

Each policy is one sibling module of this package (``linux_5_18``, ``seed_v2``, ``linux_6_1``)
holding only the functions whose behaviour differs, under the kernel's names, each with a
docstring naming the kernel version and ``file: function``. Everything shared lives in
:mod:`ftlab.model.ftrace`, :mod:`ftlab.model.direct` and, for BPF trampolines,
:mod:`ftlab.model.clients.bpf`, which reach a policy only through ``k.policy.<function>``.

A policy module must define:

* ``NAME`` and ``DESCRIPTION``;
* ``ftrace_ops_cmd`` (its enum) and ``MULTI_FLAGS``;
* ``HAS_OPS_FUNC`` / ``HAS_SHARE_IPMODIFY_FLAG`` booleans;
* ``register_ftrace_function(k, ops)``, ``unregister_ftrace_function(k, ops)``;
* ``__ftrace_hash_update_ipmodify(k, ops, old_hash, new_hash)``;
* ``register_ftrace_direct_multi(k, ops, addr)``, and either ``__modify_ftrace_direct_multi``
  (v2, 6.1: :mod:`ftlab.model.direct` wraps it as modify_ftrace_direct_multi and its _nolock twin)
  or a whole ``modify_ftrace_direct_multi`` (5.18); unregister_ftrace_direct_multi is the same
  everywhere and lives in :mod:`ftlab.model.direct`;
* a "kernel/bpf/trampoline.c" section for :mod:`ftlab.model.clients.bpf`: ``BPF_TRAMP_F`` (the
  flags of that version's bpf.h), ``register_fentry``, ``modify_fentry``, ``unregister_fentry``,
  ``bpf_tramp_image_alloc`` and ``bpf_trampoline_update(k, tr, lock_direct_mutex)``; a version
  whose trampolines own an ftrace_ops also has ``bpf_trampoline_lookup_fops``,
  ``bpf_trampoline_put_fops`` and ``bpf_tramp_ftrace_ops_func``.

A function that a kernel version does not have (``modify_ftrace_direct_multi_nolock`` before the
series, ``cleanup_direct_functions_after_ipmodify`` before 6.0) is simply absent from its module;
calling it raises :class:`~ftlab.errors.ModelError` naming the policy.

Adding a kernel version means adding one module here and one line to ``_MODULES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ...errors import InputError, ModelError

#: Policy name -> module (relative to this package).
_MODULES = {
    "linux-5.18": "linux_5_18",
    "seed-v2": "seed_v2",
    "linux-6.1": "linux_6_1",
}

_REQUIRED = (
    "NAME", "DESCRIPTION", "KERNEL", "ftrace_ops_cmd", "MULTI_FLAGS", "HAS_OPS_FUNC",
    "HAS_SHARE_IPMODIFY_FLAG", "register_ftrace_function", "unregister_ftrace_function",
    "__ftrace_hash_update_ipmodify", "register_ftrace_direct_multi",
    "BPF_TRAMP_F", "register_fentry", "modify_fentry", "unregister_fentry", "bpf_tramp_image_alloc",
    "bpf_trampoline_update",
)


class Policy:
    """A frozen handle on one policy module; attribute access reaches the module's names."""

    __slots__ = ("name", "module")

    def __init__(self, name: str, module: ModuleType) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "module", module)

    def __getattr__(self, attr: str) -> Any:
        try:
            return getattr(self.module, attr)
        except AttributeError:
            raise ModelError(f"{attr} does not exist in {self.name} ({self.module.KERNEL})") from None

    def has(self, attr: str) -> bool:
        """Does this kernel version have ``attr``."""
        return hasattr(self.module, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError("Policy is immutable")

    def __deepcopy__(self, memo: dict) -> "Policy":
        return self

    def __copy__(self) -> "Policy":
        return self

    def __reduce__(self) -> tuple:
        return (get_policy, (self.name,))

    def __repr__(self) -> str:
        return f"<Policy {self.name}>"


_cache: dict[str, Policy] = {}


def policy_names() -> list[str]:
    """Names of every known policy."""
    return list(_MODULES)


def get_policy(name: str) -> Policy:
    """The policy called ``name``; :class:`InputError` for an unknown one."""
    p = _cache.get(name)
    if p is not None:
        return p
    modname = _MODULES.get(name)
    if modname is None:
        raise InputError(f"unknown policy {name!r} (known: {', '.join(_MODULES)})")
    module = importlib.import_module(f"{__name__}.{modname}")
    missing = [a for a in _REQUIRED if not hasattr(module, a)]
    if missing:  # pragma: no cover - a development error
        raise TypeError(f"policy module {modname} lacks {', '.join(missing)}")
    p = _cache[name] = Policy(name, module)
    return p
