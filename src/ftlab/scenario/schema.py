"""The scenario schema, in one place (pydantic v2).

A scenario is a kernel and an ordered list of steps. Each step is a mapping with exactly one
action key, which names the client and the action, plus that action's fields and an optional
``expect``. YAML and JSON are accepted alike. Example::

    description: live patch first, then a BPF fexit program on the same function
    kernel: {policy: linux-6.1}
    steps:
      - livepatch: enable
        patch: p1
        funcs: [cmdline_proc_show]
      - bpf: attach
        prog: fx
        kind: fexit
        target: cmdline_proc_show
        expect: {result: ok}
      - call: cmdline_proc_show
        expect: {body: p1, programs: [fx]}

The JSON Schema of this format is ``Scenario.model_json_schema()`` (``ftlab schema``). The step
kinds, their schemas and what they do are the action seam's (:mod:`ftlab.actions`); this module
adds the kernel section and the file around them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..actions import (  # noqa: F401
    KINDS,
    VIEWS,
    BpfStep,
    CallStep,
    ClientStep,
    ConcurrentStep,
    DirectStep,
    Expect,
    FuncArg,
    FuncRef,
    KprobeStep,
    LivepatchStep,
    OpsStep,
    ShowStep,
    Step,
    StepBase,
    Strict,
    TracerStep,
    TransitionStep,
)
from ..model.arch import ARCHES
from ..model.policies.registry import DEFAULT_POLICY, MUTATIONS, policy_names

#: The names a scenario or universe may give (the registry's and the arch profiles').
PolicyName = Literal[tuple(policy_names(variants=True))]  # type: ignore[valid-type]
ArchName = Literal[tuple(ARCHES)]  # type: ignore[valid-type]
MutationName = Literal[tuple(MUTATIONS)]  # type: ignore[valid-type]


#: The action keys, for error messages and the fuzzers.
ACTION_KEYS = {key: key for key in KINDS}


class KernelSpec(Strict):
    """The kernel a scenario runs on."""

    policy: PolicyName = DEFAULT_POLICY
    arch: ArchName = "x86_64"
    catalogue: str | list[str] = Field("embedded", description="'embedded', 'oracle-guest' (embedded plus the oracle "
                                       "guest's virtio and 9p modules), a file path, or a list of names")
    mutations: list[MutationName] = Field(
        default_factory=list, description="deliberate deviations of the model (ftlab explore --mutation)")


class Scenario(Strict):
    """A whole scenario file."""

    description: str = ""
    kernel: KernelSpec = Field(default_factory=KernelSpec)
    check_invariants: bool = Field(False, description="check the model's invariants after every step")
    steps: list[Step] = Field(min_length=1)
