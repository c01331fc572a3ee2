"""Filter tokens: which records a word written to ``set_ftrace_filter`` / ``set_ftrace_notrace`` selects.

Kernel counterparts: kernel/trace/trace_events_filter.c: filter_parse_regex, lib/glob.c:
glob_match, and kernel/trace/ftrace.c: ftrace_process_regex, match_records, ftrace_match_record,
ftrace_match, add_rec_by_index (Linux 6.1.192). This module is pure: no I/O, no state but
memoised, read-only indexes of an immutable :class:`~ftlab.model.catalogue.Catalogue`.

Theory of operation
-------------------
A write to set_ftrace_filter is cut into whitespace-separated tokens (trace.c: trace_get_user;
here :func:`trace_get_user_tokens`). ftrace_process_regex splits each token at ``:``; a token
with a command (``func:mod:ext4``, ``func:traceon``...) goes to that command. Otherwise the
token goes to match_records, which lets :func:`filter_parse_regex` classify it:

============== ============= ========================================================
token          type          selects a record whose name ...
============== ============= ========================================================
``foo``        MATCH_FULL    is ``foo``
``foo*``       FRONT_ONLY    starts with ``foo``
``*foo``       END_ONLY      ends with ``foo``
``*foo*``      MIDDLE_ONLY   contains ``foo``
``f?o``, ...   MATCH_GLOB    matches the shell glob (a ``*`` elsewhere, or any ``[ ? \\``)
``12``         MATCH_INDEX   is record 12 of available_filter_functions (1-based)
============== ============= ========================================================

A leading ``!`` on any of these means "remove what it selects" (``clear_filter``): the selection
is the same, the caller removes instead of adding. Name matching skips DISABLED records (here the
``__ftrace_invalid_address___<n>`` records of discarded weak functions, whose kallsyms lookup
fails); an index token does not check DISABLED in 6.1 and selects such a record too. A token that
selects nothing makes the kernel fail the write with -EINVAL: :func:`match_records` then returns
an empty list and the caller returns ``-EINVAL``.

Bytes, not characters: the kernel compares bytes. A ``str`` here stands for its UTF-8 encoding
(``surrogateescape`` for bytes that are not UTF-8), so ``?`` matches one byte, as in the kernel.
All names of a real catalogue are ASCII, where the two views coincide.

Known deviation: lib/glob.c lets an inverted class (``[!a]``) match the string's terminating NUL
and then reads past the end of the name buffer, so the outcome depends on stale stack bytes. The
model, like fnmatch(3), never lets a class match past the end of the name.

Speed: :func:`match_records` uses ``str`` methods and a regular expression translated from the
glob (:func:`glob_to_regex`, equivalent to :func:`glob_match`), run over a per-catalogue table of
the selectable names; ``*`` or a prefix over the 38,252-record catalogue takes a few milliseconds.
:func:`ftrace_match` and :func:`glob_match` are the literal, slow, per-name counterparts.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress, repeat
from typing import TYPE_CHECKING, NamedTuple

from ..errors import InputError

if TYPE_CHECKING:
    from .catalogue import Catalogue

__all__ = [
    "FTRACE_BUFF_MAX",
    "FTRACE_FUNC_COMMANDS",
    "FtraceGlob",
    "KSYM_SYMBOL_LEN",
    "RegexType",
    "Selection",
    "add_rec_by_index",
    "filter_parse_regex",
    "ftrace_match",
    "ftrace_match_record",
    "glob_match",
    "glob_to_regex",
    "match_records",
    "simple_strtoul",
    "trace_get_user_tokens",
]

#: include/linux/kallsyms.h: KSYM_SYMBOL_LEN on x86_64 6.1 (name 511 + module 55 + build id 40 + format).
KSYM_SYMBOL_LEN = 666
#: ftrace.c: FTRACE_BUFF_MAX, the size of the tracefs token buffer (a token holds at most 669 bytes).
FTRACE_BUFF_MAX = KSYM_SYMBOL_LEN + 4

#: Commands registered with register_ftrace_command in the Debian 6.1 build (ftrace.c: mod;
#: trace_functions.c: traceon traceoff stacktrace dump cpudump; trace.c: snapshot;
#: trace_events.c: enable_event disable_event). ftlab models none of them.
FTRACE_FUNC_COMMANDS = frozenset({
    "mod", "traceon", "traceoff", "stacktrace", "dump", "cpudump", "snapshot",
    "enable_event", "disable_event",
})

#: Bytes lib/ctype.c classes as space (isspace): HT LF VT FF CR, space and 0xA0 (Latin-1 NBSP).
_KERNEL_SPACE = frozenset(b"\t\n\v\f\r \xa0")
_ULONG_MASK = (1 << 64) - 1


class RegexType(enum.IntEnum):
    """kernel/trace/trace.h: enum regex_type (values as in the kernel)."""

    MATCH_FULL = 0
    MATCH_FRONT_ONLY = 1
    MATCH_MIDDLE_ONLY = 2
    MATCH_END_ONLY = 3
    MATCH_GLOB = 4
    MATCH_INDEX = 5


@dataclass(frozen=True, slots=True)
class FtraceGlob:
    """ftrace.c: struct ftrace_glob -- the search string and how to compare it."""

    search: str
    type: RegexType

    @property
    def len(self) -> int:
        """Length of ``search`` in bytes (the kernel's ``len`` field)."""
        return len(_kstr(self.search))


class Selection(NamedTuple):
    """What one token selects: ``negate`` (a leading ``!``: remove) and record indices in record order."""

    negate: bool
    indices: list[int]


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------
def filter_parse_regex(buff: str) -> tuple[RegexType, str, bool]:
    """kernel/trace/trace_events_filter.c: filter_parse_regex -- classify a token: (type, search, not)."""
    negate = buff.startswith("!")
    if negate:
        buff = buff[1:]
    if buff[:1].isascii() and buff[:1].isdigit():
        return RegexType.MATCH_INDEX, buff, negate
    rtype = RegexType.MATCH_FULL
    last = len(buff) - 1
    for i, ch in enumerate(buff):
        if ch == "*":
            if i == 0:
                rtype = RegexType.MATCH_END_ONLY
            elif i == last:
                rtype = (RegexType.MATCH_MIDDLE_ONLY if rtype is RegexType.MATCH_END_ONLY
                         else RegexType.MATCH_FRONT_ONLY)
                buff = buff[:i]  # the kernel writes a NUL over the trailing '*'
                break
            else:
                return RegexType.MATCH_GLOB, buff, negate
        elif ch in "[?\\":
            return RegexType.MATCH_GLOB, buff, negate
    if buff.startswith("*"):
        buff = buff[1:]
    return rtype, buff, negate


def simple_strtoul(cp: str, base: int = 0) -> int:
    """lib/vsprintf.c: simple_strtoul -- leading digits of ``cp``; base 0 takes ``0x`` hex / ``0`` octal."""
    if base == 0:
        if cp[:1] == "0":
            base = 16 if cp[1:2] in ("x", "X") and _isxdigit(cp[2:3]) else 8
        else:
            base = 10
    if base == 16 and cp[:2] in ("0x", "0X"):
        cp = cp[2:]
    result = 0
    for ch in cp:
        if "0" <= ch <= "9":
            val = ord(ch) - ord("0")
        elif "a" <= ch.lower() <= "f" and ch.isascii():
            val = ord(ch.lower()) - ord("a") + 10
        else:
            break
        if val >= base:
            break
        result = (result * base + val) & _ULONG_MASK  # wraps like the kernel's unsigned long long
    return result


def trace_get_user_tokens(text: str) -> list[str]:
    """kernel/trace/trace.c: trace_get_user -- the tokens one write to a filter file is cut into.

    Tokens are separated by the bytes the kernel's isspace() accepts (including 0xA0) and by NUL.
    Raises :class:`InputError` for a token longer than the kernel's buffer (the write fails with
    -EINVAL).
    """
    raw = text.encode("utf-8", "surrogateescape")
    tokens: list[str] = []
    start = None
    for pos in range(len(raw) + 1):
        sep = pos == len(raw) or raw[pos] in _KERNEL_SPACE or raw[pos] == 0
        if sep and start is not None:
            tok = raw[start:pos]
            if len(tok) > FTRACE_BUFF_MAX - 1:
                raise InputError(f"token of {len(tok)} bytes; the kernel's limit is "
                                 f"{FTRACE_BUFF_MAX - 1} (-EINVAL)")
            tokens.append(tok.decode("utf-8", "surrogateescape"))
            start = None
        elif not sep and start is None:
            start = pos
    return tokens


# ---------------------------------------------------------------------------------------------
# Matching one name (literal ports)
# ---------------------------------------------------------------------------------------------
def glob_match(pat: str, s: str) -> bool:
    """lib/glob.c: glob_match -- shell glob ``pat`` (``? * [...] [!...] \\``) matches all of ``s``.

    A ``[`` without a well-formed class is a literal ``[``; ranges ``a-b`` with ``a > b`` are
    empty; there are no escapes inside a class. See the module docstring for the one deviation
    (an inverted class never matches past the end of ``s``).
    """
    p, t = _kstr(pat), _kstr(s)
    lp, lt = len(p), len(t)
    pi = si = 0
    back_pat: int | None = None
    back_str = 0
    while True:
        c = t[si] if si < lt else ""  # "" stands for the terminating NUL
        d = p[pi] if pi < lp else ""
        pi += 1
        si += 1
        literal = False
        if d == "?":
            if c == "":
                return False
            continue
        if d == "*":
            if pi >= lp:
                return True  # trailing '*' matches the rest
            back_pat = pi
            si -= 1
            back_str = si  # allow a zero-length match
            continue
        if d == "[":
            parsed = _parse_class(p, pi)
            if parsed is None:
                literal = True  # malformed class: '[' is an ordinary character
            else:
                spans, inverted, end = parsed
                matched = c != "" and any(a <= c <= b for a, b in spans)
                if c != "" and matched != inverted:
                    pi = end
                    continue
                # mismatch: fall through to backtrack
        else:
            if d == "\\":
                d = p[pi] if pi < lp else ""
                pi += 1
            literal = True
        if literal and c == d:
            if d == "":
                return True
            continue
        # backtrack to the last '*', one character further into s
        if c == "" or back_pat is None:
            return False
        pi = back_pat
        back_str += 1
        si = back_str


def ftrace_match(name: str, g: FtraceGlob) -> bool:
    """kernel/trace/ftrace.c: ftrace_match -- does ``name`` match the parsed token ``g``?"""
    if g.type is RegexType.MATCH_FULL:
        return name == g.search
    if g.type is RegexType.MATCH_FRONT_ONLY:
        return _kstr(name).startswith(_kstr(g.search))
    if g.type is RegexType.MATCH_MIDDLE_ONLY:
        return _kstr(g.search) in _kstr(name)
    if g.type is RegexType.MATCH_END_ONLY:
        return _kstr(name).endswith(_kstr(g.search))
    if g.type is RegexType.MATCH_GLOB:
        return glob_match(g.search, name)
    return False  # MATCH_INDEX: only a ':mod:' module name that starts with a digit gets here; no match


def ftrace_match_record(catalogue: Catalogue, index: int, func_g: FtraceGlob) -> bool:
    """kernel/trace/ftrace.c: ftrace_match_record -- does record ``index`` match (no ``:mod:`` part)?

    The kernel looks the name up in kallsyms; for a discarded weak function that lookup fails
    (offset past FTRACE_MCOUNT_MAX_OFFSET) and the record never matches by name.
    """
    if index in catalogue.invalid:
        return False
    return ftrace_match(catalogue.names[index], func_g)


def ftrace_mod_callback(catalogue: Catalogue, token: str, func: str, module: str) -> Selection:
    """kernel/trace/ftrace.c: ftrace_mod_callback -- what ``func:mod:module`` selects (tracefs only).

    match_records with a module glob: ``module`` may be a glob, ``!module`` every object but
    those, an empty module every module, an empty ``func`` every function of the module(s).
    Nothing selected: cache_mod answers -EINVAL (empty selection) for a ``!func``, or for a module
    that is loaded (one with records in the catalogue); for a module that is not loaded the
    kernel keeps the filter and applies it when the module loads, which is not modelled
    (:class:`InputError`).
    """
    if not module:
        raise InputError(f"{token!r}: ':mod:' needs a module name", None)
    rtype, search, negate = filter_parse_regex(func)
    func_g = FtraceGlob(search, rtype)
    if rtype is RegexType.MATCH_INDEX:
        found = add_rec_by_index(catalogue, func_g)
    else:
        mtype, msearch, exclude_mod = filter_parse_regex(module)
        mod_g = FtraceGlob(msearch, mtype)
        found = []
        for i in range(len(catalogue)):
            if i in catalogue.invalid:
                continue
            modname = catalogue.module_of(i)
            if not msearch:
                if (not exclude_mod) == (modname is None):
                    continue
            elif (modname is not None and ftrace_match(modname, mod_g)) == exclude_mod:
                continue
            if not search or ftrace_match(catalogue.names[i], func_g):
                found.append(i)
    if not found and not negate and module not in set(catalogue.modules or ()):
        raise InputError(f"{token!r}: module {module!r} is not loaded; the kernel would keep the filter "
                         "until it loads, which ftlab does not model", None)
    return Selection(negate, found)


def add_rec_by_index(catalogue: Catalogue, func_g: FtraceGlob) -> list[int]:
    """kernel/trace/ftrace.c: add_rec_by_index -- the record a 1-based index token names, if any.

    The number is read like simple_strtoul(search, NULL, 0) (``0x1f`` hex, ``017`` octal, trailing
    junk ignored) into a signed long; 0, negative or past the last record selects nothing. 6.1
    does not skip DISABLED records here, so an index can select an invalid record.
    """
    value = simple_strtoul(func_g.search, 0)
    index = value - (1 << 64) if value >= 1 << 63 else value  # long index = unsigned long
    index -= 1
    if index < 0 or index >= len(catalogue):
        return []
    return [index]


# ---------------------------------------------------------------------------------------------
# Matching a whole catalogue (fast)
# ---------------------------------------------------------------------------------------------
def match_records(catalogue: Catalogue, token: str) -> Selection:
    """kernel/trace/ftrace.c: match_records (as reached from ftrace_process_regex) -- what ``token`` selects.

    Returns ``Selection(negate, indices)``: ``negate`` is True for a leading ``!`` (remove the
    records instead of adding them), ``indices`` are record indices in record order (empty: the
    kernel fails the write with -EINVAL). A ``:mod:`` token goes to :func:`ftrace_mod_callback`;
    a function-probe command (``func:traceon`` ...) raises :class:`InputError` (not modelled); an
    unknown command selects nothing (-EINVAL in the kernel). ``token`` is one token as passed by the kernel: it is not
    split at whitespace (see :func:`trace_get_user_tokens`) and it ends at a NUL.
    """
    token = token.partition("\0")[0]
    func, colon, rest = token.partition(":")
    if colon:
        command, _, param = rest.partition(":")
        if command == "mod":
            return ftrace_mod_callback(catalogue, token, func, param)
        if command in FTRACE_FUNC_COMMANDS:
            raise InputError(f"{token!r}: the function-probe command {command!r} is not supported "
                             "by ftlab")
        return Selection(func.startswith("!"), [])  # no such command: -EINVAL
    rtype, search, negate = filter_parse_regex(func)
    func_g = FtraceGlob(search, rtype)
    if rtype is RegexType.MATCH_INDEX:
        return Selection(negate, add_rec_by_index(catalogue, func_g))
    if rtype is RegexType.MATCH_FULL:
        invalid = catalogue.invalid
        return Selection(negate, [i for i in catalogue.indices(search) if i not in invalid])
    view = catalogue.derived("glob.view", _NameView.build)
    key = _kstr(search)
    if not key and rtype is not RegexType.MATCH_GLOB:
        return Selection(negate, list(view.indices))  # '*', '**': every selectable record
    names = view.names
    hits: Iterable[object]
    if rtype is RegexType.MATCH_FRONT_ONLY:
        hits = map(str.startswith, names, repeat(key))
    elif rtype is RegexType.MATCH_END_ONLY:
        hits = map(str.endswith, names, repeat(key))
    elif rtype is RegexType.MATCH_MIDDLE_ONLY:
        hits = map(str.__contains__, names, repeat(key))
    else:
        hits = map(_compiled_glob(key).fullmatch, names)
    return Selection(negate, list(compress(view.indices, hits)))


def glob_to_regex(pat: str) -> str:
    """A Python regex (for ``re.fullmatch`` with DOTALL) accepting exactly what lib/glob.c: glob_match accepts.

    ``pat`` and the names it is used on are in the byte form of :func:`_kstr`. Between two ``*``
    every element matches exactly one byte, so the pattern is fixed-length segments joined by
    ``*``; matching each inner segment at its leftmost place and never reconsidering it (an atomic
    group) accepts the same names as trying every split, and keeps the work linear in the name's
    length for a given pattern, as the kernel's matcher, which backtracks only to the last ``*``.
    """
    segments: list[list[str]] = [[]]
    n = len(pat)
    i = 0
    while i < n:
        d = pat[i]
        i += 1
        if d == "?":
            segments[-1].append(".")
        elif d == "*":
            segments.append([])
        elif d == "[":
            parsed = _parse_class(pat, i)
            if parsed is None:
                segments[-1].append(re.escape("["))
            else:
                spans, inverted, i = parsed
                segments[-1].append(_class_regex(spans, inverted))
        elif d == "\\":
            if i < n:
                segments[-1].append(re.escape(pat[i]))
                i += 1
            # a trailing '\' matches only the end of the string, which fullmatch requires anyway
        else:
            segments[-1].append(re.escape(d))
    parts = ["".join(seg) for seg in segments]
    if len(parts) == 1:  # no '*': the elements, one byte each
        return parts[0]
    first, *inner, last = parts
    return first + "".join(f"(?>.*?{seg})" for seg in inner if seg) + ".*" + last


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _NameView:
    """The records name matching can select (not DISABLED) and their names in byte form."""

    indices: tuple[int, ...]
    names: tuple[str, ...]

    @staticmethod
    def build(catalogue: Catalogue) -> _NameView:
        invalid = catalogue.invalid
        indices = tuple(i for i in range(len(catalogue)) if i not in invalid)
        names = tuple(_kstr(catalogue.names[i]) for i in indices)
        return _NameView(indices, names)


def _kstr(s: str) -> str:
    """``s`` as the kernel sees it: its UTF-8 bytes, one character per byte (Latin-1)."""
    if s.isascii():
        return s
    return s.encode("utf-8", "surrogateescape").decode("latin-1")


def _isxdigit(ch: str) -> bool:
    return len(ch) == 1 and ch in "0123456789abcdefABCDEF"


def _parse_class(p: str, i: int) -> tuple[list[tuple[str, str]], bool, int] | None:
    """Parse a ``[...]`` class whose body starts at ``p[i]`` as lib/glob.c does.

    Returns (spans, inverted, index after ``]``), or None when malformed (no closing ``]``, or a
    range running into the end), in which case the ``[`` is a literal.
    """
    n = len(p)

    def at(k: int) -> str:
        return p[k] if k < n else ""

    inverted = at(i) == "!"
    j = i + inverted
    spans: list[tuple[str, str]] = []
    a = at(j)
    j += 1
    while True:
        if a == "":
            return None
        b = a
        if at(j) == "-" and at(j + 1) != "]":
            b = at(j + 1)
            if b == "":
                return None
            j += 2
        spans.append((a, b))
        a = at(j)
        j += 1
        if a == "]":
            return spans, inverted, j


def _class_regex(spans: list[tuple[str, str]], inverted: bool) -> str:
    """Regex for a parsed class; reversed ranges (``a > b``) are empty, as in lib/glob.c."""
    parts = [_re_char(a) if a == b else f"{_re_char(a)}-{_re_char(b)}" for a, b in spans if a <= b]
    if not parts:
        return "." if inverted else "(?!)"
    return f"[{'^' if inverted else ''}{''.join(parts)}]"


def _re_char(ch: str) -> str:
    """``ch`` as an escape that means the same inside and outside a regex class."""
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\U{code:08x}"


@functools.lru_cache(maxsize=256)
def _compiled_glob(pat: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(pat), re.DOTALL)
