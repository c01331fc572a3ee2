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

The JSON Schema of this format is ``Scenario.model_json_schema()`` (``ftlab schema``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from ..model.arch import ARCHES
from ..model.errno import parse_errno
from ..model.policies.registry import DEFAULT_POLICY, MUTATIONS, policy_names

#: The names a scenario or universe may give (the registry's and the arch profiles').
PolicyName = Literal[tuple(policy_names(variants=True))]  # type: ignore[valid-type]
ArchName = Literal[tuple(ARCHES)]  # type: ignore[valid-type]
MutationName = Literal[tuple(MUTATIONS)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FuncRef(_Strict):
    """A function, with ``sympos`` (1-based) to pick one of several of the same name."""

    name: str = Field(min_length=1)
    sympos: int = Field(0, ge=0)


def _func_ref(v: Any) -> Any:
    return {"name": v} if isinstance(v, str) else v


FuncArg = Annotated[FuncRef, Field(description="a function name, or {name, sympos}")]


class Expect(_Strict):
    """What a step must produce; every given field is checked, the others are not."""

    result: str | None = Field(None, description="ok, or an errno name such as EBUSY")
    body: str | None = Field(None, description="for call: which body runs: 'original' or a patch name")
    programs: list[str] | None = Field(None, description="for call: BPF programs that fire, in order")
    retval: int | None = Field(None, description="for call: the function's return value as the caller sees it")
    events: list[str] | None = Field(None, description="for call: the event kinds, in order")
    text: str | None = Field(None, description="for show: the view's exact text")
    contains: list[str] | None = Field(None, description="for show: lines the view must contain")
    warnings: int | None = Field(None, description="kernel WARNs so far")
    ftrace_dead: bool | None = None

    @field_validator("result")
    @classmethod
    def _known_errno(cls, v: str | None) -> str | None:
        if v is not None:
            parse_errno(v)  # raises ValueError for an unknown name
        return v


class _StepBase(_Strict):
    expect: Expect | None = None


class LivepatchStep(_StepBase):
    """livepatch enable|disable|replace (kernel/livepatch): a patch named like its module."""

    livepatch: Literal["enable", "disable", "replace"]
    patch: str = Field(min_length=1)
    funcs: list[FuncArg] = Field(default_factory=list)

    @field_validator("funcs", mode="before", json_schema_input_type=list[str | FuncRef])
    @classmethod
    def _refs(cls, v: Any) -> Any:
        return [_func_ref(x) for x in v] if isinstance(v, list) else v


class TransitionStep(_StepBase):
    """transition complete: every task reaches the target state (klp_complete_transition)."""

    transition: Literal["complete"]


class BpfStep(_StepBase):
    """bpf attach|detach: a tracing program on a kernel function (kernel/bpf/trampoline.c)."""

    bpf: Literal["attach", "detach"]
    prog: str = Field(min_length=1)
    kind: Literal["fentry", "fexit", "fmod_ret"] | None = None
    target: FuncArg | None = None
    ret: int = Field(0, description="what an fmod_ret program returns (non-zero skips the body)")

    @field_validator("target", mode="before", json_schema_input_type=str | FuncRef | None)
    @classmethod
    def _ref(cls, v: Any) -> Any:
        return _func_ref(v)


class KprobeStep(_StepBase):
    """kprobe add|remove on a traceable function (kprobes on ftrace)."""

    kprobe: Literal["add", "remove"]
    target: FuncArg
    name: str | None = None
    post: bool = False

    @field_validator("target", mode="before", json_schema_input_type=str | FuncRef)
    @classmethod
    def _ref(cls, v: Any) -> Any:
        return _func_ref(v)


class TracerStep(_StepBase):
    """tracer function|function_graph|nop: current_tracer with set_ftrace_filter /
    set_ftrace_notrace globs (the two tracers share global_ops' filter)."""

    tracer: Literal["function", "function_graph", "nop"]
    filter: list[str] = Field(default_factory=list)
    notrace: list[str] = Field(default_factory=list)


class DirectStep(_StepBase):
    """direct register|modify|unregister: a plain direct-call client without ops_func."""

    direct: Literal["register", "modify", "unregister"]
    name: str = "direct"
    targets: list[FuncArg] = Field(default_factory=list)
    tramp: str = "my_tramp1"

    @field_validator("targets", mode="before", json_schema_input_type=str | FuncRef | list[str | FuncRef])
    @classmethod
    def _refs(cls, v: Any) -> Any:
        if isinstance(v, str | dict):
            v = [v]
        return [_func_ref(x) for x in v] if isinstance(v, list) else v


class OpsStep(_StepBase):
    """ops register|unregister: a module's own ftrace_ops on one or more functions (no ops_func).

    Like a module that hooks functions with register_ftrace_function directly; with ``ipmodify``
    its callback may change regs->ip (FTRACE_OPS_FL_IPMODIFY; the model's callback leaves it).
    """

    ops: Literal["register", "unregister"]
    name: str = Field("my_ops", min_length=1)
    funcs: list[FuncArg] = Field(default_factory=list)
    ipmodify: bool = False
    save_regs: bool = False

    @field_validator("funcs", mode="before", json_schema_input_type=list[str | FuncRef])
    @classmethod
    def _refs(cls, v: Any) -> Any:
        return [_func_ref(x) for x in v] if isinstance(v, list) else v


class CallStep(_StepBase):
    """call FUNC: what runs when the function is called."""

    call: str = Field(min_length=1)
    sympos: int = Field(0, ge=0)


VIEWS = ("enabled_functions", "livepatch", "ops", "direct_functions", "trampolines", "locks",
         "set_ftrace_filter", "set_ftrace_notrace")


class ShowStep(_StepBase):
    """show VIEW: a view's text at this point."""

    show: Literal["enabled_functions", "livepatch", "ops", "direct_functions", "trampolines", "locks",
                  "set_ftrace_filter", "set_ftrace_notrace"]


ACTION_KEYS = {
    "livepatch": "livepatch", "transition": "transition", "bpf": "bpf", "kprobe": "kprobe",
    "tracer": "tracer", "direct": "direct", "ops": "ops", "call": "call", "show": "show",
    "concurrent": "concurrent",
}


def _step_tag(v: Any) -> str | None:
    if isinstance(v, BaseModel):
        for key in ACTION_KEYS:
            if hasattr(v, key):
                return key
        return None
    if not isinstance(v, dict):
        return None
    keys = [k for k in v if k in ACTION_KEYS]
    return keys[0] if len(keys) == 1 else None


ClientStep = Annotated[
    Union[
        Annotated[LivepatchStep, Tag("livepatch")],
        Annotated[BpfStep, Tag("bpf")],
        Annotated[KprobeStep, Tag("kprobe")],
        Annotated[TracerStep, Tag("tracer")],
        Annotated[DirectStep, Tag("direct")],
        Annotated[OpsStep, Tag("ops")],
    ],
    Discriminator(_step_tag, custom_error_type="step_action",
                  custom_error_message="a concurrent step runs client actions: livepatch, bpf, kprobe, tracer, "
                                       "direct or ops"),
]


class ConcurrentStep(_StepBase):
    """concurrent: client actions run as concurrent tasks, switched at lock points per ``schedule``.

    ``schedule`` lists, for each scheduling point, the index of the chosen task among those that
    can run then (as ``ftlab explore`` prints it); past its end the running task goes on. The
    step's result is each task's answer (``label: ok``), or ``deadlock`` / ``livelock``.
    """

    concurrent: list[ClientStep] = Field(min_length=2, max_length=3)
    schedule: list[int] = Field(default_factory=list)


Step = Annotated[
    Union[
        Annotated[LivepatchStep, Tag("livepatch")],
        Annotated[TransitionStep, Tag("transition")],
        Annotated[BpfStep, Tag("bpf")],
        Annotated[KprobeStep, Tag("kprobe")],
        Annotated[TracerStep, Tag("tracer")],
        Annotated[DirectStep, Tag("direct")],
        Annotated[CallStep, Tag("call")],
        Annotated[ShowStep, Tag("show")],
        Annotated[OpsStep, Tag("ops")],
        Annotated[ConcurrentStep, Tag("concurrent")],
    ],
    Discriminator(_step_tag, custom_error_type="step_action",
                  custom_error_message="a step needs exactly one action key: " + ", ".join(ACTION_KEYS)),
]


class KernelSpec(_Strict):
    """The kernel a scenario runs on."""

    policy: PolicyName = DEFAULT_POLICY
    arch: ArchName = "x86_64"
    catalogue: str | list[str] = Field("embedded", description="'embedded', 'oracle-guest' (embedded plus the oracle "
                                       "guest's virtio and 9p modules), a file path, or a list of names")
    mutations: list[MutationName] = Field(
        default_factory=list, description="deliberate deviations of the model (ftlab explore --mutation)")


class Scenario(_Strict):
    """A whole scenario file."""

    description: str = ""
    kernel: KernelSpec = Field(default_factory=KernelSpec)
    check_invariants: bool = Field(False, description="check the model's invariants after every step")
    steps: list[Step] = Field(min_length=1)
