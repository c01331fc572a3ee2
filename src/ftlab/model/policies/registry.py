"""The registry: every policy, change and mutation by name, with its defaults and releases.

This module is data only. Everything that lists policies, changes or mutations (the scenario and
universe schemas, the CLI's choices, the JSON schemas, preflight's choice of a policy for a
kernel build, ``ftlab policies``) derives the list from here; a name written anywhere else is a
bug (a test checks it).

* :data:`POLICIES` -- each policy: the package of its kernel version, the upstream changes
  composed onto that package's base, the kernel it is, the upstream versions whose rules it has
  and the exact kernel builds (:class:`Build`) it stands for;
* :data:`CHANGES` -- each upstream change: commit id, title, the kernel functions it
  replaces, the releases that carry it;
* :data:`MUTATIONS` -- each deliberate bug the explorer must catch, and where it applies;
* :data:`DEFAULT_POLICY` -- the one default (``Kernel(cat)``, scenarios, universes).
"""

from __future__ import annotations

import re
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
class Build:
    """One exact kernel build, as a machine names it: ``uname -r`` and the Debian package version
    that ``uname -v`` carries (``#1 SMP PREEMPT_DYNAMIC Debian 6.12.95-1~bpo12+1 (2026-07-05)``).

    ``validated``: the model was checked against this very kernel under QEMU (the oracle's bundled
    scenarios, the preflight end-to-end test, snapshots rebuilt without a mismatch); otherwise the
    policy stands for it by reading only: its sources were read against a validated build's, never
    run. ``how`` says which, in one line.
    """

    release: str                  # uname -r
    version: str                  # the Debian package version in uname -v
    validated: bool
    how: str


@dataclass(frozen=True)
class PolicyInfo:
    """A policy: a kernel version's base (its package) plus changes, and what it stands for."""

    name: str
    package: str                  # the version package under ftlab.model.policies
    changes: tuple[str, ...]      # ids of :data:`CHANGES` composed onto the package's base, in order
    kernel: str                   # the kernel it models
    description: str              # one line: what sets it apart
    #: the upstream versions (inclusive; an upper bound's missing parts are any) whose rules it has,
    #: as the changes' releases say: what makes it the *nearest* policy of a build it does not stand
    #: for (preflight names it, and uses it only when asked to with --policy). A variant's range lies
    #: inside its primary's and is nearer where both hold.
    versions: tuple[str, str] | None = None
    #: the exact builds it stands for (preflight chooses it for these alone)
    builds: tuple[Build, ...] = ()
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


#: The builds the policies stand for, each with where the claim comes from.
BUILD_6_1_0_56 = Build(
    "6.1.0-56-amd64", "6.1.192-2", True,
    "the oracle's bundled scenarios and the preflight end-to-end test on the real kernel (November 2026); "
    "the embedded catalogue and tests/data/snapshots were taken on it")
BUILD_6_1_0_57 = Build(
    "6.1.0-57-amd64", "6.1.192-3", True,
    "the oracle's 47 bundled scenarios (every step agrees but pair-kprobe-kprobepost 7-13, the "
    "use-after-free the model does not follow) and the preflight end-to-end test on the real kernel")
BUILD_6_12_95 = Build(
    "6.12.95+deb12-amd64", "6.12.95-1~bpo12+1", True,
    "the oracle's 47 bundled scenarios (tests/data/oracle-6.12: results, calls and hooks agree but "
    "pair-kprobe-kprobepost 7-13, the use-after-free; record columns compared loosely until the model "
    "prints 6.12's), tests/data/snapshots/6.12 rebuilt without a mismatch, and the preflight "
    "end-to-end test on the real kernel")
BUILD_6_12_118 = Build(
    "6.12.118+deb12-amd64", "6.12.118-1~deb12u1", False,
    "bookworm-security; its sources read against 6.12.95's: kernel/livepatch and x86's ftrace.c are the "
    "same, kernel/trace/ftrace.c, trace_functions.c, kernel/bpf/trampoline.c, kernel/kprobes.c and "
    "ftrace.h differ only in locking, RCU lifetime and tracefs-open fixes, none a rule the model has")

