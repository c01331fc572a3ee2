"""Mutations: named, opt-in deviations of the model, to check that the explorer catches them.

A mutation is switched on per kernel (``k.mutations``) and consulted where the model does what
it changes (grep the policy modules for its name: bpf_tramp_ftrace_ops_func, the ORIG_STACK
choice in bpf_trampoline_update, register_ftrace_function, __ftrace_hash_update_ipmodify);
each is a deliberate bug, never a policy. The explorer run on each mutation must find a
violation that the unmutated policy does not have (``ftlab explore --mutations``).
"""

from __future__ import annotations

MUTATIONS: dict[str, str] = {
    "ops-func-blocking-lock": "BPF's ops_func takes tr->mutex with mutex_lock instead of mutex_trylock",
    "no-orig-stack": "the BPF trampoline never calls the original through the stack (no BPF_TRAMP_F_ORIG_STACK)",
    "skip-prepare": "register_ftrace_function registers an IPMODIFY ops without asking DIRECT ops to share first",
    "no-rollback": "__ftrace_hash_update_ipmodify returns -EBUSY without undoing the records it changed",
}


#: Policies in which each mutation changes anything (5.18 has no ops_func, no ORIG_STACK, no prepare).
APPLIES: dict[str, tuple[str, ...]] = {
    "ops-func-blocking-lock": ("seed-v2", "linux-6.1"),
    "no-orig-stack": ("seed-v2", "linux-6.1"),
    "skip-prepare": ("seed-v2", "linux-6.1"),
    "no-rollback": ("linux-5.18", "seed-v2", "linux-6.1"),
}


def applies(mutation: str, policy: str) -> bool:
    """Does ``mutation`` change anything under ``policy``."""
    return policy in APPLIES.get(mutation, ())


def check_mutation(name: str) -> str:
    """``name`` if it is a known mutation (ValueError otherwise)."""
    if name not in MUTATIONS:
        raise ValueError(f"unknown mutation {name!r} (known: {', '.join(MUTATIONS)})")
    return name
