"""ftrace_hash and ftrace_ops_hash: the sets of call-site addresses an ops traces.

Kernel source: kernel/trace/ftrace.c (struct ftrace_hash, EMPTY_HASH, ftrace_hash_empty,
ftrace_lookup_ip, __ftrace_lookup_ip, hash_contains_ip) and include/linux/ftrace.h
(struct ftrace_ops_hash). Policy-independent.

The kernel replaces a live hash by building a new one and swapping the pointer
(ftrace_hash_move); the model does the same with immutable :class:`ftrace_hash` values, so a
state copy never aliases a hash that is later mutated. ``None`` stands for the kernel's NULL hash
("all functions", as passed by ftrace_hash_ipmodify_enable for an empty filter).

Iteration order: the kernel walks a hash bucket by bucket, an order that depends on real
addresses; the model iterates in record (address) order, which is the only order that is
meaningful for synthetic addresses. No modelled result depends on it except the order in which
prepare_direct_functions_for_ipmodify visits several ips, which the docs of that function note.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


class ftrace_hash:
    """struct ftrace_hash (kernel/trace/ftrace.c): an immutable set of ips."""

    __slots__ = ("ips", "_sorted")

    def __init__(self, ips: Iterable[int] = ()) -> None:
        self.ips: frozenset[int] = frozenset(ips)
        self._sorted: tuple[int, ...] | None = None

    @property
    def count(self) -> int:
        """hash->count."""
        return len(self.ips)

    def __iter__(self) -> Iterator[int]:
        """Entries in record (address) order."""
        if self._sorted is None:
            self._sorted = tuple(sorted(self.ips))
        return iter(self._sorted)

    def __contains__(self, ip: object) -> bool:
        return ip in self.ips

    def __len__(self) -> int:
        return len(self.ips)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ftrace_hash) and other.ips == self.ips

    def __hash__(self) -> int:
        return hash(self.ips)

    def __repr__(self) -> str:
        return "EMPTY_HASH" if not self.ips else f"ftrace_hash({len(self.ips)} ips)"

    def __deepcopy__(self, memo: dict[int, Any]) -> ftrace_hash:
        return self  # immutable

    def __copy__(self) -> ftrace_hash:
        return self


#: EMPTY_HASH (kernel/trace/ftrace.c): the shared empty hash.
EMPTY_HASH = ftrace_hash()


def ftrace_hash_empty(hash: ftrace_hash | None) -> bool:
    """ftrace_hash_empty() (ftrace.c): NULL or no entries."""
    return hash is None or not hash.ips


def ftrace_lookup_ip(hash: ftrace_hash | None, ip: int) -> bool:
    """ftrace_lookup_ip() (ftrace.c): is ``ip`` in ``hash`` (False for an empty or NULL hash)."""
    return hash is not None and ip in hash.ips


#: __ftrace_lookup_ip() (ftrace.c) has the same meaning for a non-NULL hash.
__ftrace_lookup_ip = ftrace_lookup_ip


class ftrace_ops_hash:
    """struct ftrace_ops_hash (include/linux/ftrace.h): filter + notrace hashes and regex_lock.

    Both hashes start NULL (``None``), as in a zeroed ops; ftrace_hash_empty() treats NULL as empty.

    ``regex_lock`` is the name of this hash's mutex in the kernel's lock table. Several ops can
    share one ftrace_ops_hash object (the kernel's tmp_ops borrows a direct ops' func_hash).
    """

    __slots__ = ("filter_hash", "notrace_hash", "regex_lock")

    def __init__(self, regex_lock: str, filter_hash: ftrace_hash | None = None,
                 notrace_hash: ftrace_hash | None = None) -> None:
        self.filter_hash = filter_hash
        self.notrace_hash = notrace_hash
        self.regex_lock = regex_lock

    def __deepcopy__(self, memo: dict[int, Any]) -> ftrace_ops_hash:
        new = ftrace_ops_hash(self.regex_lock, self.filter_hash, self.notrace_hash)  # hashes are immutable
        memo[id(self)] = new
        return new

    def key(self) -> tuple[Any, ...]:
        """Hashable value of this object (for canonical state forms)."""
        f = self.filter_hash.ips if self.filter_hash is not None else None
        n = self.notrace_hash.ips if self.notrace_hash is not None else None
        return (f, n)


def hash_contains_ip(ip: int, hash: ftrace_ops_hash) -> bool:
    """hash_contains_ip() (ftrace.c): in the filter (or filter empty) and not in notrace."""
    return ((ftrace_hash_empty(hash.filter_hash) or ip in hash.filter_hash.ips)  # type: ignore[union-attr]
            and (ftrace_hash_empty(hash.notrace_hash) or ip not in hash.notrace_hash.ips))  # type: ignore[union-attr]
