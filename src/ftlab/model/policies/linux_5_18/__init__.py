"""Linux 5.18: before the series (any 5.5-5.19 kernel; the code did not change there).

Facts §5: every direct ops carries IPMODIFY (MULTI_FLAGS and the legacy direct_ops), there is no
ops_func and no SHARE_IPMODIFY, and __ftrace_hash_update_ipmodify only knows IPMODIFY ops: a
second one on a record is refused with -EBUSY after a rollback. So a live patch and a BPF
trampoline refuse each other with -EBUSY in both orders. register_ftrace_function takes only
ftrace_lock (the body 6.0 renamed register_ftrace_function_nolock, :mod:`..shared`). The BPF
trampoline of this era attaches through the legacy single-ip API on the shared ``direct_ops``
(:mod:`.ftrace`, :mod:`.trampoline`). Sources: the removed ("-") lines of the seed series,
kernel/trace/ftrace.c of 6.1 for the unchanged parts, facts §5.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...ftrace import ftrace_hash_move_and_update_ops
from .. import Overlay, Policy, absent, shared
from ..shared import bpf_tramp_image_alloc  # noqa: F401 (re-exported)
from .ftrace import (  # noqa: F401
    MULTI_FLAGS,
    __ftrace_hash_update_ipmodify,
    direct_ops,
    ftrace_ops_cmd,
    modify_ftrace_direct,
    modify_ftrace_direct_multi,
    register_ftrace_direct,
    register_ftrace_direct_multi,
    unregister_ftrace_direct,
)
from .trampoline import BPF_TRAMP_F, bpf_trampoline_update, modify_fentry, register_fentry, unregister_fentry  # noqa: F401


def bpf_trampoline_lookup_fops(k: object, tr: object) -> None:
    """bpf_trampoline_lookup() (trampoline.c, 5.18): no DIRECT_CALLS block, so no tr->fops."""
    return None


def bpf_trampoline_put_fops(k: object, tr: object) -> None:
    """bpf_trampoline_put() (trampoline.c, 5.18): there is no fops to free."""


BASE = Policy(
    name=__name__, kernel="Linux 5.18", description="before the series",
    ftrace_ops_cmd=ftrace_ops_cmd, MULTI_FLAGS=int(MULTI_FLAGS), has_share_ipmodify_flag=False,
    register_ftrace_function=shared.register_ftrace_function_nolock,
    unregister_ftrace_function=shared.unregister_ftrace_function,
    ftrace_hash_update_ipmodify=__ftrace_hash_update_ipmodify,
    prepare_direct_functions_for_ipmodify=absent("prepare_direct_functions_for_ipmodify"),
    cleanup_direct_functions_after_ipmodify=absent("cleanup_direct_functions_after_ipmodify"),
    register_ftrace_function_nolock=absent("register_ftrace_function_nolock"),
    register_direct=register_ftrace_direct_multi,
    unregister_direct=shared.unregister_ftrace_direct_multi,
    modify_direct=modify_ftrace_direct_multi,
    modify_direct_nolock=absent("modify_ftrace_direct_multi_nolock"),
    call_direct_funcs=shared.call_direct_funcs,
    ftrace_hash_move_and_update_ops=ftrace_hash_move_and_update_ops,
    modify_direct_body=absent("__modify_ftrace_direct_multi"),
    BPF_TRAMP_F=BPF_TRAMP_F,
    bpf_trampoline_lookup_fops=bpf_trampoline_lookup_fops,
    bpf_trampoline_put_fops=bpf_trampoline_put_fops,
    register_fentry=register_fentry,
    modify_fentry=modify_fentry,
    unregister_fentry=unregister_fentry,
    bpf_trampoline_update=bpf_trampoline_update,
    bpf_tramp_ftrace_ops_func=absent("bpf_tramp_ftrace_ops_func"),
)

OVERLAYS: Mapping[str, Overlay] = {}