POLICIES: dict[str, PolicyInfo] = {p.name: p for p in (
    PolicyInfo("linux-5.18", "linux_5_18", (),
               "Linux 5.18 (5.5-5.19: before the series)",
               "before the series: IPMODIFY and DIRECT exclude each other (-EBUSY), no ops_func",
               versions=("5.5", "5.19")),
    PolicyInfo("seed-v2", "seed_v2", (),
               "bpf-next + v2 series, June 2022",
               "Song Liu's v2 series (June 2022): FTRACE_OPS_FL_SHARE_IPMODIFY, ops_func ENABLE/DISABLE"),
    PolicyInfo("linux-6.1", "linux_6_1", (FIX_MODIFY_SELF.id,),
               "Linux 6.1.192 (Debian 6.1.0-56), merged v5 design + stable backports",
               "merged design: ops_func SELF/PEER/DISABLE_PEER, no ftrace SHARE bit, update_target backport",
               versions=("6.0", "6.11"), kernel_series="6.1",
               builds=(BUILD_6_1_0_56, BUILD_6_1_0_57)),
    PolicyInfo("linux-6.1.159", "linux_6_1", (),
               "Linux 6.1 before 6.1.160 (Debian 6.1 before 6.1.162-1): the 6.1 base without 3e9a18e1c3e9",
               "merged design as released in 6.0: the modify path does not ask SELF",
               versions=("6.0", "6.1.159"), variant=True),
    PolicyInfo("linux-6.12", "linux_6_12",
               (DIRECT_HASH_COPY.id, FIX_FEXIT_LIVEPATCH.id, FIX_MODIFY_SELF.id, REGISTER_FENTRY_ERRORS.id,
                KPROBE_DISARM_KILLED.id),
               "Linux 6.12.95 (Debian 6.12.95-1~bpo12+1, bookworm-backports)",
               "the 6.4 direct API (ops->direct_call), reset_direct, the BPF retry without the fops reset, "
               "kprobes inert once ftrace is killed",
               versions=("6.12", "6.99"), kernel_series="6.12",
               builds=(BUILD_6_12_95, BUILD_6_12_118),
               catalogue="debian-6.12.95+deb12-amd64", guest_modules="oracle-guest-modules-6.12"),
    PolicyInfo("linux-6.12.58", "linux_6_12", (DIRECT_HASH_COPY.id,),
               "Linux 6.12 before 6.12.59: the 6.12 base with d05cb470663a but none of its fixes",
               "copy-on-write direct hash whose failure path leaves entries: live patch, then fexit, fails",
               versions=("6.12", "6.12.58"), variant=True, catalogue="debian-6.12.95+deb12-amd64",
               guest_modules="oracle-guest-modules-6.12"),
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


def policy_for_build(release: str, version: str | None) -> tuple[str, Build] | None:
    """The policy that stands for the exact build ``release`` (``uname -r``) + ``version`` (the
    Debian package version of ``uname -v``), with its :class:`Build` entry; None for any other."""
    for name, info in POLICIES.items():
        for b in info.builds:
            if (b.release, b.version) == (release, version):
                return name, b
    return None


def _version_key(text: str, fill: int) -> tuple[int, int, int]:
    """``6.1.192`` -> (6, 1, 192); missing parts are ``fill``."""
    parts = [int(x) for x in text.split(".")[:3]]
    parts += [fill] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def nearest_policy(upstream: str) -> str | None:
    """The policy whose :attr:`PolicyInfo.versions` hold upstream version ``upstream`` (``6.1.192``;
    a variant before its primary; a version without its third part, ``6.1``, is held by a range only
    when every ``6.1.N`` is), else the one whose range lies nearest below it (the lowest range for a
    version below all); None if ``upstream`` is not a version."""
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", upstream):
        return None
    low, high = _version_key(upstream, 0), _version_key(upstream, 1 << 30)
    ranged = [(n, _version_key(p.versions[0], 0), _version_key(p.versions[1], 1 << 30))
              for n, p in POLICIES.items() if p.versions is not None]
    holding = [n for n, lo, hi in ranged if lo <= low and high <= hi]
    if holding:
        return min(holding, key=lambda n: not POLICIES[n].variant)
    below = [(hi, not POLICIES[n].variant, n) for n, _, hi in ranged if hi < high]
    if below:
        return max(below)[2]
    return min((lo, POLICIES[n].variant, n) for n, lo, _ in ranged)[2]


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
