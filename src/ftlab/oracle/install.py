"""``ftlab oracle setup``: install what the oracle needs, as root, with Debian's packages.

What is needed: QEMU (``qemu-system-x86``), per kernel series of :mod:`ftlab.oracle.kernels`
(6.1: the newest ``linux-image-6.1.*-amd64`` of the host's suites; 6.12: the newest
``linux-image-6.12.*+deb12-amd64`` of bookworm-backports) the image that is installed or
installable and *its* ``linux-headers`` (the kbuild tree for the modules), a static busybox
(``busybox-static``, the guest's /init and tools), a compiler (``gcc``, ``make``), and
``bpftool`` (the guest runs the host's, for snapshots that read BPF links through it).
Kernel versions are discovered (``/boot/vmlinuz-<release>`` matched exactly against the
series' release pattern), never hard-coded: Debian bumps the ABI number (…-56, …-57) over time.

A series whose suite the host does not list (bookworm-backports) gets it added the way a user
would, in a deb822 file of its own (``/etc/apt/sources.list.d/ftlab-bookworm-backports.sources``),
which the log names in one line; its packages are then installed by exact name and version with
``--no-install-recommends``, so nothing else on the host is upgraded.

:func:`ensure` is idempotent: when everything is present it runs no package command at all. A
package that cannot be had raises :class:`~ftlab.errors.OracleError` with one line naming it and
apt's own reason. Installing a kernel image does not change the host's running kernel; it only
puts files under /boot and /lib/modules.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import OracleError
from . import kernels
from .kernels import KernelSeries

#: The default kernel series (its policy is ``linux-6.1``).
SERIES = kernels.DEFAULT
_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}
_APT_OPTS = ["-o", "DPkg::Lock::Timeout=300", "-o", "APT::Install-Recommends=false", "-q", "-y"]


@dataclass(frozen=True)
class KernelInfo:
    """The guest kernel: ``version`` like ``6.1.0-56-amd64`` and where its pieces are."""

    version: str
    vmlinuz: str
    modules_dir: str
    kbuild_dir: str
    series: str = SERIES

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "series": self.series, "vmlinuz": self.vmlinuz,
                "modules_dir": self.modules_dir, "kbuild_dir": self.kbuild_dir}

    @property
    def spec(self) -> KernelSeries:
        return kernels.get(self.series)

    def guest_modules(self) -> list[tuple[str, str]]:
        """(name, .ko path) of the modules the guest loads, in order (modules.dep minus modules.builtin)."""
        return kernels.guest_modules(self.spec, self.modules_dir)


def _version_key(version: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.+~-]", version))


def installed_kernels(boot: str = "/boot", series: str = SERIES) -> list[str]:
    """Versions of the installed amd64 kernel images of ``series``, newest last (matched
    exactly: 6.1's ``6.1.0-N-amd64`` is not 6.12's ``6.12.N+deb12-amd64``)."""
    k = kernels.get(series)
    out = []
    for path in glob.glob(os.path.join(boot, "vmlinuz-*")):
        ver = os.path.basename(path)[len("vmlinuz-"):]
        if k.matches(ver):
            out.append(ver)
    return sorted(out, key=_version_key)


def kernel_info(version: str | None = None, series: str = SERIES) -> KernelInfo:
    """The newest installed kernel of ``series`` (or ``version``); OracleError if none is."""
    versions = installed_kernels(series=series)
    if version is None:
        if not versions:
            raise OracleError(f"no {series} kernel installed (/boot/vmlinuz-{kernels.get(series).release}; "
                              "run: ftlab oracle setup)")
        version = versions[-1]
    elif version not in versions:
        raise OracleError(f"kernel {version} is not installed (run: ftlab oracle setup)")
    return KernelInfo(version, f"/boot/vmlinuz-{version}", f"/lib/modules/{version}",
                      f"/lib/modules/{version}/build", series)


def _tool_missing() -> list[str]:
    """Packages whose tools are missing."""
    need = []
    if not shutil.which("qemu-system-x86_64"):
        need.append("qemu-system-x86")
    if not static_busybox():
        need.append("busybox-static")
    if not shutil.which("gcc"):
        need.append("gcc")
    if not shutil.which("make"):
        need.append("make")
    if not (shutil.which("bpftool") or os.path.exists("/usr/sbin/bpftool")):
        need.append("bpftool")  # the guest's snapshots read BPF links through it (tests/test_snapshot_bpftool.py)
    return need


def static_busybox() -> str | None:
    """The path of a statically linked busybox, if one is installed."""
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 16)
        except OSError:
            continue
        # a dynamic executable has a PT_INTERP naming the loader
        if head[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in head and b"ld-linux-x86-64" not in head:
            return path
    return None


def _headers_ok(version: str) -> bool:
    return os.path.exists(f"/lib/modules/{version}/build/Makefile")


def _run_apt(args: list[str], what: str, log: list[str]) -> None:
    env = {**os.environ, **_APT_ENV}
    cmd = ["apt-get", *_APT_OPTS, *args]
    log.append("+ " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    except FileNotFoundError:
        raise OracleError("apt-get not found: the oracle needs Debian's packages") from None
    except subprocess.TimeoutExpired:
        raise OracleError(f"apt-get {args[0]} timed out ({what})") from None
    if proc.returncode != 0:
        errs = [ln.strip() for ln in proc.stderr.splitlines() if ln.startswith("E:")]
        reason = errs[0] if errs else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise OracleError(f"cannot install {what}: {reason}")


def _apt_query(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def parse_madison(text: str) -> list[tuple[str, str, str]]:
    """``apt-cache madison`` lines -> (package, version, suite) (the suite as the archive names it)."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[2]:
            suite = parts[2].split()[1].split("/", 1)[0] if len(parts[2].split()) > 1 else ""
            out.append((parts[0], parts[1], suite))
    return out


