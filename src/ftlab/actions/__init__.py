"""The action seam: how every shell applies, describes and checks client actions.

Public names:

* the step schemas (:class:`LivepatchStep`, :class:`BpfStep`, ...) and their parts
  (:class:`FuncRef`, :class:`Expect`), and :data:`Step`, the union a scenario holds;
* :data:`KINDS`, the registry of step kinds (:class:`StepKind`), and :data:`UNIVERSE_CLIENTS`;
* :class:`RunContext` (a kernel and the names a run gave to what it attached) and its
  :meth:`~RunContext.apply`, which returns an :class:`Outcome`;
* :func:`describe`, :func:`step_functions`, :func:`reported_names`, :func:`check_names`,
  :func:`check_functions`, :func:`parse_action` (:data:`ACTION_SYNTAX`), :func:`step_document`.

The scenario runner, the explorer's universes, preflight, the oracle's plan and the
counterexample writer go through these and nothing else, so an action means the same thing
everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..model.catalogue import Catalogue
from .base import (
    Expect,
    FuncArg,
    FuncRef,
    NameState,
    Outcome,
    RunContext,
    StepBase,
    StepKind,
    Strict,
    UniverseClient,
    func_ref,
    ref_indices,
)
from .bpf import BpfClient, BpfStep
from .direct import DirectClient, DirectStep
from .kprobe import KprobeClient, KprobeStep
from .livepatch import LivepatchClient, LivepatchStep, TransitionStep
from .observe import (
    VIEWS,
    CallStep,
    ShowStep,
    body_label,
    bpf_trampolines_view,
    count_record_changes,
    record_changes,
    show_view,
    trace_dict,
)
from .ops import OpsClient, OpsStep
from .registry import (
    ACTION_SYNTAX,
    CLIENT_KINDS,
    KINDS,
    UNIVERSE_CLIENTS,
    ClientStep,
    ConcurrentStep,
    Step,
    describe,
    kind_of,
    parse_action,
    reported_names,
    step_document,
    step_functions,
)
from .tracer import TracerClient, TracerStep


def check_functions(step: Any, cat: Catalogue, where: str, catalogue_label: str | None = None) -> None:
    """Every function ``step`` names is in ``cat``, with a valid sympos (InputError at ``where``)."""
    kinds = step.concurrent if isinstance(step, ConcurrentStep) else [step]
    for sub in kinds:
        kind = kind_of(sub)
        for ref in kind.functions(sub):
            idx = ref_indices(cat, ref, object_names=kind.object_names)
            if not idx:
                raise InputError(cat.unknown_function(ref.name, catalogue_label), where)
            if ref.sympos > len(idx):
                raise InputError(f"function {ref.name!r} has {len(idx)} occurrence(s); "
                                 f"sympos {ref.sympos} is out of range", where)


def check_names(steps: Sequence[Any], cat: Catalogue, where_of: Any) -> None:
    """Before anything runs: each step's own rules (a detach needs an earlier attach, an enable
    needs functions, ...) and its functions against ``cat``. ``where_of(i)`` names step ``i``'s
    place; errors read ``steps[i]: ...`` there."""
    seen = NameState()
    for i, step in enumerate(steps):
        where = where_of(i)
        for sub in (step.concurrent if isinstance(step, ConcurrentStep) else [step]):
            kind = kind_of(sub)
            if kind.check is not None:
                problem = kind.check(sub, seen)
                if problem:
                    raise InputError(f"steps[{i}]: {problem}", where)
            check_functions(sub, cat, where)


__all__ = [
    "ACTION_SYNTAX", "BpfClient", "BpfStep", "CLIENT_KINDS", "CallStep", "ClientStep", "ConcurrentStep",
    "DirectClient", "DirectStep", "Expect", "FuncArg", "FuncRef", "KINDS", "KprobeClient", "KprobeStep",
    "LivepatchClient", "LivepatchStep", "NameState", "OpsClient", "OpsStep", "Outcome", "RunContext", "ShowStep",
    "Step", "StepBase", "StepKind", "Strict", "TracerClient", "TracerStep", "TransitionStep", "UNIVERSE_CLIENTS",
    "UniverseClient", "VIEWS", "body_label", "bpf_trampolines_view", "check_functions", "check_names", "describe",
    "count_record_changes",
    "func_ref", "kind_of", "parse_action", "record_changes", "ref_indices", "reported_names", "show_view",
    "step_document", "step_functions",
    "trace_dict",
]
