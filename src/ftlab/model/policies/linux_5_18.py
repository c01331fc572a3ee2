"""Policy ``linux-5.18``: before the series (any 5.5-5.19 kernel; the code did not change there).

Facts §5: every direct ops carries IPMODIFY (MULTI_FLAGS and the legacy direct_ops), there is no
ops_func and no SHARE_IPMODIFY, and __ftrace_hash_update_ipmodify only knows IPMODIFY ops: a
second one on a record is refused with -EBUSY after a rollback. So a live patch and a BPF
trampoline refuse each other with -EBUSY in both orders. register_ftrace_function takes only
ftrace_lock. The BPF trampoline of this era attaches through the legacy single-ip API
(register_ftrace_direct / modify_ftrace_direct / unregister_ftrace_direct on the shared
``direct_ops``), which this module models too. Sources: the removed ("-") lines of the seed
series, kernel/trace/ftrace.c of 6.1 for the unchanged parts, facts §5.

The last section is the BPF trampoline of this era (kernel/bpf/trampoline.c): no fops, no
ops_func, no ORIG_STACK; every trampoline attaches through the legacy API, so its record carries
direct_ops' IPMODIFY and a live patch on the same function is refused in either order.
"""

from __future__ import annotations

import enum

from ..clients import bpf
from ..direct import (CALL_DIRECT_FUNCS, check_direct_multi, ftrace_add_rec_direct,
                      register_direct_multi_body, tmp_ops)
from ..errno import Errno
from ..flags import OPSF, RECF
from ..ftrace import (FTRACE_REGS_ADDR, ftrace_find_rec_direct, ftrace_hash_ipmodify_rollback,
                      ftrace_location, ftrace_ops_init, ftrace_set_filter_ip, ftrace_shutdown,
                      ftrace_startup)
from ..hash import ftrace_hash
from ..kernel import Kernel
from ..locks import mutex_lock, mutex_unlock
from ..ops import Addr, ftrace_ops

F = OPSF
R = RECF

NAME = "linux-5.18"
KERNEL = "Linux 5.18 (5.5-5.19: before the series)"
DESCRIPTION = "before the series: IPMODIFY and DIRECT exclude each other (-EBUSY), no ops_func"
HAS_OPS_FUNC = False
HAS_SHARE_IPMODIFY_FLAG = False

#: MULTI_FLAGS (ftrace.c) before v2 1/5: IPMODIFY is forced on direct_multi ops, and assigned.
MULTI_FLAGS = F.IPMODIFY | F.DIRECT | F.SAVE_REGS


class ftrace_ops_cmd(enum.IntEnum):
    """5.18 has no enum ftrace_ops_cmd (and no ops_func): empty."""


def __ftrace_hash_update_ipmodify(k: Kernel, ops: ftrace_ops, old_hash: ftrace_hash | None,
                                  new_hash: ftrace_hash | None) -> int:
    """__ftrace_hash_update_ipmodify() (ftrace.c, 5.18): one IPMODIFY ops per record, else -EBUSY."""
    if not ops.flags & F.ENABLED:
        return 0
    if not ops.flags & F.IPMODIFY:
        return 0
    if new_hash is None or old_hash is None:
        return -Errno.EINVAL
    cat = k.cat
    diff = sorted(old_hash.ips ^ new_hash.ips)
    end = None
    for ip in diff:
        i = cat.index(ip)
        if i is None:
            continue
        flags = k.get_flags(i)
        if flags & R.DISABLED:
            continue
        if ip in new_hash.ips:
            if flags & R.IPMODIFY:
                end = ip
                break
            k.set_flags(i, flags | R.IPMODIFY)
        else:
            k.set_flags(i, flags & ~R.IPMODIFY)
    else:
        return 0
    return ftrace_hash_ipmodify_rollback(k, diff, old_hash, new_hash, end)  # type: ignore[arg-type]


