"""The catalogues ftlab ships, and reading another kernel's from a file: the model's records, from outside it.

The model (:class:`ftlab.model.catalogue.Catalogue`) takes names; this shell reads them:

* :func:`embedded` -- the embedded default, Debian 12's linux-image-6.1.0-56-amd64 (6.1.192-2)
  ``available_filter_functions``, vmlinux records only (38,252 records), parsed once per process
  (a catalogue is an immutable value, so sharing the parsed one changes nothing);
* :func:`oracle_guest` -- the embedded one plus the records of the modules the oracle guest's
  initramfs loads (virtio, 9p), in that guest's order;
* :func:`from_file` -- another kernel's file, plain or gzip-compressed.

Every problem with a file is an :class:`~ftlab.errors.InputError` naming it.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from importlib import resources

from .errors import InputError
from .model.catalogue import Catalogue

#: The embedded default: Debian 12's linux-image-6.1.0-56-amd64 (6.1.192-2), vmlinux records only.
EMBEDDED_NAME = "debian-6.1.0-56-amd64"
_EMBEDDED_FILE = f"{EMBEDDED_NAME}.available_filter_functions.gz"
#: The oracle guest's catalogue: the embedded one plus the records of the modules the guest's
#: initramfs loads (virtio, 9p: ftlab.oracle.install.GUEST_MODULES), as that guest lists them.
ORACLE_GUEST_NAME = "oracle-guest"
_GUEST_MODULES_FILE = "oracle-guest-modules.available_filter_functions.gz"


def _data(name: str) -> bytes:
    return resources.files("ftlab.data").joinpath(name).read_bytes()


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


def parse_embedded() -> Catalogue:
    """A freshly parsed copy of the embedded catalogue (:func:`embedded` parses it once)."""
    return Catalogue(gzip.decompress(_data(_EMBEDDED_FILE)).decode("utf-8").split(), EMBEDDED_NAME)


@functools.lru_cache(maxsize=1)
def embedded() -> Catalogue:
    """The embedded default catalogue (38,252 records of Debian's 6.1.0-56-amd64), parsed once."""
    return parse_embedded()


@functools.lru_cache(maxsize=1)
def oracle_guest() -> Catalogue:
    """The embedded catalogue followed by the oracle guest's module records (``name [module]``,
    in the guest's order): what available_filter_functions lists in that guest, but for the
    modules a scenario loads itself (live patches, kprobe and direct-call modules), whose own
    records only a filter on every function would meet."""
    emb = embedded()
    mods = Catalogue.from_text(gzip.decompress(_data(_GUEST_MODULES_FILE)).decode(), _GUEST_MODULES_FILE)
    assert mods.modules is not None
    return Catalogue(emb.names + mods.names, ORACLE_GUEST_NAME, (None,) * len(emb.names) + mods.modules)


def named(spec: str) -> Catalogue:
    """The catalogue a scenario or the CLI names: ``embedded``, ``oracle-guest``, or a file path."""
    if spec == "embedded":
        return embedded()
    if spec == ORACLE_GUEST_NAME:
        return oracle_guest()
    return from_file(spec)
