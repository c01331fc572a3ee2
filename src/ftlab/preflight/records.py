"""enabled_functions as the machine shows it: one :class:`Record` per enabled function."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError


@dataclass
class Record:
    """One parsed enabled_functions record."""

    name: str
    module: str | None
    count: int
    flags: frozenset[str]                 # R, I, D (and later kernels' O, M)
    tramps: list[tuple[str, str]]         # (trampoline, ops func symbol)
    direct: str | None                    # direct--> target, %pS text
    raw: str

    @property
    def owner_funcs(self) -> list[str]:
        return [f for _, f in self.tramps]

    @property
    def qname(self) -> str:
        """The model's name of the function: ``module:name`` for a module's record."""
        return self.name if self.module is None else f"{self.module}:{self.name}"


_HEAD = re.compile(r"^(?P<name>\S+)(?: \[(?P<mod>[^\]]+)\])? \((?P<count>\d+)\)(?P<rest>.*)$")
_TRAMP = re.compile(r"tramp: (\S+)(?: \[[^\]]+\])? \((\S+?)(?: \[[^\]]+\])?\)")


def symbol_of(pS: str) -> str:
    return pS.split("+", 1)[0]


def parse_enabled_functions(text: str, where: str = "enabled_functions") -> list[Record]:
    """The records of an enabled_functions text (InputError for a malformed line)."""
    recs: list[Record] = []
    text = text.replace(" \tdirect-->", "\n\tdirect-->")  # a record as one line (ftlab run's changes)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("\t"):
            s = line.strip()
            if not recs:
                raise InputError(f"continuation line before any record: {s[:60]!r}", f"{where}:{lineno}")
            if s.startswith("direct-->"):
                recs[-1].direct = s[len("direct-->"):].strip()
            recs[-1].raw += "\n" + line
            continue
        m = _HEAD.match(line)
        if not m:
            raise InputError(f"not an enabled_functions record: {line[:60]!r}", f"{where}:{lineno}")
        rest = m.group("rest")
        cut = min([i for i in (rest.find("\t"), rest.find(" ->")) if i >= 0], default=len(rest))
        flags = frozenset(ch for ch in rest[:cut] if ch.isalpha())
        tramps = [(t, symbol_of(f)) for t, f in _TRAMP.findall(rest)]
        recs.append(Record(m.group("name"), m.group("mod"), int(m.group("count")), flags, tramps, None, line))
    return recs