def register_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function() (ftrace.c, 5.18): ftrace_ops_init, ftrace_startup under ftrace_lock."""
    ftrace_ops_init(k, ops)
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_startup(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    return ret


def unregister_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """unregister_ftrace_function() (ftrace.c, 5.18): ftrace_shutdown under ftrace_lock."""
    mutex_lock(k, "ftrace_lock")
    ret = ftrace_shutdown(k, ops, 0)
    mutex_unlock(k, "ftrace_lock")
    return ret


def register_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """register_ftrace_direct_multi() (ftrace.c, 5.18): ``flags = MULTI_FLAGS`` (with IPMODIFY)."""
    return register_direct_multi_body(k, ops, addr, register=register_ftrace_function, or_flags=False)


def modify_ftrace_direct_multi(k: Kernel, ops: ftrace_ops, addr: Addr) -> int:
    """modify_ftrace_direct_multi() (ftrace.c, 5.18): tmp_ops under direct_mutex, re-point entries."""
    if check_direct_multi(k, ops):
        return -Errno.EINVAL
    if not ops.flags & F.ENABLED:
        return -Errno.EINVAL
    mutex_lock(k, "direct_mutex")
    tmp = tmp_ops(k)
    ftrace_ops_init(k, tmp)
    tmp.func_hash = ops.hash
    err = register_ftrace_function(k, tmp)
    if not err:
        mutex_lock(k, "ftrace_lock")
        for ip in ops.hash.filter_hash or ():
            if ip in k.direct_functions:
                k.direct_functions[ip] = addr
        mutex_unlock(k, "ftrace_lock")
        unregister_ftrace_function(k, tmp)
    mutex_unlock(k, "direct_mutex")
    return err


# ---------------------------------------------------------------------------------------------
# The legacy single-ip API (what the 5.18 BPF trampoline uses)
# ---------------------------------------------------------------------------------------------
def direct_ops(k: Kernel) -> ftrace_ops:
    """The static ``direct_ops`` (ftrace.c, 5.18): IPMODIFY|DIRECT|SAVE_REGS|PERMANENT, preset trampoline."""
    ops = k.statics.get("direct_ops")
    if ops is None:
        ops = ftrace_ops("direct_ops", CALL_DIRECT_FUNCS,
                         F.IPMODIFY | F.DIRECT | F.SAVE_REGS | F.PERMANENT,
                         trampoline=FTRACE_REGS_ADDR, core_data=True)
        k.statics["direct_ops"] = ops
    return ops


def _stub_ops(k: Kernel) -> ftrace_ops:
    """The static ``stub_ops`` of ftrace_modify_direct_caller (ftrace.c)."""
    ops = k.statics.get("stub_ops")
    if ops is None:
        ops = k.statics["stub_ops"] = ftrace_ops("stub_ops", "ftrace_stub", 0, core_data=True)
    return ops


def register_ftrace_direct(k: Kernel, ip: int, addr: Addr) -> int:
    """register_ftrace_direct() (ftrace.c, 5.18): add ``ip`` to direct_ops, registering it on first use.

    Without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS it is the ftrace.h inline stub: -ENODEV.
    """
    if not k.arch.direct_calls:
        return -Errno.ENODEV
    mutex_lock(k, "direct_mutex")
    try:
        ip = ftrace_location(k, ip)
        if not ip:
            return -Errno.ENODEV
        if ftrace_find_rec_direct(k, ip):
            return -Errno.EBUSY
        if k.rec(ip).flags & R.DIRECT:
            k.warn("register_ftrace_direct", "record already DIRECT")
            return -Errno.ENODEV
        ftrace_add_rec_direct(k, ip, addr)
        ops = direct_ops(k)
        ret = ftrace_set_filter_ip(k, ops, ip, False, False)
        if not ret and not ops.flags & F.ENABLED:
            ret = register_ftrace_function(k, ops)
            if ret:
                ftrace_set_filter_ip(k, ops, ip, True, False)
        if ret:
            del k.direct_functions[ip]
        return ret
    finally:
        mutex_unlock(k, "direct_mutex")


def unregister_ftrace_direct(k: Kernel, ip: int, addr: Addr) -> int:
    """unregister_ftrace_direct() (ftrace.c, 5.18): drop ``ip``; unregister direct_ops with its last ip.

    Without DIRECT_CALLS: the ftrace.h stub, -ENODEV.
    """
    if not k.arch.direct_calls:
        return -Errno.ENODEV
    mutex_lock(k, "direct_mutex")
    try:
        ip = ftrace_location(k, ip)
        if not ip or ip not in k.direct_functions:
            return -Errno.ENODEV
        ops = direct_ops(k)
        hash = ops.hash.filter_hash
        if hash is not None and hash.count == 1:
            unregister_ftrace_function(k, ops)
        ret = ftrace_set_filter_ip(k, ops, ip, True, False)
        if ret:
            k.warn("unregister_ftrace_direct", f"filter removal failed ({ret})")
        del k.direct_functions[ip]
        return ret
    finally:
        mutex_unlock(k, "direct_mutex")


def ftrace_modify_direct_caller(k: Kernel, ip: int, new_addr: Addr) -> int:
    """ftrace_modify_direct_caller() (ftrace.c, 5.18): a stub ops forces the list function meanwhile.

    Called with direct_mutex and ftrace_lock held; drops ftrace_lock around the stub registration.
    """
    mutex_unlock(k, "ftrace_lock")
    stub = _stub_ops(k)
    ret = ftrace_set_filter_ip(k, stub, ip, False, False)
    if not ret:
        ret = register_ftrace_function(k, stub)
        if ret:
            ftrace_set_filter_ip(k, stub, ip, True, False)
        else:
            k.direct_functions[ip] = new_addr
            unregister_ftrace_function(k, stub)
            ftrace_set_filter_ip(k, stub, ip, True, False)
    mutex_lock(k, "ftrace_lock")
    return ret


def modify_ftrace_direct(k: Kernel, ip: int, old_addr: Addr, new_addr: Addr) -> int:
    """modify_ftrace_direct() (ftrace.c, 5.18): re-point one ip's direct trampoline.

    Without DIRECT_CALLS: the ftrace.h stub, -ENODEV.
    """
    if not k.arch.direct_calls:
        return -Errno.ENODEV
    mutex_lock(k, "direct_mutex")
    mutex_lock(k, "ftrace_lock")
    try:
        ip = ftrace_location(k, ip)
        if not ip or ip not in k.direct_functions:
            return -Errno.ENODEV
        if k.direct_functions[ip] != old_addr:
            return -Errno.EINVAL
        if k.rec(ip).count == 1:
            return ftrace_modify_direct_caller(k, ip, new_addr)
        k.direct_functions[ip] = new_addr
        return 0
    finally:
        mutex_unlock(k, "ftrace_lock")
        mutex_unlock(k, "direct_mutex")


# =============================================================================================
# kernel/bpf/trampoline.c (before the series) and include/linux/bpf.h
# =============================================================================================
# The BPF trampoline as it stood before Song Liu's series (the "-" lines of v2 5/5; 5.18's
# trampoline.c had the same flow, with bpf_tramp_progs where bpf-next had bpf_tramp_links):
# no tr->fops, no ops_func, no indirect_call, no BPF_TRAMP_F_ORIG_STACK. Every trampoline's image
# is registered on the one shared, static ``direct_ops`` (IPMODIFY|DIRECT|SAVE_REGS|PERMANENT)
# through register_ftrace_direct(ip, addr), re-pointed with modify_ftrace_direct(ip, old, new)
# and removed with unregister_ftrace_direct(ip, addr). Because direct_ops carries IPMODIFY, a
# live patch and a BPF trampoline refuse each other with -EBUSY in both orders (facts §5):
# live patch first -> the filter change of a live direct_ops, or the registration of a fresh
# one, fails in __ftrace_hash_update_ipmodify; BPF first -> the live patch's registration does.

class BPF_TRAMP_F(enum.IntFlag):
    """BPF_TRAMP_F_* (include/linux/bpf.h, 5.18): no ORIG_STACK (4/5 of the series adds it)."""

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4


def register_fentry(k: Kernel, tr: "bpf.bpf_trampoline", new_addr: Addr) -> int:
    """register_fentry() (trampoline.c, 5.18): register_ftrace_direct(ip, new_addr) on the shared direct_ops."""
    ip = tr.func_addr
    if ftrace_location(k, ip):
        tr.ftrace_managed = True
    if bpf.bpf_trampoline_module_get(k, tr):
        return -Errno.ENOENT
    if tr.ftrace_managed:
        ret = register_ftrace_direct(k, ip, new_addr)
    else:
        ret = bpf.bpf_arch_text_poke(k, tr, None, new_addr)
    if ret:
        bpf.bpf_trampoline_module_put(k, tr)
    return ret


def modify_fentry(k: Kernel, tr: "bpf.bpf_trampoline", old_addr: Addr, new_addr: Addr) -> int:
    """modify_fentry() (trampoline.c, 5.18): modify_ftrace_direct(ip, old_addr, new_addr); no lock argument."""
    if tr.ftrace_managed:
        return modify_ftrace_direct(k, tr.func_addr, old_addr, new_addr)
    return bpf.bpf_arch_text_poke(k, tr, old_addr, new_addr)


def unregister_fentry(k: Kernel, tr: "bpf.bpf_trampoline", old_addr: Addr) -> int:
    """unregister_fentry() (trampoline.c, 5.18): unregister_ftrace_direct(ip, old_addr), module put on success."""
    if tr.ftrace_managed:
        ret = unregister_ftrace_direct(k, tr.func_addr, old_addr)
    else:
        ret = bpf.bpf_arch_text_poke(k, tr, old_addr, None)
    if not ret:
        bpf.bpf_trampoline_module_put(k, tr)
    return ret


def bpf_tramp_image_alloc(k: Kernel, tr: "bpf.bpf_trampoline", idx: int) -> "bpf.bpf_tramp_image":
    """bpf_tramp_image_alloc(key, idx) (trampoline.c, 5.18): a fresh page, ksym ``bpf_trampoline_<key>_<idx>``."""
    return bpf.bpf_tramp_image(addr=f"{bpf.IMAGE_PREFIX}{tr.key}_{idx}", key=tr.key, ip=tr.func_addr)


def bpf_trampoline_update(k: Kernel, tr: "bpf.bpf_trampoline", lock_direct_mutex: bool = True) -> int:
    """bpf_trampoline_update() (trampoline.c, 5.18): rebuild the image and (re)attach it, no retry.

    The kernel function has no ``lock_direct_mutex`` parameter (the series adds it); the model
    accepts and ignores it so that the shared link/unlink code calls every version alike.
    Caller holds tr->mutex. No programs: unregister_fentry, drop the image, selector = 0.
    Otherwise JIT a new image (CALL_ORIG|SKIP_FRAME with fexit or fmod_ret programs, else
    RESTORE_REGS; IP_ARG if a program wants the ip) and register it (first image) or modify to
    it; any error is returned as is. A failed update leaks its image (not modelled).
    """
    tlinks, total, ip_arg = bpf.bpf_trampoline_get_progs(tr)
    if total == 0:
        err = unregister_fentry(k, tr, bpf.cur_image_of_empty(k, tr).addr)
        bpf.bpf_tramp_image_put(k, tr.cur_image)
        tr.cur_image = None
        tr.selector = 0
        return err

    im = bpf_tramp_image_alloc(k, tr, tr.selector)
    flags = BPF_TRAMP_F.RESTORE_REGS
    if bpf.has_call_orig(tlinks):
        flags = BPF_TRAMP_F.CALL_ORIG | BPF_TRAMP_F.SKIP_FRAME
    if ip_arg:
        flags |= BPF_TRAMP_F.IP_ARG
    err, im = bpf.arch_prepare_bpf_trampoline(k, im, flags, tlinks, tr)
    if err < 0:
        return err
    if tr.cur_image is not None and tr.selector == 0:
        k.warn("bpf_trampoline_update", "an image is installed but the selector is 0")
    if tr.cur_image is None and tr.selector:
        k.warn("bpf_trampoline_update", "no image is installed but the selector is not 0")
    if tr.cur_image is not None:
        err = modify_fentry(k, tr, tr.cur_image.addr, im.addr)
    else:
        err = register_fentry(k, tr, im.addr)
    if err:
        return err
    if tr.cur_image is not None:
        bpf.bpf_tramp_image_put(k, tr.cur_image)
    tr.cur_image = im
    tr.selector += 1
    return 0
