"""Flag bits of ftrace_ops and dyn_ftrace, and the ftrace_ops_cmd enum.

Kernel source: include/linux/ftrace.h (enum of FTRACE_OPS_FL_*, enum of FTRACE_FL_*,
FTRACE_REF_MAX_SHIFT) as of the seed's series ("ftrace: host klp and bpf trampoline together",
v2, patch 3/5 adds FTRACE_OPS_FL_SHARE_IPMODIFY and enum ftrace_ops_cmd). The values are the
kernel's, so rendered flags compare directly with a real kernel's.
"""

from __future__ import annotations

import enum


class FTRACE_OPS_FL(enum.IntFlag):
    """ftrace_ops->flags (include/linux/ftrace.h; SHARE_IPMODIFY exists only under seed-v2)."""

    ENABLED = 1 << 0
    DYNAMIC = 1 << 1
    SAVE_REGS = 1 << 2
    SAVE_REGS_IF_SUPPORTED = 1 << 3
    RECURSION = 1 << 4
    STUB = 1 << 5
    INITIALIZED = 1 << 6
    DELETED = 1 << 7
    ADDING = 1 << 8
    REMOVING = 1 << 9
    MODIFYING = 1 << 10
    ALLOC_TRAMP = 1 << 11
    IPMODIFY = 1 << 12
    PID = 1 << 13
    RCU = 1 << 14
    TRACE_ARRAY = 1 << 15
    PERMANENT = 1 << 16
    DIRECT = 1 << 17
    SHARE_IPMODIFY = 1 << 18


#: FTRACE_OPS_FL_SUBOP (include/linux/ftrace.h, v6.11+): the ops is a subops of a manager ops
#: (ftrace_startup_subops). The same bit as the seed's SHARE_IPMODIFY, which no merged kernel has;
#: only subops carry it, and a subops is never on ftrace_ops_list.
FTRACE_OPS_FL_SUBOP = 1 << 18


class FTRACE_FL(enum.IntFlag):
    """dyn_ftrace->flags (include/linux/ftrace.h): ENABLED .. DIRECT_EN as 5.18, the v2-era tree and
    6.1 have them; CALL_OPS and CALL_OPS_EN (v6.3), TOUCHED and MODIFIED (v6.4) as 6.12 has them.

    The low ``FTRACE_REF_MAX_SHIFT`` bits hold the reference count: 23 bits up to 6.2, 19 from 6.4,
    where the four later bits sit in what was the count (the policy's ``FTRACE_REF_MAX_SHIFT``).
    A version sets only the bits its header has (the policy's ``rec_call_ops``,
    ``rec_touched_modified``); x86_64 never sets CALL_OPS (no DYNAMIC_FTRACE_WITH_CALL_OPS).
    """

    ENABLED = 1 << 31
    REGS = 1 << 30
    REGS_EN = 1 << 29
    TRAMP = 1 << 28
    TRAMP_EN = 1 << 27
    IPMODIFY = 1 << 26
    DISABLED = 1 << 25
    DIRECT = 1 << 24
    DIRECT_EN = 1 << 23
    CALL_OPS = 1 << 22
    CALL_OPS_EN = 1 << 21
    TOUCHED = 1 << 20
    MODIFIED = 1 << 19


#: FTRACE_REF_MAX_SHIFT of 5.18 .. 6.2 (6.4 and later: 19, the policy's ``FTRACE_REF_MAX_SHIFT``).
FTRACE_REF_MAX_SHIFT = 23
FTRACE_REF_MAX = (1 << FTRACE_REF_MAX_SHIFT) - 1


def ftrace_rec_count(flags: int, ref_max: int = FTRACE_REF_MAX) -> int:
    """ftrace_rec_count(): the reference count held in the low bits of dyn_ftrace->flags
    (``ref_max``: the version's FTRACE_REF_MAX, ``k.ref_max``)."""
    return flags & ref_max


class ftrace_ops_cmd(enum.IntEnum):
    """enum ftrace_ops_cmd as the seed (v2 3/5, include/linux/ftrace.h) defines it.

    Linux 6.1 renumbers and renames these (ENABLE_SHARE_IPMODIFY_SELF / _PEER,
    DISABLE_SHARE_IPMODIFY_PEER); that policy defines its own enum.
    """

    FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY = 0
    FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY = 1


def ops_flag_names(flags: int) -> str:
    """Render ftrace_ops flags as ``DIRECT|SAVE_REGS|...`` in bit order (kernel names)."""
    names = [f.name or "" for f in FTRACE_OPS_FL if flags & f.value]
    return "|".join(names) if names else "0"


def rec_flag_names(flags: int, ref_shift: int = FTRACE_REF_MAX_SHIFT) -> str:
    """Render dyn_ftrace flags as ``ENABLED|REGS|...`` plus ``count=N`` (``ref_shift``: the
    version's FTRACE_REF_MAX_SHIFT; flags below it are the count)."""
    names = [f.name or "" for f in FTRACE_FL if flags & f.value and f.value >> ref_shift]
    names.append(f"count={ftrace_rec_count(flags, (1 << ref_shift) - 1)}")
    return "|".join(names)


class _IntConsts:
    """The members of an IntFlag as plain ``int`` attributes (IntFlag arithmetic is slow in hot loops)."""

    def __init__(self, flag_type: type[enum.IntFlag]) -> None:
        for member in flag_type:
            setattr(self, member.name or "", int(member.value))

    def __getattr__(self, name: str) -> int:  # pragma: no cover - typing aid only
        raise AttributeError(name)


#: FTRACE_FL bits as ints, for the record-accounting hot paths.
RECF = _IntConsts(FTRACE_FL)
#: FTRACE_OPS_FL bits as ints.
OPSF = _IntConsts(FTRACE_OPS_FL)
