"""The explorer's state key is complete: two worlds with one key behave alike.

The search merges worlds by key (``FtraceModel.key``), which is sound only if whatever tells two
worlds apart is in the key. Here every world reached twice under one key (by two different action
orders) is checked against the first one: each action must give the same answer and lead to the
same key again, and the invariants must say the same. Calls are actions too (``calls: true``), so
states after a kill are covered. (This test found ops->private's trampoline missing from the key:
a trampoline put while ftrace is dead stays reachable from its still-registered fops.)
"""

from __future__ import annotations

import pytest

from ftlab.bundled import bundled_universes, resolve_universe
from ftlab.explorer.universe import FtraceModel
from ftlab.model.invariants import check_all

DEPTH = {"three-functions-five-clients": 5, "sharing-walk": 6}


def _broken(w) -> set[str]:
    return {v.split(":", 1)[0] for v in check_all(w.k)}


def _step(m, w, a):
    after, info = m.next_state(w, a)
    return after, info["result"], m.key(after)


@pytest.mark.parametrize("policy", ["linux-5.18", "seed-v2", "linux-6.1"])
@pytest.mark.parametrize("name", sorted(bundled_universes()))
def test_worlds_with_one_key_behave_alike(name, policy):
    spec = resolve_universe(name)[0].model_copy(update={"calls": True})
    m = FtraceModel(spec, policy=policy)
    first: dict = {}
    frontier = m.init_states()
    for w in frontier:
        first[m.key(w)] = (w, [])
    frontier = [(w, []) for w in frontier]
    merged = 0
    for _ in range(DEPTH.get(name, 7)):
        nxt = []
        for w, path in frontier:
            for a in m.actions(w):
                after, _, k = _step(m, w, a)
                if k not in first:
                    first[k] = (after, path + [str(a)])
                    nxt.append((after, path + [str(a)]))
                    continue
                other, other_path = first[k]
                if other_path == path + [str(a)]:
                    continue
                merged += 1
                # the same invariants hold (their messages may quote different WARNs of the past)
                assert _broken(after) == _broken(other), (path + [str(a)], other_path)
                for b in m.actions(after):
                    mine = _step(m, after, b)[1:]
                    theirs = _step(m, other, b)[1:]
                    assert mine == theirs, (f"{' ; '.join(path + [str(a)])} and {' ; '.join(other_path)} "
                                            f"share a key but '{b}' gives {mine[0]} and {theirs[0]}")
        frontier = nxt
    assert len(first) > 1
