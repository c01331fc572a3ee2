"""Fast deep copies of the model's state (the explorer copies one kernel state per transition).

:func:`clone` is ``copy.deepcopy`` for the types a kernel state is made of: values of immutable
types are shared, lists, dicts, sets and tuples are rebuilt element by element, and objects with
a ``__deepcopy__`` method are asked directly, all with one ``memo`` so that shared references stay
shared (two ops that share one ftrace_ops_hash still share the copy). Anything else goes to
``copy.deepcopy`` with the same memo. It skips ``copy.deepcopy``'s dispatch, which dominated the
cost of a state copy.

:func:`fast_deepcopy` is a ``__deepcopy__`` for plain state classes: it copies an object's
``__dict__`` field by field with :func:`clone`.
"""

from __future__ import annotations

import types
from copy import deepcopy
from typing import Any

_IMMUTABLE = frozenset({int, str, bool, float, type(None), frozenset, bytes, types.FunctionType,
                        types.BuiltinFunctionType, type})


def clone(x: Any, memo: dict[int, Any]) -> Any:
    """A deep copy of ``x`` (see the module docstring); ``memo`` maps ``id(original)`` to its copy."""
    cls = type(x)
    if cls in _IMMUTABLE:
        return x
    y = memo.get(id(x))
    if y is not None:
        return y
    if cls is list:
        y = []
        memo[id(x)] = y
        y.extend([v if type(v) in _IMMUTABLE else clone(v, memo) for v in x])
        return y
    if cls is dict:
        y = {}
        memo[id(x)] = y
        for key, v in x.items():
            y[key if type(key) in _IMMUTABLE else clone(key, memo)] = v if type(v) in _IMMUTABLE else clone(v, memo)
        return y
    if cls is set:
        y = {v if type(v) in _IMMUTABLE else clone(v, memo) for v in x}
        memo[id(x)] = y
        return y
    if cls is tuple:
        y = tuple([v if type(v) in _IMMUTABLE else clone(v, memo) for v in x])
        return x if all(a is b for a, b in zip(x, y)) else y
    copier = getattr(cls, "__deepcopy__", None)
    if copier is not None:
        return copier(x, memo)
    return deepcopy(x, memo)


def fast_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
    """``__deepcopy__`` for a class whose state is its ``__dict__`` (dataclasses, frozen or not)."""
    cls = self.__class__
    new = cls.__new__(cls)
    memo[id(self)] = new
    d = new.__dict__
    for name, value in self.__dict__.items():
        d[name] = value if type(value) in _IMMUTABLE else clone(value, memo)
    return new
