"""The registry: every policy, change and mutation by name, with its defaults and releases.

This module is data only. Everything that lists policies, changes or mutations (the scenario and
universe schemas, the CLI's choices, the JSON schemas, preflight's choice of a policy for a
kernel build, ``ftlab policies``) derives the list from here; a name written anywhere else is a
bug (a test checks it).

* :data:`POLICIES` -- each policy: the package of its kernel version, the upstream changes
  composed onto that package's base, the kernel it is, and the builds it stands for;
* :data:`CHANGES` -- each upstream change: commit id, title, the kernel functions it
  replaces, the releases that carry it;
* :data:`MUTATIONS` -- each deliberate bug the explorer must catch, and where it applies;
* :data:`DEFAULT_POLICY` -- the one default (``Kernel(cat)``, scenarios, universes).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InputError


@dataclass(frozen=True)
class Change:
    """An upstream commit that a kernel build may or may not carry."""

    id: str                       # the commit id, 12 hex digits
    title: str                    # its subject line
    functions: tuple[str, ...]    # the kernel functions it changes, as the model has them
    releases: tuple[str, ...]     # where it first appeared, per series (upstream stable; Debian upload)
    summary: str                  # what it does, in the model's terms


@dataclass(frozen=True)
class PolicyInfo:
    """A policy: a kernel version's base (its package) plus changes, and what it stands for."""

    name: str
    package: str                  # the version package under ftlab.model.policies
    changes: tuple[str, ...]      # ids of :data:`CHANGES` composed onto the package's base, in order
    kernel: str                   # the kernel it models
    description: str              # one line: what sets it apart
    #: the kernel series whose version numbers select it when nothing better is known
    #: (preflight): e.g. ("6.0", "6.99") for every 6.x kernel
    series: tuple[str, str] | None = None
    #: exact builds the model was checked against on the real kernel (``uname -r``, package version)
    validated: tuple[tuple[str, str], ...] = ()
    #: a named build of a base that is not one of the primary policies (``--policy all`` leaves it out)
    variant: bool = False
    #: the kernel series whose Debian builds this policy models, as the oracle names it (``6.1``)
    kernel_series: str | None = None


@dataclass(frozen=True)
class MutationInfo:
    """A deliberate bug: the explorer run with it must find a violation the policy itself has not."""

    name: str
    description: str
    policies: tuple[str, ...]     # where it changes anything (the kernel has what it mutates)


#: 3e9a18e1c3e9: the modify path asks SELF (Debian's 6.1 has it, without its companion fix).
FIX_MODIFY_SELF = Change(
    "3e9a18e1c3e9", "ftrace: bpf: Fix IPMODIFY + DIRECT in modify_ftrace_direct()",
    ("__ftrace_hash_update_ipmodify", "__modify_ftrace_direct_multi"),
    ("6.1.160 (Debian 6.1.162-1)", "6.12.62"),
    "changing a direct ops' trampoline re-asks the DIRECT ops with ENABLE_SHARE_IPMODIFY_SELF "
    "(__ftrace_hash_update_ipmodify with update_target over the whole filter), so a BPF "
    "trampoline that starts calling the original under a live patch rebuilds with ORIG_STACK")

CHANGES: dict[str, Change] = {c.id: c for c in (FIX_MODIFY_SELF,)}


POLICIES: dict[str, PolicyInfo] = {p.name: p for p in (
    PolicyInfo("linux-5.18", "linux_5_18", (),
               "Linux 5.18 (5.5-5.19: before the series)",
               "before the series: IPMODIFY and DIRECT exclude each other (-EBUSY), no ops_func",
               series=("5.5", "5.19")),
    PolicyInfo("seed-v2", "seed_v2", (),
               "bpf-next + v2 series, June 2022",
               "Song Liu's v2 series (June 2022): FTRACE_OPS_FL_SHARE_IPMODIFY, ops_func ENABLE/DISABLE"),
    PolicyInfo("linux-6.1", "linux_6_1", (FIX_MODIFY_SELF.id,),
               "Linux 6.1.192 (Debian 6.1.0-56), merged v5 design + stable backports",
               "merged design: ops_func SELF/PEER/DISABLE_PEER, no ftrace SHARE bit, update_target backport",
               series=("6.0", "6.99"), kernel_series="6.1",
               validated=(("6.1.0-56-amd64", "6.1.192-2"), ("6.1.0-57-amd64", "6.1.192-3"))),
    PolicyInfo("linux-6.1.159", "linux_6_1", (),
               "Linux 6.1 before 6.1.160 (Debian 6.1 before 6.1.162-1): the 6.1 base without 3e9a18e1c3e9",
               "merged design as released in 6.0: the modify path does not ask SELF",
               variant=True),
)}

#: The one default policy: what ``Kernel(cat)``, a scenario and a universe get when they name none.
DEFAULT_POLICY = "linux-6.1"
#: The seed's own policy (the benchmarks are measured under it, as the seed's explorer findings are).
SEED_POLICY = "seed-v2"


OPS_FUNC_BLOCKING_LOCK = MutationInfo(
    "ops-func-blocking-lock", "BPF's ops_func takes tr->mutex with mutex_lock instead of mutex_trylock",
    ("seed-v2", "linux-6.1", "linux-6.1.159"))
NO_ORIG_STACK = MutationInfo(
    "no-orig-stack", "the BPF trampoline never calls the original through the stack (no BPF_TRAMP_F_ORIG_STACK)",
    ("seed-v2", "linux-6.1", "linux-6.1.159"))
SKIP_PREPARE = MutationInfo(
    "skip-prepare", "register_ftrace_function registers an IPMODIFY ops without asking DIRECT ops to share first",
    ("seed-v2", "linux-6.1", "linux-6.1.159"))
NO_ROLLBACK = MutationInfo(
    "no-rollback", "__ftrace_hash_update_ipmodify returns -EBUSY without undoing the records it changed",
    ("linux-5.18", "seed-v2", "linux-6.1", "linux-6.1.159"))

MUTATIONS: dict[str, MutationInfo] = {m.name: m for m in (OPS_FUNC_BLOCKING_LOCK, NO_ORIG_STACK, SKIP_PREPARE,
                                                          NO_ROLLBACK)}


def policy_names(*, variants: bool = False) -> list[str]:
    """Names of the primary policies (``variants``: of every policy), in registry order."""
    return [n for n, p in POLICIES.items() if variants or not p.variant]


def policy_info(name: str) -> PolicyInfo:
    """The registry entry of policy ``name`` (InputError for an unknown one)."""
    info = POLICIES.get(name)
    if info is None:
        raise InputError(f"unknown policy {name!r} (known: {', '.join(policy_names(variants=True))})")
    return info


def policy_for_series(series: str) -> str | None:
    """The primary policy that models the Debian builds of kernel series ``series`` (``6.1``), if any."""
    return next((n for n, p in POLICIES.items() if p.kernel_series == series and not p.variant), None)


def mutation_names() -> list[str]:
    """Names of every mutation, in registry order."""
    return list(MUTATIONS)


def check_mutation(name: str) -> str:
    """``name`` if it is a known mutation (InputError otherwise)."""
    if name not in MUTATIONS:
        raise InputError(f"unknown mutation {name!r} (known: {', '.join(MUTATIONS)})")
    return name


def mutation_applies(mutation: str, policy: str) -> bool:
    """Does ``mutation`` change anything under ``policy``."""
    m = MUTATIONS.get(mutation)
    return m is not None and policy in m.policies
