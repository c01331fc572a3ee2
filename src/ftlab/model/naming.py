"""How a state's canonical form spells the names its clients were given.

A client's name (a live patch ``p1``, a BPF program ``fx``, a kprobe's label, a direct-call
module, an ftrace_ops module) appears in the state as given, alone or inside a name the client
derives from it (the live patch's new function ``livepatch_p1:f``, the program ``fexit:fx``, the
ops ``direct[dm]``, the trampoline ``my_tramp1#dm``). Every ``key()`` of the model takes an
optional :data:`Rename` and spells each such name through it, in the place its owner knows it
is: so the key of a state under a renaming of its clients is computed on the typed state,
without ever reading a key as text. Symmetry reduction (the explorer's interchangeable clients)
picks, among the keys of a state under every renaming, one representative.
"""

from __future__ import annotations

from collections.abc import Callable

#: A renaming of client names: the name a key writes for each client name (others unchanged).
Rename = Callable[[str], str]


def same(name: str) -> str:
    """The identity renaming."""
    return name


def spell(nm: Rename | None, name: str) -> str:
    """``name`` as a key under ``nm`` writes it."""
    return name if nm is None else nm(name)
