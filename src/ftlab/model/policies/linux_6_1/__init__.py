"""Linux 6.1 (Debian 12's 6.1.192): the merged design, with the direct API of 6.0 .. 6.3.

``BASE`` is 6.1 as its own code stands without the stable backports the registry names as
changes; the registry's ``linux-6.1`` is ``BASE`` plus 3e9a18e1c3e9 (``OVERLAYS``), which is
what Debian ships since 6.1.162-1, and ``linux-6.1.159`` is ``BASE`` alone. What differs from
the seed and from later kernels: :mod:`.ftrace` (the ``_multi`` direct API, MULTI_FLAGS
assigned), :mod:`.trampoline` (tr->flags, the unconditional -EAGAIN retry and its fops reset,
no selector), :mod:`.backports`. The IPMODIFY rules are the merged design's (:mod:`..merged`).
"""

from __future__ import annotations

from ...ftrace import ftrace_hash_move_and_update_ops
from .. import Overlay, Policy, merged, shared
from ..merged import (  # noqa: F401 (re-exported)
                      __ftrace_hash_update_ipmodify,
                      bpf_tramp_ftrace_ops_func,
                      cleanup_direct_functions_after_ipmodify,
                      ftrace_ops_cmd,
                      msleep,
                      prepare_direct_functions_for_ipmodify,
                      register_ftrace_function,
                      unregister_ftrace_function,
)
from ..registry import FIX_MODIFY_SELF
from ..shared import bpf_trampoline_lookup_fops, modify_fentry, register_ftrace_function_nolock, unregister_fentry  # noqa: F401
from . import backports
from .ftrace import MULTI_FLAGS, __modify_ftrace_direct_multi, register_ftrace_direct_multi
from .trampoline import (  # noqa: F401
                      AGAIN_LIMIT,
                      BPF_TRAMP_F,
                      bpf_tramp_image_alloc,
                      bpf_trampoline_update,
                      register_fentry,
)

BASE = Policy(
    name=__name__, kernel="Linux 6.1", description="the 6.1 base",
    ftrace_ops_cmd=ftrace_ops_cmd, MULTI_FLAGS=int(MULTI_FLAGS), has_share_ipmodify_flag=False,
    register_ftrace_function=merged.register_ftrace_function,
    unregister_ftrace_function=merged.unregister_ftrace_function,
    ftrace_hash_update_ipmodify=merged.__ftrace_hash_update_ipmodify,
    prepare_direct_functions_for_ipmodify=merged.prepare_direct_functions_for_ipmodify,
    cleanup_direct_functions_after_ipmodify=merged.cleanup_direct_functions_after_ipmodify,
    register_ftrace_function_nolock=shared.register_ftrace_function_nolock,
    register_direct=register_ftrace_direct_multi,
    unregister_direct=shared.unregister_ftrace_direct_multi,
    modify_direct=shared.modify_ftrace_direct_multi,
    modify_direct_nolock=shared.modify_ftrace_direct_multi_nolock,
    call_direct_funcs=shared.call_direct_funcs,
    ftrace_hash_move_and_update_ops=ftrace_hash_move_and_update_ops,
    modify_direct_body=__modify_ftrace_direct_multi,
    BPF_TRAMP_F=BPF_TRAMP_F,
    bpf_trampoline_lookup_fops=shared.bpf_trampoline_lookup_fops,
    bpf_trampoline_put_fops=merged.bpf_trampoline_put_fops,
    register_fentry=register_fentry,
    modify_fentry=shared.modify_fentry,
    unregister_fentry=shared.unregister_fentry,
    bpf_trampoline_update=bpf_trampoline_update,
    bpf_tramp_ftrace_ops_func=merged.bpf_tramp_ftrace_ops_func,
)

#: The registry's changes, as this base takes them.
OVERLAYS = {
    FIX_MODIFY_SELF.id: Overlay.functions(FIX_MODIFY_SELF.id,
                                          modify_direct_body=backports.__modify_ftrace_direct_multi),
}
