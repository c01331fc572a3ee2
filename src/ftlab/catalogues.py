"""The catalogues ftlab ships, and reading another kernel's from a file: the model's records, from outside it.

The model (:class:`ftlab.model.catalogue.Catalogue`) takes names; this shell reads them:

* :func:`embedded` -- the embedded default, Debian 12's linux-image-6.1.0-56-amd64 (6.1.192-2)
  ``available_filter_functions``, vmlinux records only (38,252 records), parsed once per process
  (a catalogue is an immutable value, so sharing the parsed one changes nothing); with a
  policy's name, that policy's own (``linux-6.12``: Debian's 6.12.95+deb12-amd64, 42,693 records);
* :func:`oracle_guest` -- the embedded one plus the records of the modules the oracle guest's
  initramfs loads (virtio, 9p), in that guest's order;
* :func:`from_file` -- another kernel's file, plain or gzip-compressed.

Where ftlab ships a kernel's per-record data next to its catalogue (made by
:mod:`ftlab.oracle.recorddata` from the real guest and the kernel's BTF), the embedded catalogues
carry them (:class:`~ftlab.model.catalogue.Catalogue`'s ``func_models`` and ``fentry_offsets``):
``<name>.func_models.gz`` (its functions' BTF models: 6.12's, which size its BPF trampoline images)
and ``<name>.records_at_offset_0.gz`` (the records at their symbol; all others are at symbol + 4,
after an endbr64: 6.12's IBT).

Every problem with a file is an :class:`~ftlab.errors.InputError` naming it.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from importlib import resources

from .errors import InputError
from .model.catalogue import Catalogue, FuncModel
from .model.policies.registry import policy_info

#: The embedded default: Debian 12's linux-image-6.1.0-56-amd64 (6.1.192-2), vmlinux records only.
EMBEDDED_NAME = "debian-6.1.0-56-amd64"
_EMBEDDED_FILE = f"{EMBEDDED_NAME}.available_filter_functions.gz"
#: The oracle guest's catalogue: the embedded one plus the records of the modules the guest's
#: initramfs loads (virtio, 9p: ftlab.oracle.install.GUEST_MODULES), as that guest lists them.
ORACLE_GUEST_NAME = "oracle-guest"
_GUEST_MODULES_FILE = "oracle-guest-modules.available_filter_functions.gz"


def _data(name: str) -> bytes:
    return resources.files("ftlab.data").joinpath(name).read_bytes()


def _data_lines(name: str) -> list[str] | None:
    """The lines of shipped data file ``name`` (gzip) without its ``#`` comments; None if not shipped."""
    f = resources.files("ftlab.data").joinpath(name)
    if not f.is_file():
        return None
    return [ln for ln in gzip.decompress(f.read_bytes()).decode().splitlines() if not ln.startswith("#")]


def parse_func_model(token: str) -> FuncModel | None:
    """A line of a ``.func_models.gz`` file: ``2 8 8`` (two 8-byte arguments), ``1 16s`` (a 16-byte
    struct), ``0``, or ``-`` (no model)."""
    if token == "-":
        return None
    n, *sizes = token.split()
    if len(sizes) != int(n):
        raise ValueError(token)
    return tuple((int(a.rstrip("s")), a.endswith("s")) for a in sizes)


@functools.cache
def fentry_offsets(name: str, records: int) -> tuple[int, ...] | None:
    """Per record of catalogue ``name`` (``records`` long), its call site's offset from its symbol:
    0 for the shipped list of records at offset 0, 4 for every other (None if ftlab ships no list)."""
    lines = _data_lines(f"{name}.records_at_offset_0.gz")
    if lines is None:
        return None
    offsets = [4] * records
    for ln in lines:
        offsets[int(ln)] = 0
    return tuple(offsets)


@functools.cache
def func_models(name: str) -> tuple[FuncModel | None, ...] | None:
    """The shipped BTF models of catalogue ``name``'s records (None if ftlab has none for it)."""
    lines = _data_lines(f"{name}.func_models.gz")
    if lines is None:
        return None
    parsed: dict[str, FuncModel | None] = {}
    return tuple(parsed[t] if t in parsed else parsed.setdefault(t, parse_func_model(t)) for t in lines)


def from_file(path: str | os.PathLike[str]) -> Catalogue:
    """Load another kernel's ``available_filter_functions`` (plain or ``.gz``)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise InputError("is a directory, not a catalogue file", p)
    try:
        with open(p, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputError(f"cannot read catalogue: {e.strerror}", p) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"corrupt gzip file: {e}", p) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not a text file (byte {e.start} is not UTF-8)", p) from None
    return Catalogue.from_text(text, p)


def parse_embedded(name: str = EMBEDDED_NAME) -> Catalogue:
    """A freshly parsed copy of the embedded catalogue ``name`` with its shipped per-record data
    (:func:`embedded` parses it once)."""
    names = gzip.decompress(_data(f"{name}.available_filter_functions.gz")).decode("utf-8").split()
    return Catalogue(names, name, fentry_offsets=fentry_offsets(name, len(names)), func_models=func_models(name))


def _info(policy: str | None) -> tuple[str, str]:
    """The embedded catalogue and guest module records of ``policy`` (the 6.1 ones for None)."""
    if policy is None:
        return EMBEDDED_NAME, _GUEST_MODULES_FILE.removesuffix(".available_filter_functions.gz")
    info = policy_info(policy)
    return info.catalogue, info.guest_modules


@functools.cache
def _embedded(name: str) -> Catalogue:
    return parse_embedded(name)


def embedded(policy: str | None = None) -> Catalogue:
    """The embedded catalogue (of ``policy``: its kernel's; default: Debian's 6.1.0-56-amd64, 38,252
    records), parsed once."""
    return _embedded(_info(policy)[0])


@functools.cache
def _oracle_guest(name: str, modules: str) -> Catalogue:
    emb = _embedded(name)
    file = f"{modules}.available_filter_functions.gz"
    mods = Catalogue.from_text(gzip.decompress(_data(file)).decode(), file)
    assert mods.modules is not None
    fm, mod_fm = emb.func_models, func_models(modules)
    models = None if fm is None and mod_fm is None else (
        (fm or (None,) * len(emb)) + (mod_fm or (None,) * len(mods)))
    fo, mod_fo = emb.fentry_offsets, fentry_offsets(modules, len(mods))
    offsets = None if fo is None and mod_fo is None else (fo or (0,) * len(emb)) + (mod_fo or (0,) * len(mods))
    return Catalogue(emb.names + mods.names, ORACLE_GUEST_NAME, (None,) * len(emb.names) + mods.modules,
                     fentry_offsets=offsets, func_models=models)


def oracle_guest(policy: str | None = None) -> Catalogue:
    """The embedded catalogue followed by the oracle guest's module records (``name [module]``,
    in the guest's order): what available_filter_functions lists in that guest, but for the
    modules a scenario loads itself (live patches, kprobe and direct-call modules), whose own
    records only a filter on every function would meet. ``policy``: that kernel's guest."""
    return _oracle_guest(*_info(policy))


def named(spec: str, policy: str | None = None) -> Catalogue:
    """The catalogue a scenario or the CLI names: ``embedded``, ``oracle-guest`` (``policy``'s
    kernel's), or a file path."""
    if spec == "embedded":
        return embedded(policy)
    if spec == ORACLE_GUEST_NAME:
        return oracle_guest(policy)
    return from_file(spec)
