"""Linux 6.12's kernel/bpf/trampoline.c and include/linux/bpf.h (Debian's 6.12.95 tree).

The merged design as 6.12 has it (what it shares with 6.1, bpf_tramp_ftrace_ops_func and the
fops' put, is in :mod:`..merged`; bpf_trampoline_lookup's fops block and modify_fentry in
:mod:`..shared`). What differs from 6.1:

1. The direct API without ``_multi`` (:mod:`.ftrace`); unregister_fentry keeps the fops'
   filter (``free_filters`` false) and register_fentry resets it (``reset`` 1).
2. Module references are the program's, not the trampoline's (2a6427ca8f3a, v6.4): no
   bpf_trampoline_module_get / put here.
3. An image is sized before it is allocated (arch_bpf_trampoline_size: the JIT's dry run,
   :mod:`.bpf_jit`) and comes from the bpf_prog_pack allocator, so its ksym's size is the
   image's; every -EAGAIN retry frees the image and builds a new one.
4. The -EAGAIN retry resets tr->fops' func and trampoline as 6.1 does, until 56b3c85e153b
   (6.12.59) moved that reset into register_ftrace_direct's failure path (:mod:`.changes`).
5. register_fentry ignores ftrace_set_filter_ip's answer until fea3f5e83c5c (6.12.63).
6. BPF_TRAMP_F_INDIRECT (BIT(8), struct_ops only) exists.
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
from .bpf_jit import FALLBACK_MODEL, __arch_prepare_bpf_trampoline_len

#: PAGE_SIZE: the largest image bpf_trampoline_update accepts (-E2BIG above).
PAGE_SIZE = 0x1000


class BPF_TRAMP_F(enum.IntFlag):
    """BPF_TRAMP_F_* (include/linux/bpf.h, 6.12.95): 6.1's bits and INDIRECT."""

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4
    ORIG_STACK = 1 << 5
    SHARE_IPMODIFY = 1 << 6
    TAIL_CALL_CTX = 1 << 7
    INDIRECT = 1 << 8


#: The model's bound on ``goto again`` (as in 6.1: the kernel has none).
AGAIN_LIMIT = 16


def register_fentry(k: Kernel, tr: bt.bpf_trampoline, new_addr: Addr) -> int:
    """register_fentry() (trampoline.c, 6.4 .. 6.12.62): filter ip with reset=1 (its answer ignored),
    register_ftrace_direct. An ftrace location without a fops is -ENOTSUPP."""
    ip = tr.func_addr
    if ftrace_location(k, ip):
        if tr.fops is None:
            return -Errno.ENOTSUPP
        tr.ftrace_managed = True
    if tr.ftrace_managed:
        assert tr.fops is not None
        ftrace_set_filter_ip(k, tr.fops, ip, False, True)
        return direct.register_ftrace_direct_multi(k, tr.fops, new_addr)
    return bt.bpf_arch_text_poke(k, tr, None, new_addr)


def unregister_fentry(k: Kernel, tr: bt.bpf_trampoline, old_addr: Addr) -> int:
    """unregister_fentry() (trampoline.c, 6.4+): unregister_ftrace_direct(tr->fops, old, false)."""
    if tr.ftrace_managed:
        assert tr.fops is not None
        return direct.unregister_ftrace_direct_multi(k, tr.fops, old_addr)  # the policy's: free_filters false
    return bt.bpf_arch_text_poke(k, tr, old_addr, None)


def arch_bpf_trampoline_size(k: Kernel, flags: int, tlinks: tuple[tuple[bt.BpfProgram, ...], ...],
                             tr: bt.bpf_trampoline) -> int:
    """arch_bpf_trampoline_size() (arch/x86/net/bpf_jit_comp.c, 6.6+): the size of the image the JIT
    builds for ``flags`` and ``tlinks`` on ``tr``'s function, by a dry run of
    __arch_prepare_bpf_trampoline (:mod:`.bpf_jit`).

    The function's model (tr->func.model: its arguments' sizes, btf_distill_func_proto) is its
    record's in the catalogue (the kernel's BTF, shipped with 6.12's catalogue); a function whose
    model the catalogue does not carry gets the kernel's no-prototype model, five u64 arguments.
    """
    i = k.cat.index(tr.func_addr)
    m = k.cat.func_model(i) if i is not None else None
    return __arch_prepare_bpf_trampoline_len(m if m is not None else FALLBACK_MODEL, flags,
                                             tuple(len(progs) for progs in tlinks), k.policy.BPF_TRAMP_F)


