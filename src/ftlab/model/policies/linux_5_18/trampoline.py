"""Linux 5.18's kernel/bpf/trampoline.c and include/linux/bpf.h (before the series).

The BPF trampoline as it stood before Song Liu's series (the "-" lines of v2 5/5; 5.18's
trampoline.c had the same flow, with bpf_tramp_progs where bpf-next had bpf_tramp_links):
no tr->fops, no ops_func, no indirect_call, no BPF_TRAMP_F_ORIG_STACK. Every trampoline's image
is registered on the one shared, static ``direct_ops`` (IPMODIFY|DIRECT|SAVE_REGS|PERMANENT)
through register_ftrace_direct(ip, addr), re-pointed with modify_ftrace_direct(ip, old, new)
and removed with unregister_ftrace_direct(ip, addr). Because direct_ops carries IPMODIFY, a
live patch and a BPF trampoline refuse each other with -EBUSY in both orders (facts §5):
live patch first -> the filter change of a live direct_ops, or the registration of a fresh
one, fails in __ftrace_hash_update_ipmodify; BPF first -> the live patch's registration does.
"""

from __future__ import annotations

import enum

from ... import bpf_trampoline as bt
from ...errno import Errno
from ...ftrace import ftrace_location
from ...kernel import Kernel
from ...ops import Addr
from ..shared import bpf_tramp_image_alloc
from .ftrace import modify_ftrace_direct, register_ftrace_direct, unregister_ftrace_direct


class BPF_TRAMP_F(enum.IntFlag):
    """BPF_TRAMP_F_* (include/linux/bpf.h, 5.18): no ORIG_STACK (4/5 of the series adds it)."""

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4


def register_fentry(k: Kernel, tr: bt.bpf_trampoline, new_addr: Addr) -> int:
    """register_fentry() (trampoline.c, 5.18): register_ftrace_direct(ip, new_addr) on the shared direct_ops."""
    ip = tr.func_addr
    if ftrace_location(k, ip):
        tr.ftrace_managed = True
    if bt.bpf_trampoline_module_get(k, tr):
        return -Errno.ENOENT
    if tr.ftrace_managed:
        ret = register_ftrace_direct(k, ip, new_addr)
    else:
        ret = bt.bpf_arch_text_poke(k, tr, None, new_addr)
    if ret:
        bt.bpf_trampoline_module_put(k, tr)
    return ret


def modify_fentry(k: Kernel, tr: bt.bpf_trampoline, old_addr: Addr, new_addr: Addr,
                  lock_direct_mutex: bool = True) -> int:
    """modify_fentry() (trampoline.c, 5.18): modify_ftrace_direct(ip, old_addr, new_addr).

    The kernel function has no ``lock_direct_mutex`` argument (the series adds it); the model
    accepts and ignores it, so that every version is called alike.
    """
    if tr.ftrace_managed:
        return modify_ftrace_direct(k, tr.func_addr, old_addr, new_addr)
    return bt.bpf_arch_text_poke(k, tr, old_addr, new_addr)


def unregister_fentry(k: Kernel, tr: bt.bpf_trampoline, old_addr: Addr) -> int:
    """unregister_fentry() (trampoline.c, 5.18): unregister_ftrace_direct(ip, old_addr), module put on success."""
    if tr.ftrace_managed:
        ret = unregister_ftrace_direct(k, tr.func_addr, old_addr)
    else:
        ret = bt.bpf_arch_text_poke(k, tr, old_addr, None)
    if not ret:
        bt.bpf_trampoline_module_put(k, tr)
    return ret


def bpf_trampoline_update(k: Kernel, tr: bt.bpf_trampoline, lock_direct_mutex: bool = True) -> int:
    """bpf_trampoline_update() (trampoline.c, 5.18): rebuild the image and (re)attach it, no retry.

    The kernel function has no ``lock_direct_mutex`` parameter (the series adds it); the model
    accepts and ignores it so that the shared link/unlink code calls every version alike.
    Caller holds tr->mutex. No programs: unregister_fentry, drop the image, selector = 0.
    Otherwise JIT a new image (CALL_ORIG|SKIP_FRAME with fexit or fmod_ret programs, else
    RESTORE_REGS; IP_ARG if a program wants the ip) and register it (first image) or modify to
    it; any error is returned as is. A failed update leaks its image (not modelled).
    """
    tlinks, total, ip_arg = bt.bpf_trampoline_get_progs(tr)
    if total == 0:
        err = bt.update_without_progs(k, tr)
        tr.selector = 0
        return err

    im = bpf_tramp_image_alloc(k, tr)
    flags = bt.prog_flags(BPF_TRAMP_F, tlinks, ip_arg)
    err, im = bt.arch_prepare_bpf_trampoline(k, im, flags, tlinks, tr)
    if err < 0:
        return err
    bt.check_selector(k, tr)
    err = bt.attach_image(k, tr, im, lock_direct_mutex)
    if err:
        return err
    bt.install_image(k, tr, im)
    tr.selector += 1
    return 0
