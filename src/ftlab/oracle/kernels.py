"""The real kernels the oracle replays on: one row per kernel series, and the facts that differ.

Every per-kernel fact the oracle needs is in :data:`KERNELS` (and nowhere else):

* ``series``: what ``--kernel`` names (``6.1``, ``6.12``);
* ``policy``: the model policy a diff compares the kernel with (the registry's, by series:
  :func:`ftlab.model.policies.registry.policy_for_series`);
* ``release``: the ``uname -r`` of its Debian amd64 images (``6.1.0-57-amd64``,
  ``6.12.95+deb12-amd64``), matched exactly: ``vmlinuz-6.1*`` also matches 6.12's files;
* ``suite``: the Debian suite whose packages are installed (None: the host's own suites, as
  configured); a suite the host does not list is added, in :data:`SOURCES_DIR`, by
  :func:`ftlab.oracle.install.ensure`;
* ``version_mark``: a fragment the package version must contain (``~bpo12``: backports'
  builds, not the security suite's 6.12 ones, whose ABI names look alike);
* ``direct_api``: how the plain direct-call module calls the direct API: ``multi``
  (``register_ftrace_direct_multi``, ``unregister_ftrace_direct_multi``,
  ``modify_ftrace_direct_multi``: 6.1) or ``ops`` (the same calls without ``_multi``, the
  unregister taking ``free_filters``, and a trampoline that does the call-depth accounting of
  kernels built with call-depth tracking: 6.12);
* how the guest's 9p chain is found: ``module_roots`` (what the guest needs: a virtio PCI
  transport and the 9p filesystem), ``module_extra`` (a module that another needs at run time
  but modules.dep does not list: ``mount -t 9p -o trans=virtio`` asks for 9pnet_virtio).

The module list of a kernel is derived from its ``modules.dep`` minus ``modules.builtin``
(:func:`guest_modules`): each root's dependencies depth first, the listed ones in the order
modprobe loads them (the end of the modules.dep list first), then the extra ones, then the root.
Built-in modules (6.12 builds virtio, virtio_ring and virtio_pci in) are skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..errors import InputError, OracleError
from ..model.policies.registry import policy_for_series

#: Where a suite the host lacks is added (deb822 ``.sources``, like Debian's own files).
SOURCES_DIR = "/etc/apt/sources.list.d"


@dataclass(frozen=True)
class KernelSeries:
    """One kernel series the oracle runs (see the module docstring for the fields)."""

    series: str
    release: str                                   # a regular expression of ``uname -r``
    suite: str | None = None
    version_mark: str | None = None
    direct_api: str = "multi"
    module_roots: tuple[str, ...] = ("virtio_pci", "9p")
    module_extra: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"9p": ("9pnet_virtio",)})

    @property
    def policy(self) -> str | None:
        """The model policy the registry says models this series' Debian builds (None: none yet)."""
        return policy_for_series(self.series)

    @property
    def release_re(self) -> re.Pattern[str]:
        return re.compile(f"^{self.release}$")

    def matches(self, release: str) -> bool:
        """``release`` (``uname -r``) is an amd64 image of this series."""
        return self.release_re.match(release) is not None

    @property
    def image_pattern(self) -> str:
        """The image package names, as an apt-cache search expression."""
        return f"^linux-image-{self.release}$"

    @property
    def sources_file(self) -> str | None:
        """The sources file ftlab writes for :attr:`suite` (None: the host's suites suffice)."""
        return None if self.suite is None else os.path.join(SOURCES_DIR, f"ftlab-{self.suite}.sources")


KERNELS: dict[str, KernelSeries] = {k.series: k for k in (
    # Debian 12's own kernel (the derived 9p chain is the order the oracle-guest catalogue records)
    KernelSeries("6.1", r"6\.1\.[0-9]+-[0-9]+-amd64"),
    # Debian 12's backports kernel
    KernelSeries("6.12", r"6\.12\.[0-9]+\+deb12-amd64", suite="bookworm-backports",
                 version_mark="~bpo12", direct_api="ops"),
)}

DEFAULT = "6.1"


