"""Linux errno values, as the kernel returns them (negated) from the modelled functions.

Kernel source: include/uapi/asm-generic/errno-base.h, errno.h, include/linux/errno.h (ENOTSUPP).
A modelled kernel function returns ``0`` for success or ``-Errno.X`` for failure, exactly like
the C function; :func:`errno_name` turns a return value into the name users read in logs.
"""

from __future__ import annotations

import enum


class Errno(enum.IntEnum):
    """Positive errno numbers (x86_64 / asm-generic values)."""

    EPERM = 1
    ENOENT = 2
    E2BIG = 7
    EAGAIN = 11
    ENOMEM = 12
    EBUSY = 16
    EEXIST = 17
    ENODEV = 19
    EINVAL = 22
    ENOSPC = 28
    EOPNOTSUPP = 95
    ENOTSUPP = 524  # kernel-internal (include/linux/errno.h)


def errno_name(ret: int) -> str:
    """Name of a kernel return value: ``0`` -> ``"ok"``, ``-16`` -> ``"EBUSY"``, ``-1`` -> ``"-1"``."""
    if ret == 0:
        return "ok"
    if ret < 0:
        try:
            return Errno(-ret).name
        except ValueError:
            pass
    return str(ret)


def parse_errno(text: str) -> int:
    """Inverse of :func:`errno_name`: ``"ok"`` -> 0, ``"EBUSY"`` / ``"-16"`` -> -16.

    Raises ValueError for an unknown name.
    """
    t = text.strip()
    if t.lower() in ("ok", "0"):
        return 0
    if t.upper() in Errno.__members__:
        return -Errno[t.upper()].value
    if t.lstrip("-").isdigit():
        v = int(t)
        return v if v <= 0 else -v
    raise ValueError(f"unknown errno name {text!r}")
