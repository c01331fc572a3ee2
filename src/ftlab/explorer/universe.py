"""Universes: a few functions and clients whose actions the explorer tries in every order.

A universe file (YAML or JSON) names the kernel (policy, arch), the functions, and the clients;
each client contributes its actions (a live patch: enable/disable; a BPF program:
attach/detach; a kprobe: add/remove; the tracer: function (``kind: function_graph``: that
tracer)/nop; the plain direct client: register/modify/unregister). Actions are scenario steps
(:mod:`ftlab.scenario.schema`) applied
by the scenario runner, so a counterexample is a scenario file that ``ftlab run`` replays.

Example::

    description: one live patch and one fexit program on one function
    policy: linux-6.1
    functions: [cmdline_proc_show]
    clients:
      - livepatch: p1
        funcs: [cmdline_proc_show]
      - bpf: fx
        kind: fexit
        target: cmdline_proc_show
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError

from .. import catalogues
from ..actions import UNIVERSE_CLIENTS, CallStep, FuncRef, RunContext, Strict, UniverseClient
from ..errors import InputError, KernelOops, ModelError
from ..model.catalogue import Catalogue
from ..model.copying import clone
from ..model.errno import errno_name
from ..model.invariants import INVARIANTS, Caller
from ..model.kernel import Kernel
from ..model.naming import Rename
from ..model.policies import get_policy
from ..model.refusals import state_parts, unexplained_changes
from ..scenario.schema import DEFAULT_POLICY, ArchName, PolicyName
from .checker import Property


def _client_tag(v: Any) -> str | None:
    if isinstance(v, BaseModel):
        return next((key for key in UNIVERSE_CLIENTS if key in type(v).model_fields), None)
    if not isinstance(v, dict):
        return None
    keys = [key for key in v if key in UNIVERSE_CLIENTS]
    return keys[0] if len(keys) == 1 else None


ClientSpec = Annotated[
    Union[tuple(Annotated[c.schema, Tag(key)] for key, c in UNIVERSE_CLIENTS.items())],  # type: ignore[valid-type]  # noqa: UP007
    Discriminator(_client_tag, custom_error_type="client_kind",
                  custom_error_message="a client needs exactly one kind key: " + ", ".join(UNIVERSE_CLIENTS)),
]


class ConcurrentGroup(Strict):
    """Actions to run concurrently (``together``), after a sequential prefix (``after``).

    Actions are named ``<verb> <client>``: ``enable p1``, ``attach fx``, ``add kp``, ...
    """

    after: list[str] = Field(default_factory=list)
    together: list[str] = Field(min_length=2, max_length=3)


class UniverseSpec(Strict):
    """A universe file."""

    description: str = ""
    policy: PolicyName = DEFAULT_POLICY
    arch: ArchName = "x86_64"
    catalogue: Literal["synthetic", "embedded"] = Field(
        "synthetic", description="synthetic: a catalogue of just `functions`; embedded: Debian 6.1's")
    functions: list[str] = Field(min_length=1)
    clients: list[ClientSpec] = Field(min_length=1)
    calls: bool = Field(False, description="also explore `call FUNC` actions, one per function, always "
                        "enabled: a call leaves the state as it was unless it WARNs or kills ftrace, and "
                        "then the search goes on from the changed state")
    concurrent: list[ConcurrentGroup] = Field(default_factory=list)


def client_kind(c: BaseModel) -> UniverseClient:
    """The registry's universe-client kind of ``c``."""
    tag = _client_tag(c)
    assert tag is not None
    return UNIVERSE_CLIENTS[tag]


def client_name(c: BaseModel) -> str:
    """A universe client's name."""
    return client_kind(c).name(c)


@dataclass(frozen=True)
class Action:
    """One client action: a label (``enable p1``) and the scenario step that performs it."""

    client: str
    verb: str
    step: Any  # a scenario Step model

    def __str__(self) -> str:
        return f"{self.verb} {self.client}"