def _newest_image(k: KernelSeries) -> tuple[str, str] | None:
    """The newest image package of series ``k`` that apt offers from its suite: (name, version)."""
    names = [ln.split(" ", 1)[0] for ln in
             _apt_query(["apt-cache", "search", "--names-only", k.image_pattern]).splitlines()]
    names = [n for n in names if k.release_re.match(n[len("linux-image-"):])]
    if not names:
        return None
    if k.suite is None:  # the host's own suites: apt's candidate
        newest = sorted(names, key=lambda n: _version_key(n[len("linux-image-"):]))[-1]
        return newest, ""
    found = []
    for pkg, ver, suite in parse_madison(_apt_query(["apt-cache", "madison", *names])):
        if suite == k.suite and (k.version_mark is None or k.version_mark in ver):
            found.append((pkg, ver))
    if not found:
        return None
    return sorted(found, key=lambda pv: (_version_key(pv[0][len("linux-image-"):]), _version_key(pv[1])))[-1]


def suite_enabled(suite: str, apt_dir: str = "/etc/apt") -> bool:
    """Some apt source (one-line ``.list`` or deb822 ``.sources``) already names ``suite``."""
    paths = [os.path.join(apt_dir, "sources.list")] + sorted(glob.glob(os.path.join(apt_dir, "sources.list.d", "*")))
    for path in paths:
        if not path.endswith((".list", ".sources", "sources.list")):
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            if path.endswith(".sources"):
                if line.lower().startswith("suites:") and suite in line.split(":", 1)[1].split():
                    return True
            elif line.strip().startswith("deb") and suite in line.split():
                return True
    return False


def sources_text(suite: str) -> str:
    """A deb822 source for ``suite`` of Debian's archive, as Debian's own debian.sources writes one."""
    return ("Types: deb\nURIs: http://deb.debian.org/debian\n"
            f"Suites: {suite}\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def enable_suite(k: KernelSeries, log: list[str]) -> bool:
    """Add ``k.suite`` to apt's sources unless some source has it; True if a file was written."""
    if k.suite is None or suite_enabled(k.suite):
        return False
    path = k.sources_file
    assert path is not None
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(sources_text(k.suite))
        os.replace(tmp, path)
    except OSError as e:
        raise OracleError(f"cannot write {path}: {e.strerror}") from None
    log.append(f"enabled the {k.suite} suite in {path}")
    return True


def ensure(log: list[str] | None = None, series: str = SERIES) -> KernelInfo:
    """Install whatever is missing for ``series``; return the kernel the oracle will use. Idempotent."""
    return ensure_all(log, [series])[0]


def ensure_all(log: list[str] | None = None, series: list[str] | None = None) -> list[KernelInfo]:
    """:func:`ensure` for each of ``series`` (default: every series of the table), tools once."""
    log = log if log is not None else []
    wanted = [kernels.get(s) for s in (series if series is not None else list(kernels.KERNELS))]
    if os.geteuid() != 0 and (_tool_missing() or any(not installed_kernels(series=k.series) or
                                                    not _headers_ok(installed_kernels(series=k.series)[-1])
                                                    for k in wanted)):
        raise OracleError("setup must run as root (it installs Debian packages)")
    updated = False

    def update() -> None:
        nonlocal updated
        if not updated:
            _run_apt(["update"], "the package lists (apt-get update)", log)
            updated = True

    tools = _tool_missing()
    if tools:
        update()
        _run_apt(["install", *tools], " ".join(tools), log)
        still = _tool_missing()
        if still:
            raise OracleError(f"installed {' '.join(tools)} but still missing: {' '.join(still)}")
    infos = []
    for k in wanted:
        version_pin = ""
        if not installed_kernels(series=k.series):
            if enable_suite(k, log):
                updated = False  # the new suite's package list
            update()
            found = _newest_image(k)
            if found is None:
                where = f" in {k.suite}" if k.suite else ""
                raise OracleError(f"cannot install a linux-image-{k.release} kernel: apt knows none{where}")
            pkg, version_pin = found
            target = f"{pkg}={version_pin}" if version_pin else pkg
            _run_apt(["install", "--no-install-recommends", target], target, log)
        info = kernel_info(series=k.series)
        if not _headers_ok(info.version):
            if enable_suite(k, log):
                updated = False  # the new suite's package list
            update()
            pkg = f"linux-headers-{info.version}"
            if k.suite is not None and not version_pin:
                version_pin = _installed_version(f"linux-image-{info.version}")
            target = f"{pkg}={version_pin}" if version_pin else pkg
            _run_apt(["install", "--no-install-recommends", target], target, log)
            if not _headers_ok(info.version):
                raise OracleError(f"{pkg} installed but {info.kbuild_dir}/Makefile is missing")
        for m, path in info.guest_modules():
            if not os.path.exists(path):
                raise OracleError(f"{info.version} lacks module {m} ({path})")
        infos.append(info)
    return infos


def _installed_version(pkg: str) -> str:
    out = _apt_query(["dpkg-query", "-W", "-f", "${Version}", pkg]).strip()
    return out


#: Modules the 6.1 guest loads, in order, to mount the host's root over virtio 9p: what
#: :func:`ftlab.oracle.kernels.guest_modules` derives from 6.1's modules.dep, and the order the
#: oracle-guest catalogue (ftlab/data/oracle-guest-modules...) records.
GUEST_MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
                 "netfs", "fscache", "9pnet", "9pnet_virtio", "9p")
