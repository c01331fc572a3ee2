"""``ftlab oracle setup``: install what the oracle needs, as root, with Debian's packages.

What is needed: QEMU (``qemu-system-x86``), the newest ``linux-image-6.1.*-amd64`` that is
installed or installable and *its* ``linux-headers`` (the kbuild tree for the modules), a static
busybox (``busybox-static``, the guest's /init and tools), a compiler (``gcc``, ``make``), and
``bpftool`` (the guest runs the host's, for snapshots that read BPF links through it).
The kernel version is discovered (``/boot/vmlinuz-6.1*``), never hard-coded: Debian bumps the
ABI number (…-56, …-57) over time.

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

#: The kernel series the oracle replays on (the model's policy ``linux-6.1``).
SERIES = "6.1"
_IMAGE_RE = re.compile(r"^linux-image-(6\.1\.[0-9]+-[0-9]+-amd64)$")
_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}
_APT_OPTS = ["-o", "DPkg::Lock::Timeout=300", "-o", "APT::Install-Recommends=false", "-q", "-y"]


@dataclass(frozen=True)
class KernelInfo:
    """The guest kernel: ``version`` like ``6.1.0-56-amd64`` and where its pieces are."""

    version: str
    vmlinuz: str
    modules_dir: str
    kbuild_dir: str

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "vmlinuz": self.vmlinuz, "modules_dir": self.modules_dir,
                "kbuild_dir": self.kbuild_dir}


def _version_key(version: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.-]", version))


def installed_kernels(boot: str = "/boot") -> list[str]:
    """Versions of the installed 6.1 amd64 kernel images, newest last."""
    out = []
    for path in glob.glob(os.path.join(boot, f"vmlinuz-{SERIES}*")):
        ver = os.path.basename(path)[len("vmlinuz-"):]
        if ver.endswith("-amd64") and _IMAGE_RE.match(f"linux-image-{ver}"):
            out.append(ver)
    return sorted(out, key=_version_key)


def kernel_info(version: str | None = None) -> KernelInfo:
    """The newest installed 6.1 kernel (or ``version``); OracleError if none is."""
    versions = installed_kernels()
    if version is None:
        if not versions:
            raise OracleError(f"no /boot/vmlinuz-{SERIES}*-amd64 installed (run: ftlab oracle setup)")
        version = versions[-1]
    elif version not in versions:
        raise OracleError(f"kernel {version} is not installed (run: ftlab oracle setup)")
    return KernelInfo(version, f"/boot/vmlinuz-{version}", f"/lib/modules/{version}",
                      f"/lib/modules/{version}/build")


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


def _newest_image_package() -> str | None:
    """The newest ``linux-image-6.1.*-amd64`` package name apt knows (not -dbg, not -unsigned)."""
    try:
        proc = subprocess.run(["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.[0-9.]*-[0-9]*-amd64$"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [ln.split(" ", 1)[0] for ln in proc.stdout.splitlines()]
    vers = [m.group(1) for n in names if (m := _IMAGE_RE.match(n))]
    return f"linux-image-{sorted(vers, key=_version_key)[-1]}" if vers else None


def ensure(log: list[str] | None = None) -> KernelInfo:
    """Install whatever is missing; return the kernel the oracle will use. Idempotent."""
    log = log if log is not None else []
    if os.geteuid() != 0 and (_tool_missing() or not installed_kernels()):
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
    if not installed_kernels():
        update()
        pkg = _newest_image_package()
        if pkg is None:
            raise OracleError(f"cannot install a linux-image-{SERIES}.*-amd64: apt knows none")
        _run_apt(["install", pkg], pkg, log)
    info = kernel_info()
    if not _headers_ok(info.version):
        update()
        _run_apt(["install", f"linux-headers-{info.version}"], f"linux-headers-{info.version}", log)
        if not _headers_ok(info.version):
            raise OracleError(f"linux-headers-{info.version} installed but {info.kbuild_dir}/Makefile is missing")
    for m in GUEST_MODULES:
        if not os.path.exists(module_path(info, m)):
            raise OracleError(f"{info.version} lacks module {m} ({GUEST_MODULES_DIRS[m]})")
    return info


#: Modules the guest loads, in order, to mount the host's root over virtio 9p.
GUEST_MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
                 "netfs", "fscache", "9pnet", "9pnet_virtio", "9p")
GUEST_MODULES_DIRS = {
    "virtio_ring": "drivers/virtio", "virtio": "drivers/virtio", "virtio_pci_modern_dev": "drivers/virtio",
    "virtio_pci_legacy_dev": "drivers/virtio", "virtio_pci": "drivers/virtio", "netfs": "fs/netfs",
    "fscache": "fs/fscache", "9pnet": "net/9p", "9pnet_virtio": "net/9p", "9p": "fs/9p",
}


def module_path(info: KernelInfo, name: str) -> str:
    return os.path.join(info.modules_dir, "kernel", GUEST_MODULES_DIRS[name], name + ".ko")
