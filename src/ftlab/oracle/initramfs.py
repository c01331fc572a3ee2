"""The guest's initramfs: a static busybox, the 9p modules and an /init that starts the agent.

The archive is generic per kernel (cached): what a boot runs comes from the kernel command line,
whose unknown ``key=value`` words the kernel hands to /init as environment variables:
``ftlab_agent`` (the agent script's host path), ``ftlab_plan`` (the plan's host path),
``ftlab_out`` (the host directory exported writable as 9p tag ``out``) and ``ftlab_python``.

/init mounts proc, sysfs, devtmpfs, tracefs and debugfs (for kprobes/list), loads the virtio/9p
modules the kernel does not build in (:meth:`~ftlab.oracle.install.KernelInfo.guest_modules`:
modules.dep minus modules.builtin; a compressed ``.ko.xz`` is stored decompressed), mounts the host's root read-only
at /host (tag ``hostroot``) with the guest's /proc,
/sys and /dev bound over it and the writable export at its host path, then runs
``chroot /host python3 -B agent plan`` and powers off. Lines starting ``FTLAB-INIT`` report its progress on the console.

The cpio (newc) writer is pure Python, so no cpio tool is needed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat

from ..errors import OracleError
from .install import GUEST_MODULES, KernelInfo, static_busybox
from .kernels import module_bytes

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
echo "FTLAB-INIT boot $(cut -d' ' -f1 /proc/uptime)"
for m in MODULES; do
  insmod /lib/modules/$m.ko || echo "FTLAB-INIT fatal insmod $m"
done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host; then
  echo "FTLAB-INIT fatal cannot mount the host root (9p)"; poweroff -f
fi
mount --bind /proc /host/proc
mount --rbind /sys /host/sys
mount --bind /dev /host/dev
if ! mount -t 9p -o trans=virtio,version=9p2000.L,rw,msize=262144 out "/host$ftlab_out"; then
  echo "FTLAB-INIT fatal cannot mount the output directory (9p)"; poweroff -f
fi
echo "FTLAB-INIT ready $(cut -d' ' -f1 /proc/uptime)"
chroot /host "$ftlab_python" -B "$ftlab_agent" "$ftlab_plan"
echo "FTLAB-INIT agent-exit $?"
umount "/host$ftlab_out"
poweroff -f
"""


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % v for v in fields)
    out = head + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def cpio_newc(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A cpio archive (newc) of ``(name, mode, data, (rdevmajor, rdevminor))`` entries."""
    buf = io.BytesIO()
    for ino, (name, mode, data, rdev) in enumerate(entries, 1):
        buf.write(_cpio_entry(name, mode, data, rdev, ino))
    buf.write(_cpio_entry("TRAILER!!!", 0))
    return buf.getvalue()


def init_script(modules: tuple[str, ...] | list[str] = GUEST_MODULES) -> str:
    """/init, loading ``modules`` in order (default: the 6.1 guest's)."""
    return INIT.replace("MODULES", " ".join(modules))


def build(info: KernelInfo, cache_dir: str) -> str:
    """The initramfs for ``info`` (built once per kernel and busybox), as a path."""
    bb = static_busybox()
    if bb is None:
        raise OracleError("no static busybox (run: ftlab oracle setup)")
    with open(bb, "rb") as f:
        busybox = f.read()
    mods = [(m, module_bytes(path)) for m, path in info.guest_modules()]
    init = init_script([m for m, _ in mods]).encode()
    h = hashlib.sha256(busybox + init)
    for m, data in mods:
        h.update(m.encode() + data)
    path = os.path.join(cache_dir, f"initramfs-{h.hexdigest()[:12]}.cpio.gz")
    if os.path.exists(path):
        return path
    d, f_, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = [
        (n, d, b"", (0, 0)) for n in ("bin", "dev", "proc", "sys", "host", "tmp", "run", "lib", "lib/modules")]
    entries += [("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)), ("dev/null", stat.S_IFCHR | 0o666, b"", (1, 3)),
                ("bin/busybox", x, busybox, (0, 0)), ("init", x, init, (0, 0))]
    entries += [(f"lib/modules/{m}.ko", f_, data, (0, 0)) for m, data in mods]
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(gzip.compress(cpio_newc(entries), compresslevel=1, mtime=0))
    os.replace(tmp, path)
    return path
