"""Reading a snapshot: the JSON document ``ftlab snapshot`` writes (:mod:`ftlab.snapshot`), its
catalogue (the machine's own available_filter_functions) and the policy that stands for its exact
kernel build (:func:`choose_policy`).

A *build* is ``uname -r`` plus the Debian package version that ``uname -v`` carries
(``6.12.95+deb12-amd64`` + ``6.12.95-1~bpo12+1`` from ``#1 SMP PREEMPT_DYNAMIC Debian
6.12.95-1~bpo12+1 (2026-07-05)``). The registry (:data:`ftlab.model.policies.registry.POLICIES`,
``builds``) says which builds each policy stands for, validated on the real kernel or by reading
only; preflight answers for those alone. Any other build -- or a snapshot without ``uname -v``
(an older snapshot.py) -- is refused in one line naming the nearest policy (by the upstream version
the build carries), unless ``--policy`` forces one; then it proceeds, not validated."""

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
from ..model.policies.registry import POLICIES, Build, nearest_policy, policy_for_build

SNAPSHOT_FORMAT = 1


@dataclass
class Snapshot:
    path: str
    doc: dict[str, Any]
    release: str                  # uname -r
    uname_v: str | None           # uname -v; None in a snapshot that does not record it
    catalogue: Catalogue
    notes: list[str] = field(default_factory=list)

    @property
    def package_version(self) -> str | None:
        """The Debian package version ``uname -v`` carries (None: not a Debian build, or no uname -v)."""
        return debian_version(self.uname_v or "")

    @property
    def build(self) -> str:
        """The build in words: ``6.12.95+deb12-amd64 (Debian 6.12.95-1~bpo12+1)``."""
        if self.package_version is not None:
            return f"{self.release} (Debian {self.package_version})"
        if self.uname_v:
            return f"{self.release} ({self.uname_v})"
        return f"{self.release} (no uname -v)"

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
    version = uname.get("version")
    notes: list[str] = []
    cat = _catalogue(doc, path, notes)
    return Snapshot(path, doc, release, version.strip() if isinstance(version, str) and version.strip() else None,
                    cat, notes)


_DEBIAN = re.compile(r"\bDebian (\d[^\s()]*)")
_UPSTREAM = re.compile(r"^(\d+\.\d+(?:\.\d+)?)")
#: Debian's (and Ubuntu's) ``uname -r``: the ABI name ``6.1.0-57-amd64`` (its ``.0`` is no patch level)
_DEBIAN_ABI = re.compile(r"^(\d+\.\d+)\.0-\d+-")


def debian_version(uname_v: str) -> str | None:
    """The Debian package version in a ``uname -v`` text (``... Debian 6.1.192-3 (2026-11-16)`` ->
    ``6.1.192-3``), None if it names none."""
    m = _DEBIAN.search(uname_v)
    return m.group(1) if m else None


def upstream_version(release: str, package_version: str | None) -> str | None:
    """The upstream version a build carries: the package version's (``6.1.192-3`` -> ``6.1.192``),
    else ``uname -r``'s (an ABI name like Debian's ``6.1.0-57-amd64`` tells only ``6.1``); None if
    neither has one."""
    m = _UPSTREAM.match(package_version or "")
    if m:
        return m.group(1)
    m = _DEBIAN_ABI.match(release) or _UPSTREAM.match(release)
    return m.group(1) if m else None


def nearest(release: str, package_version: str | None) -> str | None:
    """The nearest policy of a build no policy stands for: the one standing for another build of the
    same ``uname -r``, else the one whose upstream versions hold the build's (registry
    :func:`~ftlab.model.policies.registry.nearest_policy`)."""
    same = [name for name, info in POLICIES.items() for b in info.builds if b.release == release]
    if same:
        return same[0]
    upstream = upstream_version(release, package_version)
    return nearest_policy(upstream) if upstream is not None else None


@dataclass(frozen=True)
class PolicyChoice:
    """The policy preflight applies to a snapshot, and on what grounds."""

    policy: str
    forced: bool                  # given with --policy
    build: Build | None           # the registry's entry of this build, when the policy stands for it
    notes: tuple[str, ...] = ()

    @property
    def validated(self) -> bool:
        """The policy was checked against this very build on the real kernel."""
        return self.build is not None and self.build.validated

    @property
    def reason(self) -> str:
        """Why this policy, in words (the text's header)."""
        return policy_reason(self.validated, self.forced, self.build is not None)


def policy_reason(validated: bool, forced: bool, stands_for: bool) -> str:
    """Why a policy applies, in words: validated on the build, standing for it by reading only, or
    forced with --policy on a build it does not stand for."""
    given = "; given with --policy" if forced else ""
    if validated:
        return "validated on this build" + given
    if stands_for:
        return "stands for this build by reading only: NOT validated on it" + given
    return "NOT validated on this build: forced with --policy"


def choose_policy(snap: Snapshot, forced: str | None = None) -> PolicyChoice:
    """The policy for ``snap``: the one the registry says stands for its exact build; ``forced``
    (``--policy``) on any build, validated only where the registry says so. InputError (``PATH:
    ...``, one line naming the build and the nearest policy) for a build no policy stands for, or a
    snapshot without uname -v, when nothing is forced."""
    hit = policy_for_build(snap.release, snap.package_version) if snap.uname_v is not None else None
    if forced is not None:
        notes: list[str] = []
        if snap.uname_v is None:
            notes.append("the snapshot does not record uname -v (an older snapshot.py): its kernel build "
                         "cannot be told")
        elif hit is None:
            notes.append(f"kernel {snap.build} is not a build ftlab was validated on (ftlab policies lists them)")
        elif hit[0] != forced:
            notes.append(f"this build is {'validated' if hit[1].validated else 'read'} for policy {hit[0]}, "
                         f"not {forced}")
        return PolicyChoice(forced, True, hit[1] if hit is not None and hit[0] == forced else None, tuple(notes))
    if hit is not None:
        return PolicyChoice(hit[0], False, hit[1])
    near = nearest(snap.release, snap.package_version)
    hint = (f"nearest policy {near} (give --policy {near} to use it anyway)" if near is not None
            else "give --policy NAME to use one anyway (ftlab policies lists them)")
    if snap.uname_v is None:
        raise InputError(f"the snapshot does not record uname -v (an older snapshot.py), so its kernel build "
                         f"({snap.release}) cannot be told; {hint}, or take the snapshot again", snap.path)
    raise InputError(f"kernel {snap.build} is not one ftlab was validated on; {hint}", snap.path)
