"""Refusals that change state: which kernel paths fail and still leave a change in place.

A kernel call that fails should leave the state as it found it, and the model checks that after
every refused action (the explorer's ``refusal_unchanged``). A few kernel paths do not, as
written: each was read in the kernel's source, and where the oracle can see it, checked on the
real kernel. Such a path says so with a ``KEPT`` event on the kernel (:func:`kept`), naming its
kernel function; :data:`KEPT_PATHS` says which parts of the state (:func:`state_parts`) that
path may leave changed. A change of any other part, or one no ``KEPT`` event explains, is still
a violation -- including the kernel's own bugs, such as the direct_functions entries 6.12.58's
register_ftrace_direct leaves behind (d05cb470663a without 56b3c85e153b), which make the next
registration fail.

The paths, all policies unless said:

* ``ftrace_regex_release``: a write to set_ftrace_filter / set_ftrace_notrace whose token
  selects nothing fails with -EINVAL, and the close still installs the tokens before it (the
  hash was truncated at open): the filter changes, and the records of a running tracer with it.
* ``__arm_kprobe_ftrace``: a kprobe whose registration of kprobe_ftrace_ops /
  kprobe_ipmodify_ops is refused leaves that static ops initialised, with an allocated but empty
  filter hash and, on x86, its allocated trampoline (static ops' trampolines are never freed).
* ``prepare_direct_functions_for_ipmodify`` (6.0+): an IPMODIFY registration refused after the
  DIRECT ops on its functions were asked to share (ENABLE_SHARE_IPMODIFY_PEER) does not ask
  them to stop: the BPF trampolines stay rebuilt for sharing (flags, image, direct_functions).
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from .kernel import Kernel

#: The event kind of a path that fails and keeps a change.
KEPT = "KEPT"

#: The parts of :meth:`Kernel.key`, in its order.
KEY_PARTS = ("policy", "arch", "records", "ftrace_ops_list", "direct_functions", "locks", "ftrace_enabled",
             "ftrace_disabled", "ftrace_start_up", "ftrace_trace_function", "trampolines")

#: Kernel function of a KEPT event -> the parts of the state it may leave changed.
KEPT_PATHS: dict[str, frozenset[str]] = {
    "ftrace_regex_release": frozenset({"records", "ftrace_ops_list", "trampolines", "ftrace_trace_function",
                                       "subsys:tracer"}),
    "__arm_kprobe_ftrace": frozenset({"trampolines", "subsys:kprobes"}),
    "prepare_direct_functions_for_ipmodify": frozenset({"ftrace_ops_list", "direct_functions", "trampolines",
                                                        "subsys:bpf", "subsys:direct_client"}),
}


def kept(k: Kernel, where: str, text: str) -> None:
    """Record that the failing kernel path ``where`` (a key of :data:`KEPT_PATHS`) keeps a change."""
    if where not in KEPT_PATHS:
        raise ModelError(f"{where} is not a kernel path known to keep changes after a failure")
    k.log(KEPT, where, text)


def state_parts(k: Kernel) -> dict[str, Any]:
    """The state as :meth:`Kernel.full_key` sees it, by part: each field of the kernel's key, and
    ``subsys:NAME`` for each client subsystem that is not idle."""
    key = k.key()
    if len(key) != len(KEY_PARTS):  # pragma: no cover - Kernel.key gained a field: name it above
        raise ModelError(f"Kernel.key has {len(key)} parts, refusals.KEY_PARTS names {len(KEY_PARTS)}")
    parts = dict(zip(KEY_PARTS, key, strict=True))
    parts.update((f"subsys:{name}", sub) for name, sub in k.full_key()[1])
    return parts


def unexplained_changes(before: dict[str, Any], k: Kernel, first_event: int = 0) -> list[str]:
    """The parts of ``k``'s state that differ from ``before`` (:func:`state_parts` of the state
    before a refused call) and that no KEPT event since ``k.events[first_event]`` explains."""
    after = state_parts(k)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    allowed: set[str] = set()
    for e in k.events[first_event:]:
        if e.kind == KEPT:
            allowed |= KEPT_PATHS[e.where]
    return [p for p in changed if p not in allowed]
