"""The building blocks of the action seam: step schemas, the step-kind record, the run context.

A *step* is one client action or observation, as a scenario file writes it (a pydantic model
with exactly one action key, e.g. ``bpf: attach``). A :class:`StepKind` says everything about
one kind of step: its schema, how it reads in words, the functions it names, its name checks,
its command-line form (preflight's actions), its universe client (the explorer), and how it
applies to a kernel. The registry (:mod:`ftlab.actions.registry`) lists the kinds; every shell
applies, describes and checks steps through it, so an action means the same thing everywhere.

A :class:`RunContext` is a kernel plus the names a run gave to what it attached (BPF programs
by name): what the scenario runner, the explorer's worlds and preflight's replay apply steps
with.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from ..errors import InputError
from ..model.catalogue import Catalogue
from ..model.clients import bpf
from ..model.copying import fast_deepcopy
from ..model.errno import parse_errno
from ..model.kernel import Kernel


class Strict(BaseModel):
    """A frozen model that refuses unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FuncRef(Strict):
    """A function, with ``sympos`` (1-based) to pick one of several of the same name."""

    name: str = Field(min_length=1)
    sympos: int = Field(0, ge=0)


def func_ref(v: Any) -> Any:
    """A plain name as a :class:`FuncRef` document (before validation)."""
    return {"name": v} if isinstance(v, str) else v


FuncArg = Annotated[FuncRef, Field(description="a function name, or {name, sympos}")]


class Expect(Strict):
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


class StepBase(Strict):
    """What every step has besides its action: an optional ``expect``."""

    expect: Expect | None = None


class Outcome(NamedTuple):
    """What applying a step gave: the kernel's answer (0 / -errno, or a text result for a
    concurrent step), a call's trace, a view's text."""

    ret: int | str
    trace: dict[str, Any] | None = None
    view: str | None = None


@dataclass
class NameState:
    """What the steps before the one being checked attached, by the names steps use."""

    progs: set[str] = field(default_factory=set)
    probes: set[str] = field(default_factory=set)


@dataclass
class Words:
    """A command-line action being read (preflight's proposed actions): its tokens after the
    verb, where errors point, and counters for fresh names (``preflight_p1``, ...)."""

    verb: str
    rest: list[str]
    where: str
    counters: dict[str, int]

    def fail(self, what: str) -> InputError:
        return InputError(what, self.where)

    def opts(self, tokens: list[str], spec: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
        """Split ``tokens`` into positionals and options. spec: option -> 'flag' | 'one' | 'many'."""
        pos: list[str] = []
        opts: dict[str, Any] = {}
        i = 0
        while i < len(tokens):
            t = tokens[i]
            if t.startswith("--"):
                kind = spec.get(t)
                if kind is None:
                    raise self.fail(f"unknown option {t} (expected {', '.join(spec) or 'none'})")
                if kind == "flag":
                    opts[t] = True
                    i += 1
                    continue
                vals = []
                i += 1
                while i < len(tokens) and not tokens[i].startswith("--"):
                    vals.append(tokens[i])
                    i += 1
                    if kind == "one":
                        break
                if not vals:
                    raise self.fail(f"{t} needs a value")
                opts.setdefault(t, []).extend(vals)
            else:
                pos.append(t)
                i += 1
        return pos, opts

    def one(self, pos: list[str], what: str) -> str:
        if len(pos) != 1:
            raise self.fail(f"{self.verb} {what}: expected exactly one name, got {len(pos)}: {' '.join(pos) or '-'}")
        return pos[0]

    def fresh(self, prefix: str) -> str:
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{self.counters[prefix]}"

    def ref(self, text: str) -> dict[str, Any]:
        name, _, pos = text.partition(",")
        if not name or (pos and not pos.isdigit()):
            raise self.fail(f"bad function {text!r} (NAME, MODULE:NAME, or either with ,SYMPOS)")
        return {"name": name, "sympos": int(pos) if pos else 0}

    @staticmethod
    def split(text: str, where: str) -> list[str]:
        try:
            tok = shlex.split(text)
        except ValueError as e:
            raise InputError(f"{e}", where) from None
        if not tok:
            raise InputError("empty action", where)
        return tok


@dataclass(frozen=True)
class UniverseClient:
    """A client of an explorer universe: its schema (``livepatch: p1`` and its fields), its
    name, and the actions it contributes as ``(verb, step)``, the first one switching it on."""

    key: str
    schema: type[BaseModel]
    actions: Callable[[Any, Callable[[str], FuncRef]], list[tuple[str, Any]]]

    def name(self, client: Any) -> str:
        """The client's name: the value of its key (the tracer's is always ``tracer``)."""
        v = getattr(client, self.key)
        return v if self.key != "tracer" else "tracer"


def _no_functions(step: Any) -> list[FuncRef]:
    return []


@dataclass(frozen=True)
class StepKind:
    """One kind of step (see the module docstring)."""

    key: str                                              # the action key in a scenario step
    schema: type[StepBase]
    apply: Callable[[RunContext, Any], Outcome]
    describe: Callable[[Any], str]
    #: the functions the step names (checked against the catalogue before anything runs)
    functions: Callable[[Any], list[FuncRef]] = _no_functions
    #: a plain name is the vmlinux object's function (a live patch's klp_object), not kallsyms'
    object_names: bool = False
    #: a rule on the steps before it (``bpf detach`` needs an earlier attach): the problem, or None
    check: Callable[[Any, NameState], str | None] | None = None
    #: a client action (may be a task of a concurrent step, or a universe's action)
    client: bool = False
    #: its command-line form (preflight), and how to read one
    syntax: str | None = None
    parse: Callable[[Words], Any] | None = None
    #: the names whose records matter after the step, beyond its functions (a tracer's filter)
    reports: Callable[[Any], list[str]] | None = None
    universe: UniverseClient | None = None


def step_union(kinds: Sequence[StepKind], message: str) -> Any:
    """The discriminated union of ``kinds``' schemas, tagged by their action keys."""
    keys = [k.key for k in kinds]

    def tag(v: Any) -> str | None:
        if isinstance(v, BaseModel):
            return next((key for key in keys if key in type(v).model_fields), None)
        if not isinstance(v, dict):
            return None
        found = [key for key in v if key in keys]
        return found[0] if len(found) == 1 else None

    members = tuple(Annotated[k.schema, Tag(k.key)] for k in kinds)
    union = Union[members]  # type: ignore[valid-type]  # noqa: UP007 (a union built at run time)
    return Annotated[union, Discriminator(tag, custom_error_type="step_action", custom_error_message=message)]


class RunContext:
    """A kernel and the scenario's names for what it attached (BPF programs by name)."""

    __deepcopy__ = fast_deepcopy

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.progs: dict[str, bpf.BpfProgram] = {}

    def apply(self, step: Any) -> Outcome:
        """Apply ``step`` to the kernel: the kernel's answer, a call's trace, a view's text."""
        from .registry import kind_of
        return kind_of(step).apply(self, step)


def ref_indices(cat: Catalogue, ref: FuncRef, object_names: bool = False) -> tuple[int, ...]:
    """The records a step's function reference may name (its ``sympos`` counts in them): for a
    live patch (``object_names``) a plain name is its vmlinux object's; other clients look names
    up as kallsyms does (vmlinux first, then modules); ``module:name`` is that module's."""
    if object_names and ":" not in ref.name:
        return cat.object_indices(ref.name, None)
    return cat.scope_indices(ref.name)
