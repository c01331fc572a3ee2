"""The policy registry, the typed policy table, and changes and mutations as overlays."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from ftlab.errors import InputError, ModelError
from ftlab.model.policies import (
    Overlay,
    Policy,
    compose,
    get_policy,
    linux_6_1,
    merged,
    policy_names,
    rebind,
    registry,
    slot_names,
)
from ftlab.model.policies.mutations import overlay as mutation_overlay
from ftlab.scenario.loader import load_scenario_text
from ftlab.scenario.runner import run_scenario

LP_FENTRY_FEXIT = """
kernel: {policy: linux-6.1, catalogue: [cmdline_proc_show]}
steps:
  - {livepatch: enable, patch: p1, funcs: [cmdline_proc_show]}
  - {bpf: attach, prog: fe, kind: fentry, target: cmdline_proc_show}
  - {bpf: attach, prog: fx, kind: fexit, target: cmdline_proc_show}
  - {call: cmdline_proc_show}
"""


def run(text: str, policy: str):
    sc, lines = load_scenario_text(text, "<t>")
    return run_scenario(sc, lines, "<t>", policy=policy)


def test_every_registered_policy_builds_with_a_function_in_every_slot():
    for name in policy_names(variants=True):
        p = get_policy(name)
        assert p.name == name and p.kernel == registry.POLICIES[name].kernel
        for slot in slot_names():
            assert callable(getattr(p, slot)), (name, slot)
        assert p.changes == registry.POLICIES[name].changes


def test_every_slot_function_names_its_kernel_counterpart_in_its_first_docstring_line():
    for name in policy_names(variants=True):
        p = get_policy(name)
        for slot in sorted(slot_names()):
            fn = getattr(p, slot)
            first = (inspect.getdoc(fn) or "").splitlines()[0]
            if fn.__name__.startswith("absent_"):
                assert first.endswith(f"does not exist in {name}."), (name, slot, first)
                continue
            assert re.match(r"^_*\w+\(", first) and re.search(r"\w+\.[ch]\b", first), (name, slot, first)


def test_the_default_policy_is_the_registrys_and_kernel_uses_it():
    from ftlab.model.catalogue import Catalogue
    from ftlab.model.kernel import Kernel
    assert get_policy() is get_policy(registry.DEFAULT_POLICY)
    assert Kernel(Catalogue.synthetic(["f"])).policy.name == registry.DEFAULT_POLICY
    assert registry.DEFAULT_POLICY in policy_names()


def test_linux_6_1_is_its_base_plus_3e9a18e1c3e9_and_the_variant_is_the_base_alone():
    full, base = get_policy("linux-6.1"), get_policy("linux-6.1.159")
    assert full.changes == ("3e9a18e1c3e9",) and base.changes == ()
    differ = {s for s in slot_names() if getattr(full, s) != getattr(base, s)}
    assert differ == {"modify_direct_body"}
    assert base.modify_direct_body is linux_6_1.__modify_ftrace_direct_multi
    change = registry.CHANGES["3e9a18e1c3e9"]
    assert change.title == "ftrace: bpf: Fix IPMODIFY + DIRECT in modify_ftrace_direct()"
    assert "__modify_ftrace_direct_multi" in change.functions


def test_the_two_6_1_variants_answer_live_patch_fentry_fexit_differently():
    # with 3e9a18e1c3e9 (Debian 6.1.162-1 and later): the modify path asks SELF, the retry
    # clears fops->func of the live fops, the call kills ftrace
    with_fix = run(LP_FENTRY_FEXIT, "linux-6.1")
    call = with_fix.steps[-1]
    assert [s.result for s in with_fix.steps] == ["ok", "ok", "ok", "ok"]
    assert with_fix.kernel.ftrace_disabled and call.trace["programs"] == []
    # without it (before 6.1.160): nothing asks SELF on the modify, the image has no
    # ORIG_STACK and calls the original body: both programs run, the live patch does not
    before = run(LP_FENTRY_FEXIT, "linux-6.1.159")
    call = before.steps[-1]
    assert not before.kernel.ftrace_disabled
    assert call.trace["body"] == "original" and call.trace["programs"] == ["fe", "fx"]


def test_an_overlay_replaces_only_its_slots_and_is_recorded():
    base = get_policy("linux-6.1")

    def fake_update(k, tr, lock):  # pragma: no cover - never called
        return 0

    p = compose(base, [Overlay.functions("test-change", bpf_trampoline_update=fake_update)])
    assert p.bpf_trampoline_update is fake_update and p.changes == ("3e9a18e1c3e9", "test-change")
    assert all(getattr(p, s) == getattr(base, s) for s in slot_names() - {"bpf_trampoline_update"})
    with pytest.raises(ModelError, match="not a policy slot"):
        compose(base, [Overlay.functions("bad", no_such_slot=fake_update)])


def test_every_mutation_is_an_overlay_that_changes_the_slots_it_names_and_only_them():
    for m, info in registry.MUTATIONS.items():
        ov = mutation_overlay(m)
        for name in info.policies:
            base, mutated = get_policy(name), get_policy(name, [m])
            assert mutated.mutations == (m,) and mutated.changes == base.changes
            changed = {s for s in slot_names() if getattr(mutated, s) != getattr(base, s)}
            assert changed == set(ov.replaces), (m, name)


def test_a_mutation_that_would_change_nothing_is_an_error_and_an_inapplicable_one_is_left_out():
    with pytest.raises(ModelError, match="does not use 'mutex_lock'"):
        rebind(merged.bpf_tramp_ftrace_ops_func, mutex_lock=None)
    assert get_policy("linux-5.18", ["no-orig-stack"]).mutations == ()
    with pytest.raises(InputError, match="unknown mutation"):
        get_policy("linux-6.1", ["no-such-bug"])


def test_a_slot_a_version_lacks_says_so_when_called():
    with pytest.raises(ModelError, match="cleanup_direct_functions_after_ipmodify does not exist in linux-5.18"):
        get_policy("linux-5.18").cleanup_direct_functions_after_ipmodify(None, None)


def test_policies_are_frozen_values_shared_by_copies_and_pickled_by_name():
    import copy
    import pickle
    p = get_policy("seed-v2", ["skip-prepare"])
    assert copy.deepcopy(p) is p and pickle.loads(pickle.dumps(p)) is p
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"  # type: ignore[misc]
    assert isinstance(p, Policy)


def test_unknown_policy_names_the_known_ones():
    with pytest.raises(InputError, match="unknown policy 'linux-9.9' .*linux-6.1.159"):
        get_policy("linux-9.9")
