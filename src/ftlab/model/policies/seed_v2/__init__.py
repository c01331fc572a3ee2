"""Seed v2: Song Liu's "ftrace: host klp and bpf trampoline together", v2 (2 Jun 2022).

The seed (3/5, FTRACE_OPS_FL_SHARE_IPMODIFY) on top of 1/5 and 2/5 (:mod:`.ftrace`), and the
BPF side of 4/5 and 5/5 (:mod:`.trampoline`). What it shares with 5.18 or 6.1 verbatim is in
:mod:`..shared`. The registry composes no change onto it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...flags import ftrace_ops_cmd
from ...ftrace import ftrace_hash_move_and_update_ops
from .. import Overlay, Policy, absent, shared
from ..shared import (  # noqa: F401 (re-exported)
                      bpf_tramp_image_alloc,  # noqa: F401 (re-exported)
                      bpf_trampoline_lookup_fops,
                      modify_fentry,
                      unregister_fentry,
                      unregister_ftrace_function,
)
from .ftrace import (  # noqa: F401
                      MULTI_FLAGS,
                      __ftrace_hash_update_ipmodify,
                      __modify_ftrace_direct_multi,
                      prepare_direct_functions_for_ipmodify,
                      register_ftrace_direct_multi,
                      register_ftrace_function,
)
from .trampoline import (  # noqa: F401
                      BPF_TRAMP_F,
                      bpf_tramp_ftrace_ops_func,
                      bpf_trampoline_put_fops,
                      bpf_trampoline_update,
                      register_fentry,
)

BASE = Policy(
    name=__name__, kernel="bpf-next + v2 series", description="the seed",
    ftrace_ops_cmd=ftrace_ops_cmd, MULTI_FLAGS=int(MULTI_FLAGS), has_share_ipmodify_flag=True,
    register_ftrace_function=register_ftrace_function,
    unregister_ftrace_function=shared.unregister_ftrace_function,
    ftrace_hash_update_ipmodify=__ftrace_hash_update_ipmodify,
    prepare_direct_functions_for_ipmodify=prepare_direct_functions_for_ipmodify,
    cleanup_direct_functions_after_ipmodify=absent("cleanup_direct_functions_after_ipmodify"),
    register_ftrace_function_nolock=absent("register_ftrace_function_nolock"),
    register_direct=register_ftrace_direct_multi,
    unregister_direct=shared.unregister_ftrace_direct_multi,
    modify_direct=shared.modify_ftrace_direct_multi,
    modify_direct_nolock=shared.modify_ftrace_direct_multi_nolock,
    call_direct_funcs=shared.call_direct_funcs,
    ftrace_hash_move_and_update_ops=ftrace_hash_move_and_update_ops,
    modify_direct_body=__modify_ftrace_direct_multi,
    BPF_TRAMP_F=BPF_TRAMP_F,
    bpf_trampoline_lookup_fops=shared.bpf_trampoline_lookup_fops,
    bpf_trampoline_put_fops=bpf_trampoline_put_fops,
    register_fentry=register_fentry,
    modify_fentry=shared.modify_fentry,
    unregister_fentry=shared.unregister_fentry,
    bpf_trampoline_update=bpf_trampoline_update,
    bpf_tramp_ftrace_ops_func=bpf_tramp_ftrace_ops_func,
)

OVERLAYS: Mapping[str, Overlay] = {}
