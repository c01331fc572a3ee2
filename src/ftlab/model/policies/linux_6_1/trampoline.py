"""Linux 6.1's kernel/bpf/trampoline.c and include/linux/bpf.h (Debian's 6.1.192 tree).

The merged design as the 6.1.192-2 tree has it, with the stable backports that touch this file:
"bpf: Remove bpf trampoline selector" and "bpf: Fix memleak due to fentry attach failure"
(stable 6.1.39, Debian 6.1.52-1: no tr->selector, image ksym ``bpf_trampoline_<key>``, a failed
update frees its image). 3e9a18e1c3e9 "ftrace: bpf: Fix IPMODIFY + DIRECT in
modify_ftrace_direct()" (stable 6.1.160, Debian 6.1.162-1) changes only ftrace.c (the modify
path asks SELF: :mod:`.backports`). Its companion upstream, 56b3c85e153b "ftrace: Fix BPF fexit
with livepatch", which moved the fops->func / fops->trampoline reset out of
bpf_trampoline_update into register_ftrace_direct's error path, is marked for 6.6+ and is
*not* in this tree: here the ``again:`` reset runs for every -EAGAIN, also on the modify path of
a live fops (see bpf_trampoline_update). What 6.1 shares with later kernels
(bpf_tramp_ftrace_ops_func) is in :mod:`..merged`, what it shares with the seed in :mod:`..shared`.

1. tr->flags holds the JIT flags plus BPF_TRAMP_F_SHARE_IPMODIFY (BIT(6)) and TAIL_CALL_CTX
   (BIT(7)); an update keeps only those two and recomputes the rest; ORIG_STACK iff SHARE and
   CALL_ORIG; any error restores the flags the update started with.
2. IPMODIFY first: registering (or, since 6.1.160, modifying) tr->fops meets the live patch's
   record bit and ftrace asks SELF. A trampoline that calls the original (CALL_ORIG) without
   ORIG_STACK sets SHARE and answers -EAGAIN; bpf_trampoline_update retries unconditionally
   and the new image has ORIG_STACK. A fentry-only trampoline (or one already ORIG_STACK)
   answers 0 without setting SHARE: its image returns into [rbp+8], the patched code.
3. DIRECT first: the live patch's registration sends PEER (direct_mutex held): trylock
   tr->mutex (busy: msleep(1), -EAGAIN, the live patch fails and must be retried), set SHARE,
   rebuild with ORIG_STACK only if the image calls the original and lacks it.
4. Live patch removed: DISABLE_PEER (result ignored): trylock, clear SHARE, rebuild only if
   the image has ORIG_STACK.
"""

from __future__ import annotations

import enum

from ....errors import ModelError
from ... import bpf_trampoline as bt
from ... import direct
from ...errno import Errno
from ...ftrace import ftrace_location, ftrace_set_filter_ip
from ...kernel import Kernel
from ...ops import Addr


class BPF_TRAMP_F(enum.IntFlag):
    """BPF_TRAMP_F_* (include/linux/bpf.h, 6.1.192): ORIG_STACK, SHARE_IPMODIFY and TAIL_CALL_CTX exist."""

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4
    ORIG_STACK = 1 << 5
    SHARE_IPMODIFY = 1 << 6
    TAIL_CALL_CTX = 1 << 7


#: The model's bound on ``goto again``: the 6.1 loop has none, so an -EAGAIN that never stops
#: would spin forever in the kernel; the model raises ModelError instead (unreachable through
#: this tree's ftrace: SELF answers -EAGAIN only while ORIG_STACK is missing).
AGAIN_LIMIT = 16


def register_fentry(k: Kernel, tr: bt.bpf_trampoline, new_addr: Addr) -> int:
    """register_fentry() (trampoline.c, 6.1): filter ip with reset=1, register_ftrace_direct_multi.

    An ftrace location without a fops (no DIRECT_CALLS) is -ENOTSUPP. On failure the filter
    is left as it is (the next attempt resets it) and fops->func / fops->trampoline stay set
    by register_ftrace_direct_multi; only the module reference is put back.
    """
    ip = tr.func_addr
    if ftrace_location(k, ip):
        if tr.fops is None:
            return -Errno.ENOTSUPP
        tr.ftrace_managed = True
    if bt.bpf_trampoline_module_get(k, tr):
        return -Errno.ENOENT
    if tr.ftrace_managed:
        assert tr.fops is not None
        ftrace_set_filter_ip(k, tr.fops, ip, False, True)
        ret = direct.register_ftrace_direct_multi(k, tr.fops, new_addr)
    else:
        ret = bt.bpf_arch_text_poke(k, tr, None, new_addr)
    if ret:
        bt.bpf_trampoline_module_put(k, tr)
    return ret


