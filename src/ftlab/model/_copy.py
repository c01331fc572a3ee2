"""A faster ``__deepcopy__`` for the model's plain state classes.

copy.deepcopy's generic path (``__reduce_ex__`` and ``_reconstruct``) dominates the cost of
copying a kernel state; the explorer copies one per transition. :func:`fast_deepcopy` copies an
object's ``__dict__`` field by field, sharing values of immutable types and deep-copying the rest
with the same memo (so shared references stay shared, as with the generic copy).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

_IMMUTABLE = (int, str, bool, float, type(None), frozenset, bytes)


def fast_deepcopy(self: Any, memo: dict) -> Any:
    """``__deepcopy__`` for a class whose state is its ``__dict__`` (dataclasses, frozen or not)."""
    cls = self.__class__
    new = cls.__new__(cls)
    memo[id(self)] = new
    d = new.__dict__
    for name, value in self.__dict__.items():
        d[name] = value if type(value) in _IMMUTABLE else deepcopy(value, memo)
    return new
