"""``ftlab oracle gen``: seeded random scenarios over the functions the oracle can call.

Scenario *i* of seed *s* is drawn from ``random.Random(f"ftlab-oracle-{s}-{i}")`` (string seeds
are hashed deterministically), so the same seed and count always give the same files on every
machine and Python version. Each scenario picks one or two "hot" functions, so that clients meet,
and walks a small state machine of the clients it has loaded: an action is drawn only when it
makes sense (a detach needs an attached program, a disable an enabled patch), with a small
chance of a deliberately refused one (fmod_ret outside ``security_*``). Scenarios carry no
expectations: the oracle diff is the judge.
"""

from __future__ import annotations

import random
from typing import Any

import yaml

from ..model.policies.registry import DEFAULT_POLICY
from .targets import CALLABLE

SHOW_FUNCS = [n for n, c in CALLABLE.items() if c.proto == "seq_show"]
SECURITY = [n for n in CALLABLE if n.startswith("security_")]


class _Walk:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        hot = rng.sample(SHOW_FUNCS, 2) if rng.random() < 0.3 else [rng.choice(SHOW_FUNCS)]
        if rng.random() < 0.3:
            hot.append(SECURITY[0])
        self.hot = hot
        self.patches: dict[str, list[str]] = {}
        self.npatch = 0
        self.progs: dict[str, str] = {}
        self.nprog = 0
        self.kprobes: list[str] = []
        self.directs: dict[str, list[str]] = {}
        self.ndirect = 0
        self.tracer = False
        self.steps: list[dict[str, Any]] = []

    def func(self) -> str:
        return self.rng.choice(self.hot)

    def options(self) -> list[tuple[str, float]]:
        o = [("livepatch", 2.0), ("bpf", 3.0), ("call", 3.0), ("kprobe", 1.0), ("direct", 0.8), ("tracer", 0.6)]
        if self.patches:
            o += [("disable", 1.0), ("replace", 0.5)]
        if self.progs:
            o.append(("detach", 1.5))
        if self.kprobes:
            o.append(("kprobe_remove", 0.7))
        if self.directs:
            o += [("direct_unregister", 0.6), ("direct_modify", 0.3)]
        if self.tracer:
            o.append(("tracer_nop", 0.5))
        o.append(("show", 0.2))
        return o

    def step(self) -> None:
        rng = self.rng
        names, weights = zip(*self.options())
        what = rng.choices(names, weights)[0]
        if what in ("livepatch", "replace"):
            self.npatch += 1
            name = f"p{self.npatch}"
            funcs = sorted(set(rng.sample(self.hot, rng.randint(1, len(self.hot)))))
            self.steps.append({"livepatch": "enable" if what == "livepatch" else "replace", "patch": name,
                               "funcs": funcs})
            if what == "replace":
                self.patches.clear()
            self.patches[name] = funcs
        elif what == "disable":
            name = rng.choice(sorted(self.patches))
            self.steps.append({"livepatch": "disable", "patch": name})
            del self.patches[name]
        elif what == "bpf":
            self.nprog += 1
            target = self.func()
            kinds = ["fentry", "fexit"] + (["fmod_ret"] * 2 if target in SECURITY else [])
            kind = rng.choice(kinds)
            if rng.random() < 0.05:
                kind = "fmod_ret"  # refused outside security_*: EINVAL
            name = {"fentry": "fe", "fexit": "fx", "fmod_ret": "fm"}[kind] + str(self.nprog)
            st: dict[str, Any] = {"bpf": "attach", "prog": name, "kind": kind, "target": target}
            if kind == "fmod_ret":
                st["ret"] = rng.choice([0, -1, -13])
            self.steps.append(st)
            self.progs[name] = target
        elif what == "detach":
            name = rng.choice(sorted(self.progs))
            self.steps.append({"bpf": "detach", "prog": name})
            del self.progs[name]
        elif what == "call":
            self.steps.append({"call": self.func()})
        elif what == "kprobe":
            label = f"k{len(self.kprobes) + 1}"
            while label in self.kprobes:
                label += "x"
            st = {"kprobe": "add", "target": self.func(), "name": label}
            if rng.random() < 0.5:
                st["post"] = True
            self.steps.append(st)
            self.kprobes.append(label)
        elif what == "kprobe_remove":
            label = rng.choice(self.kprobes)
            target = next(s["target"] for s in self.steps if s.get("kprobe") == "add" and s.get("name") == label)
            self.steps.append({"kprobe": "remove", "target": target, "name": label})
            self.kprobes.remove(label)
        elif what == "direct":
            self.ndirect += 1
            name = f"d{self.ndirect}"
            targets = [self.func()]
            self.steps.append({"direct": "register", "name": name, "targets": targets})
            self.directs[name] = targets
        elif what == "direct_unregister":
            name = rng.choice(sorted(self.directs))
            self.steps.append({"direct": "unregister", "name": name})
            del self.directs[name]
        elif what == "direct_modify":
            name = rng.choice(sorted(self.directs))
            self.steps.append({"direct": "modify", "name": name, "tramp": "my_tramp2"})
        elif what == "tracer":
            self.steps.append({"tracer": "function", "filter": sorted(set(rng.sample(self.hot, 1)))})
            self.tracer = True
        elif what == "tracer_nop":
            self.steps.append({"tracer": "nop"})
            self.tracer = False
        elif what == "show":
            self.steps.append({"show": "enabled_functions"})


def generate(seed: int, index: int, min_steps: int = 4, max_steps: int = 10) -> dict[str, Any]:
    """Scenario ``index`` of ``seed`` as a plain mapping (what the YAML file holds)."""
    rng = random.Random(f"ftlab-oracle-{seed}-{index}")
    walk = _Walk(rng)
    n = rng.randint(min_steps, max_steps)
    while len(walk.steps) < n:
        walk.step()
    # end on a call of each hot function, so the final state is observed
    for f in walk.hot:
        walk.steps.append({"call": f})
    return {"description": f"random scenario {index} of seed {seed} over {', '.join(walk.hot)} (ftlab oracle gen)",
            "kernel": {"policy": DEFAULT_POLICY}, "steps": walk.steps}


def to_yaml(data: dict[str, Any]) -> str:
    """A generated scenario as YAML: one flow mapping per step."""
    head = yaml.safe_dump({"description": data["description"], "kernel": data["kernel"]}, sort_keys=False,
                          default_flow_style=None, width=200)
    steps = "".join("  - " + yaml.safe_dump(s, sort_keys=False, default_flow_style=True, width=200).strip() + "\n"
                    for s in data["steps"])
    return head.replace("kernel:\n  policy: linux-6.1\n", "kernel: {policy: linux-6.1}\n") + "steps:\n" + steps


def generate_files(seed: int, count: int) -> list[tuple[str, str]]:
    """``(file name, YAML text)`` of ``count`` scenarios of ``seed``."""
    return [(f"gen-{seed}-{i:03d}.yaml", to_yaml(generate(seed, i))) for i in range(count)]
