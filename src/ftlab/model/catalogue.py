"""The kernel's function catalogue: one record per traceable call site, in record order.

Kernel counterpart: the ftrace_pages built by ftrace_process_locs() from the __mcount_loc section,
as listed by tracefs ``available_filter_functions`` (kernel/trace/ftrace.c: t_show). Each record
gets a stable synthetic address, ascending in record order, so ``ip`` <-> record index is O(1).
Duplicate names (static functions of one name in several files) stay distinct records;
``__ftrace_invalid_address___<n>`` records (discarded weak functions) are kept and are DISABLED.

Records of loaded modules (``name [module]`` lines, listed after vmlinux's) keep their module.
A module function is named ``module:name`` where a name must pick one object, as kallsyms
(module_kallsyms_lookup_name) and kprobe_events do; a plain name means vmlinux's function when
vmlinux has one (klp_object with a NULL name, vmlinux BTF first), else a module's. Filters match
plain names in every object (ftrace_match_record compares the symbol only).

The model takes records: a catalogue is built from names (:meth:`Catalogue.synthetic`) or from
a file's text (:meth:`Catalogue.from_text`); reading files, and the catalogues shipped with
ftlab, are the shell's (:mod:`ftlab.catalogues`).

Two facts per record can come with the names, where a kernel's data were measured (the shell
hands them over; a catalogue without them has neither):

* ``fentry_offsets``: where the record (its ``__fentry__`` call site, rec->ip) sits in its
  function: 0, or 4 after an ``endbr64`` (x86 IBT, Debian's 6.12): what %pS of rec->ip prints
  (``func+0x4``), and where a kprobe on the function or a BPF program's orig_call lands;
* ``func_models``: its function's BTF model as btf_distill_func_proto makes it (per argument its
  size in bytes and whether it is a struct), None where the function has none a trampoline can use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from ..errors import InputError, ModelError
from .glob import match_records  # glob.py imports Catalogue only for type hints

_T = TypeVar("_T")

#: A function's BTF model (struct btf_func_model as btf_distill_func_proto fills it, include/linux/bpf.h):
#: per argument, its size in bytes and whether it is a struct (BTF_FMODEL_STRUCT_ARG).
FuncModel = tuple[tuple[int, bool], ...]

#: First synthetic address (x86_64 kernel text starts at 0xffffffff81000000).
IP_BASE = 0xFFFFFFFF81000000
#: Distance between two synthetic record addresses.
IP_STRIDE = 0x40
#: Prefix of records of discarded weak functions (kernel/trace/ftrace.c: FTRACE_INVALID_FUNCTION).
INVALID_PREFIX = "__ftrace_invalid_address___"


class Catalogue:
    """An immutable list of traceable functions (records) with synthetic addresses."""

    __slots__ = ("source", "names", "modules", "_by_name", "_scope", "invalid", "_derived", "fentry_offsets",
                 "func_models", "__weakref__")

    def __init__(self, names: Sequence[str], source: str = "<synthetic>",
                 modules: Sequence[str | None] | None = None, *,
                 fentry_offsets: Sequence[int] | None = None,
                 func_models: Sequence[FuncModel | None] | None = None) -> None:
        self.source = source
        self.names: tuple[str, ...] = tuple(names)
        for what, col in (("fentry_offsets", fentry_offsets), ("func_models", func_models)):
            if col is not None and len(col) != len(self.names):
                raise ModelError(f"Catalogue: {what} has {len(col)} entries for {len(self.names)} records")
        #: per record: the offset of its call site from its function's symbol (None: all 0)
        self.fentry_offsets: tuple[int, ...] | None = tuple(fentry_offsets) if fentry_offsets is not None else None
        #: per record: its function's BTF model (None: not known for any record)
        self.func_models: tuple[FuncModel | None, ...] | None = (tuple(func_models) if func_models is not None
                                                                  else None)
        #: the module of each record (None: vmlinux); None when every record is vmlinux's
        self.modules: tuple[str | None, ...] | None = None
        if modules is not None and any(m is not None for m in modules):
            if len(modules) != len(self.names):
                raise ModelError("Catalogue: names and modules differ in length")
            self.modules = tuple(modules)
        by_name: dict[str, list[int]] = {}
        for i, n in enumerate(self.names):
            by_name.setdefault(n, []).append(i)
        #: records by plain name, every object (filters, kallsyms order) and by ``module:name``
        self._by_name = {n: tuple(v) for n, v in by_name.items()}
        #: plain names whose records are not all vmlinux's: the records a plain name picks
        self._scope: dict[str, tuple[int, ...]] = {}
        if self.modules is not None:
            mods = self.modules
            qualified: dict[str, list[int]] = {}
            for i, (n, m) in enumerate(zip(self.names, mods)):
                if m is not None:
                    qualified.setdefault(f"{m}:{n}", []).append(i)
            for n, idx in self._by_name.items():
                vml = tuple(i for i in idx if mods[i] is None)
                if len(vml) != len(idx):
                    self._scope[n] = vml or idx
            self._by_name.update((q, tuple(v)) for q, v in qualified.items())
        self.invalid = frozenset(i for i, n in enumerate(self.names) if n.startswith(INVALID_PREFIX))
        self._derived: dict[str, object] = {}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def synthetic(cls, names: Iterable[str]) -> Catalogue:
        """A small catalogue for tests: the given names in the given order; ``name [module]``
        is a module's function, as in available_filter_functions."""
        names = list(names)
        if not names:
            raise InputError("a catalogue needs at least one function")
        plain: list[str] = []
        modules: list[str | None] = []
        for n in names:
            head, sep, tail = n.partition(" [")
            if sep and tail.endswith("]") and " " not in head and tail[:-1] and _is_symbol(tail[:-1]):
                plain.append(head)
                modules.append(tail[:-1])
            else:
                plain.append(n)
                modules.append(None)
        return cls(plain, "<synthetic>", modules)

    @classmethod
    def from_text(cls, text: str, source: str) -> Catalogue:
        """Parse the text of an ``available_filter_functions`` file (one name per line).

        Lines of modules (``name [module]``) keep their module. Raises :class:`InputError` naming
        ``source:line`` for a malformed line, and for an empty file.
        """
        names: list[str] = []
        modules: list[str | None] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s:
                continue
            parts = s.split()
            mod = None
            if len(parts) == 2 and parts[1].startswith("[") and parts[1].endswith("]"):
                mod = parts[1][1:-1]
                if not mod or not _is_symbol(mod):
                    raise InputError(f"not a module name: {parts[1][:60]!r}", f"{source}:{lineno}")
                parts = parts[:1]
            if len(parts) != 1 or not _is_symbol(parts[0]):
                raise InputError(f"not a function name: {s[:60]!r}", f"{source}:{lineno}")
            names.append(parts[0])
            modules.append(mod)
        if not names:
            raise InputError("empty catalogue (no function names)", source)
        return cls(names, source, modules)

    # -- records -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Catalogue({self.source!r}, {len(self.names)} records)"

    # Immutable: copies share it (a deep copy of a kernel state must not copy 38,252 records).
    def __copy__(self) -> Catalogue:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Catalogue:
        return self

    def ip(self, index: int) -> int:
        """Synthetic address of record ``index``."""
        return IP_BASE + index * IP_STRIDE

    def index(self, ip: int) -> int | None:
        """Record index of ``ip``, or None when ``ip`` is not a call site (ftrace_location)."""
        off = ip - IP_BASE
        if off < 0 or off % IP_STRIDE:
            return None
        i = off // IP_STRIDE
        return i if i < len(self.names) else None

    def name_of_ip(self, ip: int) -> str:
        """Name of the record at ``ip`` (caller guarantees ``ip`` is a call site), without its module."""
        return self.names[(ip - IP_BASE) // IP_STRIDE]

    def fentry_offset(self, index: int) -> int:
        """How far record ``index``'s call site is from its function's symbol (4 after an endbr64)."""
        return 0 if self.fentry_offsets is None else self.fentry_offsets[index]

    def sym_off_of_ip(self, ip: int) -> str:
        """``name+0x<off>``: a record's call site as %pS names it, without the size (``off`` is
        :meth:`fentry_offset`; the model knows no function sizes)."""
        i = (ip - IP_BASE) // IP_STRIDE
        return f"{self.names[i]}+0x{self.fentry_offset(i):x}"

    def func_model(self, index: int) -> FuncModel | None:
        """The BTF model of record ``index``'s function, if known (see the module docstring)."""
        return None if self.func_models is None else self.func_models[index]

    def module_of(self, index: int) -> str | None:
        """The module of record ``index`` (None: vmlinux)."""
        return None if self.modules is None else self.modules[index]

    def qualified_name_of_ip(self, ip: int) -> str:
        """``module:name`` for a module's record, the plain name for vmlinux's: the name that
        :meth:`lookup` resolves back to this record's object."""
        i = (ip - IP_BASE) // IP_STRIDE
        m = None if self.modules is None else self.modules[i]
        return self.names[i] if m is None else f"{m}:{self.names[i]}"

    def sym_of_ip(self, ip: int) -> str:
        """The symbol as %ps prints it (kallsyms): ``name`` or ``name [module]``."""
        i = (ip - IP_BASE) // IP_STRIDE
        m = None if self.modules is None else self.modules[i]
        return self.names[i] if m is None else f"{self.names[i]} [{m}]"

    def indices(self, name: str) -> tuple[int, ...]:
        """Records named ``name`` in record order (several for duplicated static functions):
        a plain name's in every object (vmlinux's first), ``module:name``'s in that module."""
        return self._by_name.get(name, ())

    def scope_indices(self, name: str) -> tuple[int, ...]:
        """The records :meth:`lookup` picks among (``sympos`` counts in them): ``module:name``'s in
        that module; a plain name's in vmlinux when vmlinux has one, else in every module."""
        got = self._scope.get(name)
        return got if got is not None else self._by_name.get(name, ())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def object_indices(self, name: str, module: str | None) -> tuple[int, ...]:
        """Records of the plain ``name`` in one object: ``module``'s, or vmlinux's (None)."""
        if module is not None:
            return self._by_name.get(f"{module}:{name}", ())
        idx = self._by_name.get(name, ())
        return idx if self.modules is None else tuple(i for i in idx if self.modules[i] is None)

    def unknown_function(self, name: str, where: str | None = None) -> str:
        """The error for a name that names no function of its object (vmlinux for a plain name);
        ``where`` names the catalogue (default: ``catalogue <source>``)."""
        mods = sorted({m for i in self._by_name.get(name, ()) if (m := self.module_of(i)) is not None})
        if mods and ":" not in name:
            return (f"function {name!r} is not in vmlinux; module {', '.join(mods)} has it: "
                    f"write {mods[0]}:{name}")
        return f"unknown function {name!r} (not in {where or f'catalogue {self.source}'})"

    def lookup(self, name: str, sympos: int = 0, where: str | None = None) -> int:
        """The ip of function ``name``; ``sympos`` (1-based, 0 = the only one) picks a duplicate.

        Mirrors klp_find_object_symbol's rule: with sympos 0 the name must be unique in its object
        (:meth:`scope_indices`). Raises :class:`InputError` for an unknown name or an ambiguous /
        out-of-range sympos.
        """
        idx = self.scope_indices(name)
        if not idx:
            raise InputError(self.unknown_function(name), where)
        if sympos == 0:
            if len(idx) > 1:
                mods = sorted({m for i in idx if (m := self.module_of(i)) is not None})
                hint = f", or name one module: {', '.join(f'{m}:{name}' for m in mods)}" if len(mods) > 1 else ""
                raise InputError(f"function {name!r} occurs {len(idx)} times; give old_sympos 1..{len(idx)}{hint}",
                                 where)
            return self.ip(idx[0])
        if not 1 <= sympos <= len(idx):
            raise InputError(f"function {name!r} has {len(idx)} occurrence(s); sympos {sympos} is out of range",
                             where)
        return self.ip(idx[sympos - 1])

    def unique_names(self) -> int:
        """Number of distinct names (a name in several objects counts once)."""
        return sum(1 for n in self._by_name if ":" not in n)

    def duplicate_names(self) -> int:
        """Number of names that occur more than once (each counted once)."""
        return sum(1 for n, v in self._by_name.items() if len(v) > 1 and ":" not in n)

    # -- filter tokens -------------------------------------------------------------------------
    def match(self, token: str) -> list[int]:
        """Record indices (record order) that a set_ftrace_filter token selects.

        Delegates to :func:`ftlab.model.glob.match_records` (kernel/trace/ftrace.c: match_records);
        see there for the token syntax. An empty list means the kernel fails the write with
        -EINVAL. A token starting with ``!`` *removes* records, so this method, which returns a
        plain selection, refuses it with :class:`~ftlab.errors.ModelError` (a caller bug): use
        ``match_records(catalogue, token)``, which returns ``(negate, indices)``. A ``:mod:`` or
        function-probe command raises :class:`~ftlab.errors.InputError`.
        """
        negate, indices = match_records(self, token)
        if negate:
            raise ModelError(f"Catalogue.match({token!r}): a '!' token removes records; "
                             "use ftlab.model.glob.match_records, which returns the negation flag")
        return indices

    # -- derived data --------------------------------------------------------------------------
    def derived(self, key: str, build: Callable[[Catalogue], _T]) -> _T:
        """``build(self)``, computed once per catalogue and kept under ``key`` (the catalogue is immutable).

        For indexes other modules derive from the records (e.g. ftlab.model.glob's name table).
        ``key`` should name the owning module, e.g. ``"glob.view"``.
        """
        try:
            return self._derived[key]  # type: ignore[return-value]
        except KeyError:
            value = self._derived[key] = build(self)
            return value


def qualified_name(sym: str) -> str:
    """``name [module]`` (as %ps and available_filter_functions print it) -> ``module:name``;
    a plain name stays as it is."""
    words = sym.split()
    if len(words) == 2 and words[1].startswith("[") and words[1].endswith("]"):
        return f"{words[1][1:-1]}:{words[0]}"
    return sym.strip()


def sym_name(qualified: str) -> str:
    """``module:name`` -> ``name [module]`` (the head of its enabled_functions record)."""
    mod, sep, plain = qualified.partition(":")
    return f"{plain} [{mod}]" if sep else qualified


def _is_symbol(s: str) -> bool:
    return all(c.isalnum() or c in "_.$" for c in s)
