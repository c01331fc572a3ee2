"""The BPF client: tracing programs (fentry / fexit / fmod_ret) and their links.

Kernel source: kernel/bpf/verifier.c (bpf_check_attach_target, check_attach_modify_return,
btf_id_deny) and kernel/bpf/syscall.c (bpf_tracing_prog_attach, bpf_tracing_link_release), on
Debian's 6.1 config. A program's load and its link creation are one step (:func:`bpf_attach`),
and closing the link is :func:`bpf_detach`; what the link does to the function's trampoline is
the trampoline core's (:mod:`ftlab.model.bpf_trampoline`, whose names are re-exported here) and
the policy's (each version's ``trampoline`` module).

Naming. The trampoline key is bpf_trampoline_compute_key (include/linux/bpf_verifier.h) for a
kernel function: ``(btf_obj_id(vmlinux) << 32) | 0x80000000 | btf_id``, with
btf_obj_id(vmlinux) = 1 (the first BTF object) and a synthetic ``btf_id`` = record index + 1
(real BTF ids differ; the model needs only one distinct id per record). A module's function
uses its module's BTF object: synthetic ids 2, 3, ... in the catalogue's module order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..bpf_trampoline import (
    BPF_IMAGE_SIZE,
    BPF_MAX_TRAMP_LINKS,
    BPF_TRAMP_F,
    IMAGE_PREFIX,
    KINDS,
    X86_PATCH_SIZE,
    BpfProgram,
    BpfState,
    arch_prepare_bpf_trampoline,
    bpf_arch_text_poke,
    bpf_key,
    bpf_state,
    bpf_tramp_image,
    bpf_tramp_image_put,
    bpf_tramp_link,
    bpf_tramp_prog_type,
    bpf_trampoline,
    bpf_trampoline_compute_key,
    bpf_trampoline_get,
    bpf_trampoline_get_progs,
    bpf_trampoline_link_prog,
    bpf_trampoline_lookup,
    bpf_trampoline_module_get,
    bpf_trampoline_module_put,
    bpf_trampoline_put,
    bpf_trampoline_unlink_prog,
    cur_image_of_empty,
    find_image,
    run_bpf_trampoline,
    tr_mutex_name,
    trampolines,
)
from ..errno import Errno

if TYPE_CHECKING:  # pragma: no cover
    from ..kernel import Kernel

#: btf_obj_id(btf_vmlinux): vmlinux BTF is the first BTF object registered.
VMLINUX_BTF_OBJ_ID = 1
#: SECURITY_PREFIX (kernel/bpf/verifier.c: check_attach_modify_return).
SECURITY_PREFIX = "security_"
#: Functions on the error-injection list (kernel/bpf/verifier.c: within_error_injection_list).
#: Debian's 6.1 config has CONFIG_FUNCTION_ERROR_INJECTION unset, so the list is empty.
ERROR_INJECTION_LIST: frozenset[str] = frozenset()
#: btf_id_deny (kernel/bpf/verifier.c) on Debian's 6.1 config: CONFIG_SMP=y, CONFIG_PREEMPT_RCU=y,
#: CONFIG_DEBUG_PREEMPT and CONFIG_TRACE_PREEMPT_TOGGLE unset.
BTF_ID_DENY: frozenset[str] = frozenset({"migrate_disable", "migrate_enable"})
# ---------------------------------------------------------------------------------------------
# Keys, lookup, get/put
# ---------------------------------------------------------------------------------------------
def btf_id_of(k: Kernel, ip: int) -> int:
    """The synthetic BTF id of the function at ``ip``: record index + 1 (BTF id 0 is void)."""
    return k.rec_index(ip) + 1


def btf_obj_id_of(k: Kernel, ip: int) -> int:
    """The synthetic btf_obj_id of the BTF that describes the function at ``ip``: vmlinux's
    (:data:`VMLINUX_BTF_OBJ_ID`), or 2, 3, ... for modules in the catalogue's order."""
    mod = k.cat.module_of(k.rec_index(ip))
    if mod is None:
        return VMLINUX_BTF_OBJ_ID
    order = k.cat.derived("bpf.btf_obj_ids", lambda cat: {m: VMLINUX_BTF_OBJ_ID + 1 + n for n, m in enumerate(
        dict.fromkeys(m for m in (cat.modules or ()) if m is not None))})
    return order[mod]


# ---------------------------------------------------------------------------------------------
# Verifier and syscall side
# ---------------------------------------------------------------------------------------------
def within_error_injection_list(name: str) -> bool:
    """within_error_injection_list() (include/linux/error-injection.h), all policies: a stub on Debian's config."""
    return name in ERROR_INJECTION_LIST


