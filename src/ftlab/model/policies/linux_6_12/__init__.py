"""Linux 6.12 (Debian bookworm-backports' 6.12.95): the merged design with the direct API of 6.4.

``BASE`` is 6.12 as its own code stands without the changes the registry names; the registry's
``linux-6.12`` is ``BASE`` plus d05cb470663a, 56b3c85e153b, 3e9a18e1c3e9, fea3f5e83c5c and
e113f0b46d19 (``OVERLAYS``: :mod:`.changes`), as Debian ships it from 6.12.78 on, and
``linux-6.12.58`` is ``BASE`` plus d05cb470663a, a 6.12 build before the live patch + fexit fix.
What differs from 6.1: :mod:`.ftrace` (the direct API without ``_multi``, ops->direct_call),
:mod:`.trampoline` (image sizes, the retry that frees the image, no module references), and
kprobes going inert once ftrace is killed (1a7d0890dd4a, v6.10), and the table's data for the
records: the dyn_ftrace flags CALL_OPS (v6.3; never set on x86_64), TOUCHED and MODIFIED (v6.4),
with FTRACE_REF_MAX_SHIFT 19, the %pS sizes of its kernel, and function_graph's users as subops of
one manager graph_ops (v6.11: :data:`FGRAPH_ARRAY_SIZE`, :func:`.ftrace.ftrace_hash_move_and_update_ops`).
The IPMODIFY rules are the merged design's (:mod:`..merged`), the
same code as 6.1's.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

from .. import Overlay, Policy, merged, shared
from ..merged import ftrace_ops_cmd
from ..registry import (
    DIRECT_HASH_COPY,
    FIX_FEXIT_LIVEPATCH,
    FIX_MODIFY_SELF,
    KPROBE_DISARM_KILLED,
    REGISTER_FENTRY_ERRORS,
)
from . import changes
from .ftrace import (  # noqa: F401 (re-exported)
    MULTI_FLAGS,
    __modify_ftrace_direct,
    call_direct_funcs,
    ftrace_hash_move_and_update_ops,
    register_ftrace_direct,
    unregister_direct,
    unregister_ftrace_direct,
)
from .trampoline import (  # noqa: F401 (re-exported)
    BPF_TRAMP_F,
    arch_bpf_trampoline_size,
    bpf_tramp_image_alloc,
    bpf_trampoline_update,
    register_fentry,
    unregister_fentry,
)

#: %pS sizes of Debian's 6.12.95+deb12-amd64, measured in the oracle's guest (kallsyms' distance to
#: the next symbol, and every record printed: tests/data/oracle-6.12/FACTS.md, section 2);
#: ftrace_stub is what touched_functions' count-0 records name while no ops is registered.
SYMBOL_SIZES: Mapping[str, int] = types.MappingProxyType({
    "ftrace_caller": 0x74,
    "ftrace_regs_caller": 0x65,
    "call_direct_funcs": 0x20,
    "arch_ftrace_ops_list_func": 0x1D0,
    "klp_ftrace_handler": 0x100,
    "kprobe_ftrace_handler": 0x1D0,
    "function_trace_call": 0x110,
    "ftrace_graph_func": 0x20,
    "ftrace_stub": 0x20,
})

#: FGRAPH_ARRAY_SIZE (kernel/trace/fgraph.c, 6.11+: FGRAPH_INDEX_BITS): at most 16 fgraph users.
FGRAPH_ARRAY_SIZE = 16

BASE = Policy(
    name=__name__, kernel="Linux 6.12", description="the 6.12 base",
    ftrace_ops_cmd=ftrace_ops_cmd, MULTI_FLAGS=int(MULTI_FLAGS), has_share_ipmodify_flag=False,
    register_ftrace_function=merged.register_ftrace_function,
    unregister_ftrace_function=merged.unregister_ftrace_function,
    ftrace_hash_update_ipmodify=merged.__ftrace_hash_update_ipmodify,
    prepare_direct_functions_for_ipmodify=merged.prepare_direct_functions_for_ipmodify,
    cleanup_direct_functions_after_ipmodify=merged.cleanup_direct_functions_after_ipmodify,
    register_ftrace_function_nolock=shared.register_ftrace_function_nolock,
    register_direct=register_ftrace_direct,
    unregister_direct=unregister_direct,
    modify_direct=shared.modify_ftrace_direct_multi,
    modify_direct_nolock=shared.modify_ftrace_direct_multi_nolock,
    modify_direct_body=__modify_ftrace_direct,
    call_direct_funcs=call_direct_funcs,
    ftrace_hash_move_and_update_ops=ftrace_hash_move_and_update_ops,
    BPF_TRAMP_F=BPF_TRAMP_F,
    bpf_trampoline_lookup_fops=shared.bpf_trampoline_lookup_fops,
    bpf_trampoline_put_fops=merged.bpf_trampoline_put_fops,
    register_fentry=register_fentry,
    modify_fentry=shared.modify_fentry,
    unregister_fentry=unregister_fentry,
    bpf_trampoline_update=bpf_trampoline_update,
    bpf_tramp_ftrace_ops_func=merged.bpf_tramp_ftrace_ops_func,
    kprobe_ftrace_kill=True,
    FTRACE_REF_MAX_SHIFT=19, rec_call_ops=True, rec_touched_modified=True,
    symbol_sizes=SYMBOL_SIZES, fgraph_array_size=FGRAPH_ARRAY_SIZE,
)

#: The registry's changes, as this base takes them.
OVERLAYS = {
    DIRECT_HASH_COPY.id: Overlay.functions(DIRECT_HASH_COPY.id, register_direct=changes.register_ftrace_direct_copy),
    FIX_FEXIT_LIVEPATCH.id: Overlay(FIX_FEXIT_LIVEPATCH.id, {
        "register_direct": lambda _base: changes.register_ftrace_direct_reset,
        "bpf_trampoline_update": changes.without_retry_reset,
    }),
    FIX_MODIFY_SELF.id: Overlay.functions(FIX_MODIFY_SELF.id, modify_direct_body=changes.__modify_ftrace_direct_self),
    REGISTER_FENTRY_ERRORS.id: Overlay.functions(REGISTER_FENTRY_ERRORS.id,
                                                 register_fentry=changes.register_fentry_checked),
    KPROBE_DISARM_KILLED.id: Overlay.functions(KPROBE_DISARM_KILLED.id, kprobe_disarm_when_killed=True),
}