def get(series: str) -> KernelSeries:
    """The row of ``series``; InputError (``--kernel``) naming the known ones otherwise."""
    k = KERNELS.get(series)
    if k is None:
        raise InputError(f"unknown kernel {series!r} (known: {', '.join(KERNELS)}, all)", "--kernel")
    return k


def select(arg: str) -> list[KernelSeries]:
    """``--kernel`` -> the series to run, in order (``all``: every row)."""
    if arg == "all":
        return list(KERNELS.values())
    return [get(arg)]


def series_of(release: str) -> KernelSeries | None:
    """The series whose images have this ``uname -r`` (None: none of ours)."""
    return next((k for k in KERNELS.values() if k.matches(release)), None)


# ---------------------------------------------------------------------------------------------
# The guest's modules
# ---------------------------------------------------------------------------------------------
def _mod_name(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[:-len(ext)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep: module name -> (path relative to the modules directory, its dependencies' names)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        head, sep, deps = line.partition(":")
        if not sep:
            continue
        out[_mod_name(head.strip())] = (head.strip(), [_mod_name(d) for d in deps.split()])
    return out


def parse_modules_builtin(text: str) -> set[str]:
    return {_mod_name(ln.strip()) for ln in text.splitlines() if ln.strip()}


def derive_modules(dep: dict[str, tuple[str, list[str]]], builtin: set[str], roots: tuple[str, ...],
                   extra: dict[str, tuple[str, ...]]) -> list[str]:
    """The modules to load, in order (see the module docstring); OracleError if a root is missing."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(m: str, need: str) -> None:
        if m in seen or m in builtin:
            return
        if m not in dep:
            raise OracleError(f"the kernel has no module {m} (needed by {need}) and does not build it in")
        seen.add(m)
        for d in reversed(dep[m][1]):   # modprobe loads the end of the list first
            visit(d, m)
        for d in extra.get(m, ()):
            visit(d, m)
        order.append(m)

    for r in roots:
        visit(r, "the guest's 9p mount")
    return order


def guest_modules(k: KernelSeries, modules_dir: str) -> list[tuple[str, str]]:
    """(name, path) of the modules the guest loads, in load order, for the kernel in ``modules_dir``."""
    try:
        with open(os.path.join(modules_dir, "modules.dep"), encoding="utf-8") as f:
            dep = parse_modules_dep(f.read())
        with open(os.path.join(modules_dir, "modules.builtin"), encoding="utf-8") as f:
            builtin = parse_modules_builtin(f.read())
    except OSError as e:
        raise OracleError(f"cannot read {e.filename}: {e.strerror}") from None
    out = []
    for m in derive_modules(dep, builtin, k.module_roots, k.module_extra):
        if m not in dep:
            raise OracleError(f"{os.path.basename(modules_dir)} lacks module {m} (modules.dep)")
        out.append((m, os.path.join(modules_dir, dep[m][0])))
    return out


def decompress_zstd(data: bytes, what: str) -> bytes:
    """zstd-compressed ``data`` through the ``zstd`` tool (Python's standard library has no zstd)."""
    import shutil
    import subprocess

    tool = shutil.which("zstd")
    if tool is None:
        raise OracleError(f"{what} is zstd-compressed and there is no zstd tool to read it (apt-get install zstd)")
    # the tool complains about what follows the frame (a bzImage's trailer) but writes the frame
    proc = subprocess.run([tool, "-dcq"], input=data, capture_output=True, timeout=300)
    if not proc.stdout:
        raise OracleError(f"cannot decompress {what} (zstd): {proc.stderr.decode(errors='replace').strip()[:200]}")
    return proc.stdout


def module_bytes(path: str) -> bytes:
    """The ELF bytes of a module file (``.ko``, or Debian 6.12's ``.ko.xz``; ``.ko.zst``, ``.ko.gz``)."""
    import gzip
    import lzma

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OracleError(f"cannot read {path}: {e.strerror}") from None
    try:
        if path.endswith(".xz"):
            return lzma.decompress(data)
        if path.endswith(".gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError) as e:
        raise OracleError(f"cannot decompress {path}: {e}") from None
    if path.endswith(".zst"):
        return decompress_zstd(data, path)
    return data