def check_attach_modify_return(name: str) -> int:
    """check_attach_modify_return() (kernel/bpf/verifier.c), all policies: error-injection list or security_*."""
    if within_error_injection_list(name) or name.startswith(SECURITY_PREFIX):
        return 0
    return -Errno.EINVAL


def bpf_check_attach_target(k: Kernel, prog: BpfProgram) -> int:
    """bpf_check_attach_target() + check_attach_btf_id() (kernel/bpf/verifier.c), all policies.

    btf_id_deny functions are -EINVAL for every tracing program; fmod_ret is -EINVAL outside
    the error-injection list and security_* functions. (At BPF_PROG_LOAD in the kernel.)
    """
    name = prog.target.rpartition(":")[2]  # the BTF name: without a module prefix
    if name in BTF_ID_DENY:
        return -Errno.EINVAL
    if prog.kind == "fmod_ret":
        return check_attach_modify_return(name)
    return 0


def bpf_attach(k: Kernel, prog: BpfProgram) -> int:
    """BPF_PROG_LOAD + BPF_LINK_CREATE (syscall.c: bpf_tracing_prog_attach), all policies: attach ``prog``.

    Verifier checks (check_attach_btf_id), bpf_trampoline_get, bpf_trampoline_link_prog, as one
    step (the prog's trampoline reference passes to the link). Returns 0
    or the kernel's negative errno; on failure the trampoline reference is put again. Unknown
    target names raise :class:`~ftlab.errors.InputError`. No lock is held on return.
    """
    ip = k.cat.lookup(prog.target, prog.sympos)
    err = bpf_check_attach_target(k, prog)
    if err:
        return err
    key = bpf_trampoline_compute_key(btf_obj_id_of(k, ip), btf_id_of(k, ip))
    tr = bpf_trampoline_get(k, key, ip)
    link = bpf_tramp_link(prog, key)
    err = bpf_trampoline_link_prog(k, link, tr)
    if err:
        bpf_trampoline_put(k, tr)
        return err
    bpf_state(k).links[prog] = link
    return 0


def bpf_detach(k: Kernel, prog: BpfProgram) -> int:
    """bpf_tracing_link_release() (kernel/bpf/syscall.c), all policies: close ``prog``'s link.

    bpf_trampoline_unlink_prog, whose error is only a WARN_ON_ONCE (closing a link cannot fail:
    the release is void), then bpf_trampoline_put. Returns 0, or -ENOENT (model-level) if ``prog``
    has no link. No lock is held on return.
    """
    st = bpf_state(k)
    link = st.links.pop(prog, None)
    if link is None:
        return -Errno.ENOENT
    tr = st.trampoline_table[link.key]
    err = bpf_trampoline_unlink_prog(k, link, tr)
    if err:
        k.warn("bpf_tracing_link_release", f"bpf_trampoline_unlink_prog returned {err}", once=True)
    bpf_trampoline_put(k, tr)
    return 0


def bpf_trampoline_of(k: Kernel, name: str, sympos: int = 0) -> bpf_trampoline | None:
    """The trampoline of function ``name``, if one exists."""
    ip = k.cat.lookup(name, sympos)
    key = bpf_trampoline_compute_key(btf_obj_id_of(k, ip), btf_id_of(k, ip))
    return bpf_state(k).trampoline_table.get(key)


__all__ = [
    "BPF_TRAMP_F", "bpf_tramp_prog_type", "BPF_MAX_TRAMP_LINKS", "BPF_IMAGE_SIZE", "IMAGE_PREFIX", "KINDS",
    "X86_PATCH_SIZE", "BpfProgram", "BpfState", "bpf_tramp_link", "bpf_tramp_image", "bpf_trampoline",
    "bpf_state", "bpf_key", "bpf_trampoline_compute_key", "btf_id_of", "btf_obj_id_of", "bpf_trampoline_lookup",
    "bpf_trampoline_get", "bpf_trampoline_put", "bpf_trampoline_module_get", "bpf_trampoline_module_put",
    "bpf_arch_text_poke", "bpf_tramp_image_put", "cur_image_of_empty", "bpf_trampoline_get_progs",
    "arch_prepare_bpf_trampoline", "bpf_trampoline_link_prog", "bpf_trampoline_unlink_prog",
    "bpf_check_attach_target", "check_attach_modify_return", "bpf_attach", "bpf_detach", "bpf_trampoline_of",
    "find_image", "trampolines", "run_bpf_trampoline", "tr_mutex_name",
]
