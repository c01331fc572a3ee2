"""The generic checker (BFS, visited set, shortest counterexamples, replay) on a toy model."""

from __future__ import annotations

import pytest

from ftlab.explorer.checker import Checker, Property


class Counter:
    """Two counters; actions increment one of them mod 4. Property: never both equal 3."""

    def init_states(self):
        return [(0, 0)]

    def actions(self, s):
        return ["a", "b"]

    def next_state(self, s, action):
        a, b = s
        return ((a + 1) % 4, b) if action == "a" else (a, (b + 1) % 4), {}

    def key(self, s):
        return s

    def properties(self):
        return [Property("not_both_three", "a and b are never both 3",
                         lambda s: ["both are 3"] if s == (3, 3) else []),
                Property("small", "a stays below 5", lambda s: [])]


def test_bfs_visits_every_state_once_and_counts_transitions():
    r = Checker(Counter()).run()
    assert r.states == 16 and r.transitions == 32 and r.complete


def test_shortest_counterexample_is_found_and_replays():
    r = Checker(Counter()).run()
    cx = r.counterexample("not_both_three")
    assert cx.depth == 6 and sorted(cx.actions) == ["a"] * 3 + ["b"] * 3
    states = r.replay(cx)
    assert states[-1] == (3, 3) and len(states) == 7
    with pytest.raises(AssertionError, match="not_both_three violated after 6 step"):
        r.assert_no_violation()
    r.assert_no_violation("small")


def test_depth_bound_cuts_the_search():
    r = Checker(Counter()).depth(3).run()
    assert r.states == 10 and "not_both_three" not in r.violations


def test_symmetry_merges_states_and_keeps_the_violation():
    r = Checker(Counter()).symmetry(lambda s: tuple(sorted(s))).run()
    assert r.states == 10 and r.counterexample("not_both_three").depth == 6


def test_max_states_marks_the_result_incomplete():
    r = Checker(Counter()).max_states(5).run()
    assert r.states == 5 and not r.complete


def test_transition_properties_see_every_step():
    class WithTransition(Counter):
        def properties(self):
            return [Property("no_wrap", "a never wraps from 3 to 0",
                             lambda before, action, after, info: ["wrapped"] if before[0] == 3 and after[0] == 0 else [],
                             kind="transition")]

    r = Checker(WithTransition()).run()
    cx = r.counterexample("no_wrap")
    assert cx.depth == 4 and cx.actions == ["a"] * 4


# -- the search in several processes ---------------------------------------------------------------
def _signature(r):
    return (r.states, r.transitions, r.max_depth, r.complete, r.violation_counts,
            {name: (cx.init, cx.path, cx.messages) for name, cx in r.violations.items()})


class Grid:
    """Three counters mod 5, with a transition property; large enough to share out."""

    def init_states(self):
        return [(0, 0, 0)]

    def actions(self, s):
        return ["a", "b", "c"]

    def next_state(self, s, action):
        i = "abc".index(action)
        return tuple((v + 1) % 5 if j == i else v for j, v in enumerate(s)), {"wrapped": s[i] == 4}

    def key(self, s):
        return s

    def properties(self):
        return [Property("sum_below_10", "the counters sum to less than 10",
                         lambda s: [f"sum {sum(s)}"] if sum(s) >= 10 else []),
                Property("no_wrap", "no counter wraps", lambda b, a, s, info: ["wrapped"] if info["wrapped"] else [],
                         kind="transition")]


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("split_at", [1, 4, 1000])
@pytest.mark.parametrize("config", ["plain", "depth", "max_states", "stop", "symmetry"])
def test_workers_give_the_same_result_as_one_process(monkeypatch, workers, split_at, config):
    import ftlab.explorer.checker as checker_mod

    monkeypatch.setattr(checker_mod, "SPLIT_AT", split_at)

    def build():
        c = Checker(Grid())
        if config == "depth":
            c.depth(6)
        elif config == "max_states":
            c.max_states(40)
        elif config == "stop":
            c.stop_at_first()
        elif config == "symmetry":
            c.symmetry(lambda s: tuple(sorted(s)))
        return c

    one = build().run()
    many = build().workers(workers).run()
    assert _signature(many) == _signature(one)
    assert one.states > 1


class Failing(Grid):
    def next_state(self, s, action):
        if s == (2, 2, 2):
            raise ValueError("model bug at (2, 2, 2)")
        return super().next_state(s, action)


def test_a_failing_worker_is_reported_not_waited_for(monkeypatch):
    import ftlab.explorer.checker as checker_mod

    monkeypatch.setattr(checker_mod, "SPLIT_AT", 1)
    with pytest.raises((RuntimeError, ValueError), match=r"model bug at \(2, 2, 2\)"):
        Checker(Failing()).workers(2).run()


def test_workers_must_be_positive():
    with pytest.raises(ValueError):
        Checker(Grid()).workers(0)