class World:
    """A state of the explored system: the kernel (with its client subsystems) and which clients are on."""

    __slots__ = ("run", "on", "ended", "_caller")

    def __init__(self, run: RunContext, on: frozenset[str], ended: str | None = None) -> None:
        self.run = run
        self.on = on
        #: "Oops" when an action oopsed the kernel, "ModelError" when the model refused to go on:
        #: the world ends there, as a scenario run does (an oopsed task died holding its locks;
        #: what the machine does next is not modelled)
        self.ended = ended
        self._caller: Caller | None = None

    @property
    def k(self) -> Kernel:
        return self.run.k

    def caller(self) -> Caller:
        """The calls simulated for this state's invariants, each once (a world is not changed
        once built: actions apply to copies)."""
        if self._caller is None:
            self._caller = Caller(self.run.k)
        return self._caller

    def __deepcopy__(self, memo: dict) -> World:
        return World(clone(self.run, memo), self.on, self.ended)


class FtraceModel:
    """The explorer's model of a universe under one policy (and optional mutations)."""

    def __init__(self, spec: UniverseSpec, policy: str | None = None, mutations: frozenset[str] = frozenset()) -> None:
        self.spec = spec
        self.policy = policy or spec.policy
        self.mutations = frozenset(mutations)
        if spec.catalogue == "embedded":
            self.cat = catalogues.embedded(self.policy)
            for f in spec.functions:
                if not self.cat.indices(f):
                    raise InputError(f"unknown function {f!r} (not in catalogue {self.cat.source})", "functions")
        else:
            self.cat = Catalogue.synthetic(spec.functions)
        names = [client_name(c) for c in spec.clients]
        if len(set(names)) != len(names):
            raise InputError("client names must be unique", "clients")
        self.actions_of: dict[str, list[Action]] = {c: [] for c in names}
        self.on_verbs: dict[str, tuple[str, ...]] = {}
        self._build_actions()
        #: ``call FUNC`` actions (``calls: true``): enabled in every state, they toggle no client.
        self.call_actions: list[Action] = (
            [Action(f, "call", CallStep(call=f)) for f in self._function_names()] if spec.calls else [])

    def _function_names(self) -> list[str]:
        """The universe's functions as steps name them (``module:name`` for ``name [module]``)."""
        if self.spec.catalogue == "embedded":
            return list(self.spec.functions)
        return [self.cat.qualified_name_of_ip(self.cat.ip(j)) for j in range(len(self.spec.functions))]

    def _ref(self, name: str) -> FuncRef:
        if name not in self.spec.functions and not self.cat.indices(name):
            raise InputError(f"function {name!r} is not in the universe's functions", "clients")
        return FuncRef(name=name)

    def _build_actions(self) -> None:
        for c in self.spec.clients:
            n = client_name(c)
            self.actions_of[n] = [Action(n, verb, step) for verb, step in client_kind(c).actions(c, self._ref)]

    def action(self, label: str) -> Action:
        """The action called ``label`` (``<verb> <client>`` or ``call <function>``); InputError if there is none."""
        every = [a for acts in self.actions_of.values() for a in acts] + self.call_actions
        for a in every:
            if str(a) == label:
                return a
        known = ", ".join(str(a) for a in every)
        raise InputError(f"no action {label!r} in this universe (actions: {known})", "concurrent")

    def apply(self, w: World, a: Action) -> tuple[World, str]:
        """Apply ``a`` to a copy of ``w``: the new world and the kernel's answer."""
        out = self.next_state(w, a)
        assert out is not None
        return out[0], out[1]["result"]

    def symmetry(self) -> Callable[[World], Hashable] | None:
        """A representative key of each state under renamings of interchangeable clients (same
        spec but the name), or None when no two clients are interchangeable.

        Sound because names are the only thing that tells such clients apart: every state
        reached with one assignment of names is reached with the swapped one, with the same
        outcomes. The key of a state under each renaming is computed on the state itself (each
        part of the model spells the client names it holds through the renaming:
        :mod:`ftlab.model.naming`); the representative is the one whose printed form sorts
        first, a fixed choice within each orbit.
        """
        import itertools

        groups: dict[str, list[str]] = {}
        for c in self.spec.clients:
            d = c.model_dump()
            name = client_name(c)
            sig = repr(sorted((k, v) for k, v in d.items() if v != name))
            groups.setdefault(type(c).__name__ + sig, []).append(name)
        groups_l = [g for g in groups.values() if len(g) > 1]
        if not groups_l:
            return None
        per_group = [[dict(zip(g, p)) for p in itertools.permutations(g)] for g in groups_l]
        renamings = []
        for combo in itertools.product(*per_group):
            m: dict[str, str] = {}
            for part in combo:
                m.update(part)
            if any(a != b for a, b in m.items()):
                renamings.append(lambda name, m=m: m.get(name, name))

        def canon(w: World) -> Hashable:
            return min([self.key(w)] + [self.key(w, nm) for nm in renamings], key=repr)

        return canon

    # -- the Model protocol ------------------------------------------------------------------
    def new_kernel(self) -> Kernel:
        return Kernel(self.cat, policy=get_policy(self.policy, self.mutations), arch=self.spec.arch)

    def init_states(self) -> list[World]:
        return [World(RunContext(self.new_kernel()), frozenset())]

    def actions(self, w: World) -> list[Action]:
        if w.ended:
            return []
        out = []
        for client, acts in self.actions_of.items():
            on = client in w.on
            for a in acts:
                first = a is acts[0]
                if first and not on or not first and on:
                    out.append(a)
        out.extend(self.call_actions)
        return out

    def next_state(self, w: World, a: Action) -> tuple[World, dict[str, Any]] | None:
        nw = copy.deepcopy(w)
        try:
            ret, _, _ = nw.run.apply(a.step)
            result = errno_name(ret)
        except KernelOops:
            result = nw.ended = "Oops"
        except ModelError as e:
            result = nw.ended = "ModelError"
            return nw, {"result": result, "error": str(e)}
        if result == "ok" and a.verb != "call":
            first = a is self.actions_of[a.client][0]
            if first:
                nw.on = w.on | {a.client}
            elif a.verb not in ("modify",):
                nw.on = w.on - {a.client}
        return nw, {"result": result}

    def key(self, w: World, nm: Rename | None = None) -> Hashable:
        """The world's canonical key (``nm``: a renaming of its clients' names)."""
        on = w.on if nm is None else frozenset(nm(c) for c in w.on)
        return (w.k.full_key(nm), tuple(sorted(on)), len(w.k.warnings), w.k.ftrace_disabled, w.ended)

    def properties(self) -> list[Property]:
        props = [Property(inv.name, inv.doc, (lambda w, inv=inv: inv(w.k, w.caller()))) for inv in INVARIANTS]

        def refusal_unchanged(before: World, action: Action, after: World, info: dict) -> list[str]:
            if info["result"] in ("ok", "Oops", "ModelError"):
                return []
            if before.k.full_key() == after.k.full_key():
                return []
            # what a kernel path that keeps changes on failure says it keeps is the kernel's behaviour
            changed = unexplained_changes(state_parts(before.k), after.k, len(before.k.events))
            if changed:
                return [f"{action} was refused ({info['result']}) but changed the kernel state "
                        f"({', '.join(changed)})"]
            return []

        def no_oops(before: World, action: Action, after: World, info: dict) -> list[str]:
            return [f"{action} oopsed the kernel"] if info["result"] == "Oops" else []

        def no_model_error(before: World, action: Action, after: World, info: dict) -> list[str]:
            return [f"{action}: {info['error']}"] if info["result"] == "ModelError" else []

        props.append(Property("refusal_unchanged", "a refused action leaves the state exactly as it was, but for "
                              "what a kernel path that keeps changes on failure keeps (ftlab.model.refusals)",
                              refusal_unchanged, kind="transition"))
        props.append(Property("no_oops", "no action oopses the kernel", no_oops, kind="transition"))
        props.append(Property("no_model_error", "the model can follow every action (no lock misuse or "
                              "impossible call)", no_model_error, kind="transition"))
        return props


def load_universe_text(text: str, source: str) -> UniverseSpec:
    """Validate a universe (YAML/JSON text); errors are one-line ``FILE:LINE: what``."""
    from ..scenario.loader import parse_document, validation_error  # shared YAML plumbing

    data, lines = parse_document(text, source, "universe")
    if not isinstance(data, dict):
        raise InputError("a universe is a mapping with 'functions' and 'clients'", f"{source}:{lines[()]}")
    try:
        return UniverseSpec.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, data, lines, source) from None


def load_universe(path: str) -> UniverseSpec:
    import os
    if os.path.isdir(path):
        raise InputError("is a directory, not a universe file", path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read universe: {e}", path) from None
    return load_universe_text(text, path)
