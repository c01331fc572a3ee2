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
    #: its embedded catalogue (``ftlab.data/<name>.available_filter_functions.gz``) and the oracle
    #: guest's module records (``<name>.available_filter_functions.gz``)
    catalogue: str = "debian-6.1.0-56-amd64"
    guest_modules: str = "oracle-guest-modules"


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

#: d05cb470663a: direct_functions replaced by a copy on registration (every 6.12; its failure path
#: left the new entries behind until 56b3c85e153b).
DIRECT_HASH_COPY = Change(
    "d05cb470663a", "ftrace: Fix modification of direct_function hash while in use",
    ("register_ftrace_direct",), ("v6.7 (6.6.10)",),
    "register_ftrace_direct builds a new direct_functions hash from the old entries and the ops' "
    "new ones; a failed registration leaves the new entries in it, so a retry on those ips is -EBUSY "
    "(live patch, then fexit: the attach fails)")

#: 56b3c85e153b: the fops reset moves from the BPF retry to register_ftrace_direct's failure path.
FIX_FEXIT_LIVEPATCH = Change(
    "56b3c85e153b", "ftrace: Fix BPF fexit with livepatch",
    ("register_ftrace_direct", "reset_direct", "unregister_ftrace_direct", "bpf_trampoline_update"),
    ("6.12.59",),
    "a failed register_ftrace_direct runs reset_direct (entries removed, func and trampoline cleared); "
    "bpf_trampoline_update's -EAGAIN retry no longer clears tr->fops' func and trampoline, so a "
    "retry from the modify path (3e9a18e1c3e9's SELF) leaves a working registered fops")

#: fea3f5e83c5c: register_fentry returns ftrace_set_filter_ip's error.
REGISTER_FENTRY_ERRORS = Change(
    "fea3f5e83c5c", "bpf: Handle return value of ftrace_set_filter_ip in register_fentry",
    ("register_fentry",), ("6.12.63",),
    "an error of ftrace_set_filter_ip (-ENODEV once ftrace is dead, -EINVAL, -ENOMEM) is the attach's "
    "answer instead of being ignored")

#: e113f0b46d19: disarming a kprobe once ftrace is killed does nothing and succeeds.
KPROBE_DISARM_KILLED = Change(
    "e113f0b46d19", "kprobes: avoid crash when rmmod/insmod after ftrace killed",
    ("__disarm_kprobe_ftrace",), ("6.12.78",),
    "__disarm_kprobe_ftrace returns 0 at once when kprobe_ftrace_disabled is set (ftrace killed): "
    "no unregister_ftrace_function, no 'Failed to unregister kprobe-ftrace' WARN")

CHANGES: dict[str, Change] = {c.id: c for c in (FIX_MODIFY_SELF, DIRECT_HASH_COPY, FIX_FEXIT_LIVEPATCH,
                                                REGISTER_FENTRY_ERRORS, KPROBE_DISARM_KILLED)}


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
               series=("6.0", "6.11"), kernel_series="6.1",
               validated=(("6.1.0-56-amd64", "6.1.192-2"), ("6.1.0-57-amd64", "6.1.192-3"))),
    PolicyInfo("linux-6.1.159", "linux_6_1", (),
               "Linux 6.1 before 6.1.160 (Debian 6.1 before 6.1.162-1): the 6.1 base without 3e9a18e1c3e9",
               "merged design as released in 6.0: the modify path does not ask SELF",
               variant=True),
    PolicyInfo("linux-6.12", "linux_6_12",
               (DIRECT_HASH_COPY.id, FIX_FEXIT_LIVEPATCH.id, FIX_MODIFY_SELF.id, REGISTER_FENTRY_ERRORS.id,
                KPROBE_DISARM_KILLED.id),
               "Linux 6.12.95 (Debian 6.12.95-1~bpo12+1, bookworm-backports)",
               "the 6.4 direct API (ops->direct_call), reset_direct, the BPF retry without the fops reset, "
               "kprobes inert once ftrace is killed",
               series=("6.12", "6.99"), kernel_series="6.12",
               validated=(("6.12.95+deb12-amd64", "6.12.95-1~bpo12+1"),),
               catalogue="debian-6.12.95+deb12-amd64", guest_modules="oracle-guest-modules-6.12"),
    PolicyInfo("linux-6.12.58", "linux_6_12", (DIRECT_HASH_COPY.id,),
               "Linux 6.12 before 6.12.59: the 6.12 base with d05cb470663a but none of its fixes",
               "copy-on-write direct hash whose failure path leaves entries: live patch, then fexit, fails",
               variant=True, catalogue="debian-6.12.95+deb12-amd64", guest_modules="oracle-guest-modules-6.12"),
)}

#: The one default policy: what ``Kernel(cat)``, a scenario and a universe get when they name none.
DEFAULT_POLICY = "linux-6.1"
#: The seed's own policy (the benchmarks are measured under it, as the seed's explorer findings are).
SEED_POLICY = "seed-v2"


OPS_FUNC_BLOCKING_LOCK = MutationInfo(
    "ops-func-blocking-lock", "BPF's ops_func takes tr->mutex with mutex_lock instead of mutex_trylock",
    ("seed-v2", "linux-6.1", "linux-6.1.159", "linux-6.12", "linux-6.12.58"))
NO_ORIG_STACK = MutationInfo(
    "no-orig-stack", "the BPF trampoline never calls the original through the stack (no BPF_TRAMP_F_ORIG_STACK)",
    ("seed-v2", "linux-6.1", "linux-6.1.159", "linux-6.12", "linux-6.12.58"))
SKIP_PREPARE = MutationInfo(
    "skip-prepare", "register_ftrace_function registers an IPMODIFY ops without asking DIRECT ops to share first",
    ("seed-v2", "linux-6.1", "linux-6.1.159", "linux-6.12", "linux-6.12.58"))
NO_ROLLBACK = MutationInfo(
    "no-rollback", "__ftrace_hash_update_ipmodify returns -EBUSY without undoing the records it changed",
    ("linux-5.18", "seed-v2", "linux-6.1", "linux-6.1.159", "linux-6.12", "linux-6.12.58"))

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
