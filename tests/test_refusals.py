"""Refusals that change state: the kernel paths that keep a change on failure say so (KEPT), and
nothing else a refused step changes goes unexplained (ftlab.model.refusals)."""

from __future__ import annotations

import itertools

import pytest

from ftlab.errors import ModelError
from ftlab.model.policies import policy_names
from ftlab.model.refusals import KEPT, KEPT_PATHS, kept, state_parts, unexplained_changes
from ftlab.scenario import load_scenario_text
from ftlab.scenario.runner import run_scenario

STEPS = {
    "kprobe-post": "  - kprobe: add\n    target: cmdline_proc_show\n    post: true\n",
    "fexit": "  - bpf: attach\n    prog: fx\n    kind: fexit\n    target: cmdline_proc_show\n",
    "fentry": "  - bpf: attach\n    prog: fe\n    kind: fentry\n    target: cmdline_proc_show\n",
    "livepatch": "  - livepatch: enable\n    patch: p1\n    funcs: [cmdline_proc_show]\n",
    "ops-ipmodify": "  - ops: register\n    name: o\n    funcs: [cmdline_proc_show]\n    ipmodify: true\n",
    "tracer": "  - tracer: function\n    filter: [cmdline_proc_show]\n",
    "tracer-bad-filter": "  - tracer: function\n    filter: [version_proc_show, zzz_no_such]\n",
    "direct": "  - direct: register\n    name: d\n    targets: [cmdline_proc_show]\n    tramp: my_tramp1\n",
}


def _refusals(policy: str) -> dict[tuple[str, ...], tuple[list[str], list[str]]]:
    """Every order of 2 or 3 of STEPS whose last step alone is refused: (unexplained changes, KEPT paths)."""
    out = {}
    for n in (2, 3):
        for order in itertools.permutations(STEPS, n):
            text = f"kernel: {{policy: {policy}}}\nsteps:\n" + "".join(STEPS[s] for s in order)
            scenario, lines = load_scenario_text(text)
            run = run_scenario(scenario, lines, "<t>")
            if len(run.steps) < n or run.steps[-1].result in ("ok", "Oops") or \
                    any(s.result != "ok" for s in run.steps[:-1]):
                continue
            before = run_scenario(scenario, lines, "<t>", until=n - 1).kernel
            events = run.kernel.events[len(before.events):]
            out[order] = (unexplained_changes(state_parts(before), run.kernel, len(before.events)),
                          sorted({e.where for e in events if e.kind == KEPT}))
    return out


@pytest.mark.parametrize("policy", policy_names(variants=True))
def test_every_refusal_that_changes_state_is_a_kernel_path_that_says_so(policy: str) -> None:
    found = _refusals(policy)
    assert found  # the orders above do refuse
    unexplained = {order: changed for order, (changed, _) in found.items() if changed}
    if policy == "linux-6.12.58":
        # d05cb470663a without 56b3c85e153b: the refused registration leaves its direct_functions entries
        assert {("kprobe-post", "fexit"), ("livepatch", "fexit"), ("livepatch", "direct")} <= set(unexplained)
        assert all(changed == ["direct_functions"] and order[-1] in ("fexit", "fentry", "direct")
                   for order, changed in unexplained.items())
    else:
        assert unexplained == {}
    paths = {p for _, ps in found.values() for p in ps}
    assert {"ftrace_regex_release", "__arm_kprobe_ftrace"} <= paths
    if policy != "linux-5.18":
        assert "prepare_direct_functions_for_ipmodify" in paths


def test_the_kept_paths_and_what_they_keep() -> None:
    found = _refusals("linux-6.1")
    assert found[("tracer", "tracer-bad-filter")] == ([], ["ftrace_regex_release"])
    assert found[("livepatch", "kprobe-post")] == ([], ["__arm_kprobe_ftrace"])
    assert found[("kprobe-post", "fentry", "livepatch")] == ([], ["prepare_direct_functions_for_ipmodify"])
    # a refusal with nothing to keep says nothing
    assert found[("kprobe-post", "livepatch")] == ([], [])


def test_a_change_no_kept_event_names_is_unexplained() -> None:
    scenario, lines = load_scenario_text("steps:\n" + STEPS["tracer"])
    k = run_scenario(scenario, lines, "<t>").kernel
    before = state_parts(k)
    k.ftrace_start_up += 1
    assert unexplained_changes(before, k, len(k.events)) == ["ftrace_start_up"]
    kept(k, "ftrace_regex_release", "test")
    assert unexplained_changes(before, k, len(k.events) - 1) == ["ftrace_start_up"]  # not a part it keeps
    k.recs[0] = 1
    assert unexplained_changes(before, k, len(k.events) - 1) == ["ftrace_start_up"]


def test_only_known_paths_may_keep_changes() -> None:
    scenario, lines = load_scenario_text("steps:\n" + STEPS["tracer"])
    k = run_scenario(scenario, lines, "<t>").kernel
    with pytest.raises(ModelError, match="not a kernel path"):
        kept(k, "register_ftrace_function", "anything")
    assert set(KEPT_PATHS) == {"ftrace_regex_release", "__arm_kprobe_ftrace", "prepare_direct_functions_for_ipmodify"}