def bpf_tramp_image_alloc(k: Kernel, tr: bt.bpf_trampoline, size: int) -> bt.bpf_tramp_image:
    """bpf_tramp_image_alloc(key, size) (trampoline.c, 6.8+): ``size`` bytes of bpf_prog_pack, ksym
    ``bpf_trampoline_<key>`` of that size (the model's ``#0`` / ``#1`` tell the old and the new image
    apart, as in 6.1; %pS strips it)."""
    n = 1 if tr.cur_image is not None and tr.cur_image.addr.endswith("#0") else 0
    return bt.bpf_tramp_image(addr=f"{bt.IMAGE_PREFIX}{tr.key}#{n}", key=tr.key, ip=tr.func_addr, size=size)


def retry_reset_fops(tr: bt.bpf_trampoline) -> None:
    """The -EAGAIN block of bpf_trampoline_update() (trampoline.c, 6.12 .. 6.12.58): ``tr->fops->func
    = NULL; tr->fops->trampoline = 0`` before the retry (56b3c85e153b deletes these two lines)."""
    assert tr.fops is not None  # -EAGAIN comes only from the fops' ftrace calls
    tr.fops.func = None
    tr.fops.trampoline = 0


def bpf_trampoline_update(k: Kernel, tr: bt.bpf_trampoline, lock_direct_mutex: bool) -> int:
    """bpf_trampoline_update() (trampoline.c, 6.12): rebuild from tr->flags, size and allocate the image,
    register (first image) or modify.

    As in 6.1 (:func:`ftlab.model.policies.linux_6_1.trampoline.bpf_trampoline_update`), but the
    image is sized first (-E2BIG above a page), and each -EAGAIN frees the image and starts
    again at ``again:`` after :func:`retry_reset_fops`; any error restores the flags of the start.
    """
    orig_flags = tr.flags
    tlinks, total, ip_arg = bt.bpf_trampoline_get_progs(tr)
    if total == 0:
        err = bt.update_without_progs(k, tr)
        if err:
            tr.flags = orig_flags
        return err

    tr.flags &= BPF_TRAMP_F.SHARE_IPMODIFY | BPF_TRAMP_F.TAIL_CALL_CTX
    tr.flags |= bt.prog_flags(BPF_TRAMP_F, tlinks, ip_arg)

    retries = 0
    while True:  # again:
        if tr.flags & BPF_TRAMP_F.SHARE_IPMODIFY and tr.flags & BPF_TRAMP_F.CALL_ORIG:
            tr.flags |= BPF_TRAMP_F.ORIG_STACK
        size = arch_bpf_trampoline_size(k, tr.flags, tlinks, tr)
        if size < 0:
            err = size
            break
        if size > PAGE_SIZE:
            err = -Errno.E2BIG
            break
        im = bpf_tramp_image_alloc(k, tr, size)
        err, im = bt.arch_prepare_bpf_trampoline(k, im, tr.flags, tlinks, tr)
        if err < 0:
            break  # out_free
        if tr.cur_image is not None and total == 0:  # WARN_ON; cannot hold here
            k.warn("bpf_trampoline_update", "an image is installed but there are no programs")
        err = bt.attach_image(k, tr, im, lock_direct_mutex)
        if err == -Errno.EAGAIN:
            retry_reset_fops(tr)
            # bpf_tramp_image_free(im); goto again
            retries += 1
            if retries > AGAIN_LIMIT:
                raise ModelError(f"bpf_trampoline_update of {tr.func_name}: -EAGAIN {retries} times in a "
                                 "row; the kernel's 'goto again' would never end")
            continue
        break
    if err:
        tr.flags = orig_flags  # out_free / out: restore the flags
        return err
    bt.install_image(k, tr, im)
    return 0