def bpf_tramp_image_alloc(k: Kernel, tr: bt.bpf_trampoline) -> bt.bpf_tramp_image:
    """bpf_tramp_image_alloc(key) (trampoline.c, 6.1.192): a fresh page, ksym ``bpf_trampoline_<key>``.

    No index since "bpf: Remove bpf trampoline selector" (stable 6.1.39), so the old and the new
    image of an update have the same name; the model tells them apart with ``#0`` / ``#1``
    (the one the current image does not use), which %pS strips.
    """
    n = 1 if tr.cur_image is not None and tr.cur_image.addr.endswith("#0") else 0
    return bt.bpf_tramp_image(addr=f"{bt.IMAGE_PREFIX}{tr.key}#{n}", key=tr.key, ip=tr.func_addr)


def bpf_trampoline_update(k: Kernel, tr: bt.bpf_trampoline, lock_direct_mutex: bool) -> int:
    """bpf_trampoline_update() (trampoline.c, 6.1.192): rebuild the image from tr->flags and (re)attach it.

    Caller holds tr->mutex. No programs: unregister_fentry and drop the image (tr->flags keep
    their value). Otherwise: keep only SHARE_IPMODIFY and TAIL_CALL_CTX of tr->flags, add
    CALL_ORIG|SKIP_FRAME (fexit or fmod_ret) or RESTORE_REGS, IP_ARG; ``again:`` add ORIG_STACK
    if SHARE and CALL_ORIG, JIT, register (first image) or modify. -EAGAIN (SELF asked for a
    rebuild and set SHARE) -> fops->func = NULL, fops->trampoline = 0, image back to RW, goto
    again: no guard, first registration or not. Any other error frees the image (backport of
    "bpf: Fix memleak due to fentry attach failure") and restores the flags of the start.

    Consequence of the unguarded reset in this tree (pinned by the tests): when the -EAGAIN
    comes from the *modify* path (live patch, then a fentry-only trampoline, then an fexit
    program: SELF on modify_ftrace_direct_multi), fops->func and fops->trampoline are cleared
    on a registered, live fops and nothing sets them again; the next call of the function
    through the list function trips FTRACE_WARN_ON(!op->func) and kills ftrace.
    """
    orig_flags = tr.flags
    tlinks, total, ip_arg = bt.bpf_trampoline_get_progs(tr)
    if total == 0:
        err = bt.update_without_progs(k, tr)
        if err:
            tr.flags = orig_flags
        return err

    im = bpf_tramp_image_alloc(k, tr)
    tr.flags &= BPF_TRAMP_F.SHARE_IPMODIFY | BPF_TRAMP_F.TAIL_CALL_CTX
    tr.flags |= bt.prog_flags(BPF_TRAMP_F, tlinks, ip_arg)

    retries = 0
    while True:  # again:
        if tr.flags & BPF_TRAMP_F.SHARE_IPMODIFY and tr.flags & BPF_TRAMP_F.CALL_ORIG:
            tr.flags |= BPF_TRAMP_F.ORIG_STACK
        err, im = bt.arch_prepare_bpf_trampoline(k, im, tr.flags, tlinks, tr)
        if err < 0:
            break  # out_free
        if tr.cur_image is not None and total == 0:  # WARN_ON; cannot hold here
            k.warn("bpf_trampoline_update", "an image is installed but there are no programs")
        err = bt.attach_image(k, tr, im, lock_direct_mutex)
        if err == -Errno.EAGAIN:
            assert tr.fops is not None  # -EAGAIN comes only from the fops' ftrace calls
            tr.fops.func = None
            tr.fops.trampoline = 0
            retries += 1
            if retries > AGAIN_LIMIT:
                raise ModelError(f"bpf_trampoline_update of {tr.func_name}: -EAGAIN {retries} times in a "
                                 "row; the kernel's 'goto again' would never end")
            continue
        break
    if err:
        # out_free: bpf_tramp_image_free(im); out: restore the flags
        tr.flags = orig_flags
        return err
    bt.install_image(k, tr, im)
    return 0
