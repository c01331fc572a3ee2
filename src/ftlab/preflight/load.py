"""Reading a snapshot: the JSON document ``ftlab snapshot`` writes (:mod:`ftlab.snapshot`), its
catalogue (the machine's own available_filter_functions) and the policy its kernel version implies
(<= 5.19: ``linux-5.18``; >= 6.0: ``linux-6.1``)."""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .. import catalogues
from ..errors import InputError
from ..model.catalogue import Catalogue
from ..model.policies.registry import POLICIES, policy_names

SNAPSHOT_FORMAT = 1


@dataclass
class Snapshot:
    path: str
    doc: dict[str, Any]
    release: str
    catalogue: Catalogue
    notes: list[str] = field(default_factory=list)

    def text(self, key: str) -> str | None:
        ent = self.doc.get("files", {}).get(key)
        if isinstance(ent, dict) and isinstance(ent.get("text"), str):
            return ent["text"]
        return None

    def error(self, key: str) -> str | None:
        ent = self.doc.get("files", {}).get(key)
        return ent.get("error") if isinstance(ent, dict) else "absent from the snapshot"


def _catalogue(doc: dict[str, Any], path: str, notes: list[str]) -> Catalogue:
    aff = doc.get("available_filter_functions")
    where = f"{path}: available_filter_functions"
    if not isinstance(aff, dict):
        raise InputError("missing", where)
    if "error" in aff:
        notes.append(f"the snapshot could not read available_filter_functions ({aff['error']}): "
                     "using the embedded Debian 6.1.0-56-amd64 catalogue instead")
        return catalogues.embedded()
    if aff.get("encoding") == "gzip+base64":
        try:
            text = gzip.decompress(base64.b64decode(str(aff.get("data", "")), validate=True)).decode()
        except (binascii.Error, OSError, EOFError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"cannot decode gzip+base64 data: {e}", where) from None
        if aff.get("sha256") and hashlib.sha256(text.encode()).hexdigest() != aff["sha256"]:
            raise InputError("sha256 does not match the data (truncated or edited file?)", where)
    elif aff.get("encoding") == "list" and isinstance(aff.get("names"), list):
        text = "".join(f"{n}\n" for n in aff["names"])
    else:
        raise InputError(f"unknown encoding {aff.get('encoding')!r} (expected gzip+base64 or list)", where)
    return Catalogue.from_text(text, f"{path}:available_filter_functions")


def load_snapshot(path: str) -> Snapshot:
    """Read a snapshot file; :class:`InputError` (``PATH: what``) for anything malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"not JSON: {e}", path) from None
    if not isinstance(doc, dict) or doc.get("kind") != "ftlab-snapshot":
        raise InputError("not an ftlab snapshot (no \"kind\": \"ftlab-snapshot\"; make one with ftlab snapshot)", path)
    if doc.get("format") != SNAPSHOT_FORMAT:
        raise InputError(f"snapshot format {doc.get('format')!r}, this ftlab reads format {SNAPSHOT_FORMAT}", path)
    if not isinstance(doc.get("files"), dict):
        raise InputError("no \"files\" object", path)
    uname = doc.get("uname") if isinstance(doc.get("uname"), dict) else {}
    release = str(uname.get("release") or "")
    notes: list[str] = []
    cat = _catalogue(doc, path, notes)
    return Snapshot(path, doc, release, cat, notes)


def policy_for_release(release: str) -> str:
    """The policy whose registry ``series`` holds ``release``'s version (<= 5.19 linux-5.18,
    >= 6.0 linux-6.1); InputError for an unreadable version or one older than 5.15."""
    m = re.match(r"^(\d+)\.(\d+)", release)
    if not m:
        raise InputError(f"cannot tell the kernel version from uname -r {release!r}; give --policy", "snapshot")
    major, minor = int(m.group(1)), int(m.group(2))
    if (major, minor) < (5, 15):
        raise InputError(f"kernel {release} is older than 5.15 (ftlab models 5.18 and 6.1 rules); "
                         "give --policy to force one", "snapshot")
    for name in policy_names():
        series = POLICIES[name].series
        if series is not None and _version(series[0]) <= (major, minor) <= _version(series[1]):
            return name
    raise InputError(f"no policy stands for kernel {release}; give --policy", "snapshot")


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)
