"""BPF trampolines (fentry / fexit / fmod_ret) as kernel/bpf/trampoline.c with the seed's 4/5 and 5/5.

Kernel source: kernel/bpf/trampoline.c and include/linux/bpf.h of bpf-next in June 2022 with
Song Liu's v2 series applied (policy ``seed-v2``): 5/5 gives every trampoline its own direct
ftrace_ops (``tr->fops``, ops_func = bpf_tramp_ftrace_ops_func) and the ``indirect_call`` retry;
4/5 adds BPF_TRAMP_F_ORIG_STACK to the x86 JIT (arch/x86/net/bpf_jit_comp.c). The attach checks
are kernel/bpf/verifier.c (bpf_check_attach_target, check_attach_modify_return, btf_id_deny) and
kernel/bpf/syscall.c (bpf_tracing_prog_attach, bpf_tracing_link_release), on Debian's 6.1
config. Each Python function models the kernel function of the same name; C's globals
(trampoline_table, trampoline_mutex) live in ``k.subsys["bpf"]`` (:class:`BpfState`), so
``Kernel.copy()`` deep-copies them with the rest of the state.

Theory of operation (the rules this module owns):

1. One ``bpf_trampoline`` per attach target, found by key in the trampoline table under
   ``trampoline_mutex``; a link holds one reference; the last put frees it (and its fops).
2. Program lists per kind (fentry, fexit, fmod_ret) are changed under the per-trampoline mutex
   ``tr->mutex[<key>]``; a new link goes to the *head* of its list, so the most recently
   attached program of a kind runs first. At most BPF_MAX_TRAMP_LINKS (38) links (-E2BIG); a
   program already linked is -EBUSY.
3. Every change rebuilds the image (bpf_trampoline_update): fexit or fmod_ret present ->
   CALL_ORIG|SKIP_FRAME (the image calls the function and returns to its caller), else
   RESTORE_REGS (fentry only: the image returns into the function). ``indirect_call`` adds
   ORIG_STACK: call the address at [rbp+8] (whatever the fentry call returned to, e.g. a live
   patch's new_func when entered through ftrace_regs_caller) instead of func+5.
4. First image: register_fentry (ip into tr->fops' filter, register_ftrace_direct_multi);
   later images: modify_fentry (modify_ftrace_direct_multi, or the _nolock twin when the caller
   already holds direct_mutex); no programs left: unregister_fentry.
5. IPMODIFY first (a live patch): the registration gets -EAGAIN from the seed's
   __ftrace_hash_update_ipmodify (#4); on the *first* registration only, the trampoline sets
   indirect_call, resets fops->func / fops->trampoline and JITs again with ORIG_STACK; fops gets
   FTRACE_OPS_FL_SHARE_IPMODIFY (#5) and the retry succeeds. Two WARN_ON_ONCE guards give up
   instead if indirect_call was already set or an image already exists.
6. DIRECT first: prepare_direct_functions_for_ipmodify calls bpf_tramp_ftrace_ops_func(ENABLE)
   with direct_mutex held; it *trylocks* tr->mutex (-EAGAIN when busy), sets indirect_call and
   rebuilds with lock_direct_mutex=false.
7. indirect_call is never cleared by v2 ftrace (DISABLE is never sent): it sticks for the life
   of the trampoline object, also after the live patch is gone.

Naming. The trampoline key is bpf_trampoline_compute_key (include/linux/bpf_verifier.h) for a
kernel function: ``(btf_obj_id(vmlinux) << 32) | 0x80000000 | btf_id``, with
btf_obj_id(vmlinux) = 1 (the first BTF object) and a synthetic ``btf_id`` = record index + 1
(real BTF ids differ; the model needs only one distinct id per record). The image of each
update is a fresh page whose ksym bpf_tramp_image_alloc names, in the v2-era tree,
``bpf_trampoline_<key>_<selector>`` (``tr->selector`` counts images and is reset to 0 when the
last program goes; Linux 6.0+ dropped the selector and prints ``bpf_trampoline_<key>``). The
model uses that name as the image's code address: it is unique among live images. %pS, and so
enabled_functions, prints it as ``direct-->bpf_trampoline_<key>_<selector>+0x0/0x1000`` (one
page, symbol start).

Not modelled: freplace (extension) programs, targets that are not ftrace locations
(bpf_arch_text_poke), module targets (module_get is always 0 for vmlinux), sleepable programs,
BPF LSM / cgroup shims, the RCU / percpu_ref lifetime of old images (an image is dropped when
replaced), and the image the v2-era code leaks when an update fails after allocating it. The
program's load and its link creation are one step (:func:`bpf_attach`), so a loaded but
unattached program never holds a trampoline reference.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from ...errors import InputError, ModelError
from .. import direct, ftrace
from ..calls import CallContext, addr_str, register_code, run_body
from ..errno import Errno
from ..flags import FTRACE_OPS_FL
from ..locks import mutex_is_locked, mutex_lock, mutex_trylock, mutex_unlock
from ..ops import Addr, ftrace_ops

if TYPE_CHECKING:  # pragma: no cover
    from ..kernel import Kernel

F = FTRACE_OPS_FL


class BPF_TRAMP_F(enum.IntFlag):
    """BPF_TRAMP_F_* flags of arch_prepare_bpf_trampoline (include/linux/bpf.h, with the seed's 4/5)."""

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4
    ORIG_STACK = 1 << 5  # 4/5


class bpf_tramp_prog_type(enum.IntEnum):
    """enum bpf_tramp_prog_type (include/linux/bpf.h)."""

    BPF_TRAMP_FENTRY = 0
    BPF_TRAMP_FEXIT = 1
    BPF_TRAMP_MODIFY_RETURN = 2
    BPF_TRAMP_MAX = 3
    BPF_TRAMP_REPLACE = 4


#: BPF_MAX_TRAMP_LINKS (include/linux/bpf.h, x86_64).
BPF_MAX_TRAMP_LINKS = 38
#: X86_PATCH_SIZE / MCOUNT_INSN_SIZE: orig_call = func + 5, the original body.
X86_PATCH_SIZE = 5
#: btf_obj_id(btf_vmlinux): vmlinux BTF is the first BTF object registered.
VMLINUX_BTF_OBJ_ID = 1
#: SECURITY_PREFIX (kernel/bpf/verifier.c: check_attach_modify_return).
SECURITY_PREFIX = "security_"
#: Functions on the error-injection list (kernel/bpf/verifier.c: within_error_injection_list).
#: Debian's 6.1 config has CONFIG_FUNCTION_ERROR_INJECTION unset, so the list is empty.
ERROR_INJECTION_LIST: frozenset[str] = frozenset()
#: btf_id_deny (kernel/bpf/verifier.c) on Debian's 6.1 config: CONFIG_SMP=y, CONFIG_PREEMPT_RCU=y,
#: CONFIG_DEBUG_PREEMPT and CONFIG_TRACE_PREEMPT_TOGGLE unset.
BTF_ID_DENY: frozenset[str] = frozenset({"migrate_disable", "migrate_enable"})
#: Size of a trampoline image (one page), as %pS prints it.
BPF_IMAGE_SIZE = 0x1000
#: Prefix of every image address (for the call-path code registry).
IMAGE_PREFIX = "bpf_trampoline_"

#: Program kinds of the friendly API -> expected_attach_type -> trampoline list.
KINDS: dict[str, bpf_tramp_prog_type] = {
    "fentry": bpf_tramp_prog_type.BPF_TRAMP_FENTRY,
    "fexit": bpf_tramp_prog_type.BPF_TRAMP_FEXIT,
    "fmod_ret": bpf_tramp_prog_type.BPF_TRAMP_MODIFY_RETURN,
}
_KIND_NAME = {v: k for k, v in KINDS.items()}


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BpfProgram:
    """A BPF_PROG_TYPE_TRACING program: struct bpf_prog as far as the trampoline sees it.

    ``kind``: ``fentry`` (BPF_TRACE_FENTRY), ``fexit`` (BPF_TRACE_FEXIT) or ``fmod_ret``
    (BPF_MODIFY_RETURN). ``target`` / ``sympos``: the attach function (sympos picks a duplicated
    name; the real kernel resolves a name with kallsyms_lookup_name, i.e. the first). ``ret``:
    what the program returns (only an fmod_ret program's value has an effect). ``get_func_ip``:
    the program calls bpf_get_func_ip (prog->call_get_func_ip, which sets IP_ARG). Programs are
    values: two equal BpfPrograms are the same program.
    """

    name: str
    kind: str
    target: str
    sympos: int = 0
    ret: int = 0
    get_func_ip: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown BPF program kind {self.kind!r} (known: {', '.join(KINDS)})")

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(eq=False)
class bpf_tramp_link:
    """struct bpf_tramp_link (include/linux/bpf.h): a program's link into one trampoline list.

    ``hashed`` is ``!hlist_unhashed(&link->tramp_hlist)``; ``key`` names the trampoline the
    link holds a reference on (link->trampoline).
    """

    prog: BpfProgram
    key: int = 0
    hashed: bool = False


@dataclass(frozen=True)
class bpf_tramp_image:
    """struct bpf_tramp_image (include/linux/bpf.h) with the model's record of the JITed code.

    ``addr``: the image's code address (its ksym name). ``flags``, ``progs`` (per kind, list
    order at JIT time) and ``orig_call`` are what arch_prepare_bpf_trampoline compiled in.
    """

    addr: str
    key: int
    ip: int
    flags: BPF_TRAMP_F = BPF_TRAMP_F(0)
    progs: tuple[tuple[BpfProgram, ...], ...] = ((), (), ())
    orig_call: Addr = 0

    def key_tuple(self) -> tuple:
        return (self.addr, int(self.flags), tuple(tuple(str(p) for p in ps) for ps in self.progs),
                self.orig_call)


@dataclass(eq=False)
class bpf_trampoline:
    """struct bpf_trampoline (include/linux/bpf.h) with the seed's 5/5 ``fops`` and ``indirect_call``.

    ``kernel`` stands for the kernel globals C reaches from bpf_tramp_ftrace_ops_func (whose
    ftrace_ops_func_t signature carries only the ops and the command).
    """

    key: int
    kernel: "Kernel"
    fops: ftrace_ops
    mutex: str
    refcnt: int = 1
    func_addr: int = 0            # tr->func.addr
    func_name: str = ""
    ftrace_managed: bool = False  # tr->func.ftrace_managed
    progs_hlist: list[list[bpf_tramp_link]] = field(default_factory=lambda: [[], [], []])
    progs_cnt: list[int] = field(default_factory=lambda: [0, 0, 0])
    cur_image: bpf_tramp_image | None = None
    selector: int = 0
    indirect_call: bool = False
    extension_prog: BpfProgram | None = None  # freplace; never set by this model

    def key_tuple(self) -> tuple:
        """Hashable value of this trampoline (canonical state forms)."""
        return (self.key, self.refcnt, self.func_addr, self.ftrace_managed,
                tuple(tuple(str(link.prog) for link in lst) for lst in self.progs_hlist),
                tuple(self.progs_cnt), self.cur_image.key_tuple() if self.cur_image else None,
                self.selector, self.indirect_call)


@dataclass
class BpfState:
    """The BPF globals of one kernel: trampoline_table (kernel/bpf/trampoline.c) and open links."""

    trampoline_table: dict[int, bpf_trampoline] = field(default_factory=dict)
    links: dict[BpfProgram, bpf_tramp_link] = field(default_factory=dict)

    def key(self) -> tuple:
        return (tuple(tr.key_tuple() for _, tr in sorted(self.trampoline_table.items())),
                tuple(sorted((str(p), link.key) for p, link in self.links.items())))


def bpf_state(k: "Kernel") -> BpfState:
    """The BPF subsystem state of ``k`` (created on first use)."""
    st: BpfState | None = k.subsys.get("bpf")
    if st is None:
        st = k.subsys["bpf"] = BpfState()
    return st


def bpf_key(k: "Kernel") -> tuple:
    """Canonical, hashable form of the BPF state (complements ``k.key()``)."""
    st: BpfState | None = k.subsys.get("bpf")
    return st.key() if st is not None else BpfState().key()


def _check_policy(k: "Kernel") -> None:
    """Refuse policies whose trampoline.c this module does not model (only seed-v2 has SHARE)."""
    if not getattr(k.policy, "HAS_SHARE_IPMODIFY_FLAG", False):
        raise ModelError(f"ftlab.model.clients.bpf models trampoline.c with the seed's 4/5 and 5/5; "
                         f"policy {k.policy.name} needs its own variant")


# ---------------------------------------------------------------------------------------------
# Keys, lookup, get/put
# ---------------------------------------------------------------------------------------------
def btf_id_of(k: "Kernel", ip: int) -> int:
    """The synthetic BTF id of the function at ``ip``: record index + 1 (BTF id 0 is void)."""
    return k.rec_index(ip) + 1


def bpf_trampoline_compute_key(btf_obj_id: int, btf_id: int) -> int:
    """bpf_trampoline_compute_key() (include/linux/bpf_verifier.h), seed-v2: key of a kernel function."""
    return (btf_obj_id << 32) | 0x80000000 | btf_id


def tr_mutex_name(key: int) -> str:
    """The name of ``tr->mutex`` in the kernel's lock table."""
    return f"tr->mutex[{key}]"


def bpf_trampoline_lookup(k: "Kernel", key: int) -> bpf_trampoline:
    """bpf_trampoline_lookup() (trampoline.c), seed v2 5/5: find or allocate, with tr->fops.

    Under trampoline_mutex: an existing trampoline gets refcount + 1; a new one gets its own
    zeroed ftrace_ops with private = tr and ops_func = bpf_tramp_ftrace_ops_func, refcount 1.
    """
    _check_policy(k)
    st = bpf_state(k)
    mutex_lock(k, "trampoline_mutex")
    tr = st.trampoline_table.get(key)
    if tr is not None:
        tr.refcnt += 1
    else:
        fops = ftrace_ops(f"tr->fops[{key}]", None, 0, ops_func=bpf_tramp_ftrace_ops_func)
        tr = bpf_trampoline(key=key, kernel=k, fops=fops, mutex=tr_mutex_name(key))
        fops.private = tr
        st.trampoline_table[key] = tr
    mutex_unlock(k, "trampoline_mutex")
    return tr


def bpf_trampoline_get(k: "Kernel", key: int, ip: int) -> bpf_trampoline:
    """bpf_trampoline_get() (trampoline.c), seed-v2: lookup, then set tr->func.addr once under tr->mutex."""
    tr = bpf_trampoline_lookup(k, key)
    mutex_lock(k, tr.mutex)
    if not tr.func_addr:
        tr.func_addr = ip
        tr.func_name = k.cat.name_of_ip(ip)
    mutex_unlock(k, tr.mutex)
    return tr


def bpf_trampoline_put(k: "Kernel", tr: bpf_trampoline) -> None:
    """bpf_trampoline_put() (trampoline.c), seed v2 5/5: drop a reference; the last frees tr and fops."""
    st = bpf_state(k)
    mutex_lock(k, "trampoline_mutex")
    try:
        tr.refcnt -= 1
        if tr.refcnt:
            return
        if mutex_is_locked(k, tr.mutex):
            k.warn("bpf_trampoline_put", f"{tr.mutex} is locked", once=True)
        for lst in tr.progs_hlist:
            if lst:
                k.warn("bpf_trampoline_put", f"trampoline {tr.key} still has programs", once=True)
                return
        del st.trampoline_table[tr.key]  # unhashed and freed, fops with it
    finally:
        mutex_unlock(k, "trampoline_mutex")


# ---------------------------------------------------------------------------------------------
# ftrace side: register / modify / unregister the direct call
# ---------------------------------------------------------------------------------------------
def bpf_trampoline_module_get(k: "Kernel", tr: bpf_trampoline) -> int:
    """bpf_trampoline_module_get() (trampoline.c), seed-v2: vmlinux targets have no module; always 0."""
    return 0


def bpf_trampoline_module_put(k: "Kernel", tr: bpf_trampoline) -> None:
    """bpf_trampoline_module_put() (trampoline.c), seed-v2: nothing to put for vmlinux targets."""


def register_fentry(k: "Kernel", tr: bpf_trampoline, new_addr: str) -> int:
    """register_fentry() (trampoline.c), seed v2 5/5: filter ip (reset=0), direct_multi, undo on failure."""
    ip = tr.func_addr
    if ftrace.ftrace_location(k, ip):
        tr.ftrace_managed = True
    if bpf_trampoline_module_get(k, tr):
        return -Errno.ENOENT
    if not tr.ftrace_managed:
        raise ModelError(f"{tr.func_name}: bpf_arch_text_poke targets are not modelled")
    ftrace.ftrace_set_filter_ip(k, tr.fops, ip, False, False)
    ret = direct.register_ftrace_direct_multi(k, tr.fops, new_addr)
    if ret:
        ftrace.ftrace_set_filter_ip(k, tr.fops, ip, True, False)
        bpf_trampoline_module_put(k, tr)
    return ret


def modify_fentry(k: "Kernel", tr: bpf_trampoline, old_addr: str, new_addr: str,
                  lock_direct_mutex: bool) -> int:
    """modify_fentry() (trampoline.c), seed v2 5/5: modify_ftrace_direct_multi or its _nolock twin."""
    if not tr.ftrace_managed:
        raise ModelError(f"{tr.func_name}: bpf_arch_text_poke targets are not modelled")
    if lock_direct_mutex:
        return direct.modify_ftrace_direct_multi(k, tr.fops, new_addr)
    return direct.modify_ftrace_direct_multi_nolock(k, tr.fops, new_addr)


def unregister_fentry(k: "Kernel", tr: bpf_trampoline, old_addr: str) -> int:
    """unregister_fentry() (trampoline.c), seed v2 5/5: unregister_ftrace_direct_multi(tr->fops)."""
    if not tr.ftrace_managed:
        raise ModelError(f"{tr.func_name}: bpf_arch_text_poke targets are not modelled")
    ret = direct.unregister_ftrace_direct_multi(k, tr.fops, old_addr)
    if not ret:
        bpf_trampoline_module_put(k, tr)
    return ret


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def bpf_tramp_image_alloc(k: "Kernel", tr: bpf_trampoline, idx: int) -> bpf_tramp_image:
    """bpf_tramp_image_alloc() (trampoline.c), seed-v2: a fresh page, ksym bpf_trampoline_<key>_<idx>."""
    return bpf_tramp_image(addr=f"{IMAGE_PREFIX}{tr.key}_{idx}", key=tr.key, ip=tr.func_addr)


def bpf_tramp_image_put(k: "Kernel", im: bpf_tramp_image) -> None:
    """bpf_tramp_image_put() (trampoline.c), seed-v2: the old image is unreachable; dropped at once."""


def bpf_trampoline_get_progs(tr: bpf_trampoline) -> tuple[tuple[tuple[BpfProgram, ...], ...], int, bool]:
    """bpf_trampoline_get_progs() (trampoline.c), seed-v2: programs per kind in list order, total, ip_arg."""
    tlinks = tuple(tuple(link.prog for link in tr.progs_hlist[kind])
                   for kind in range(bpf_tramp_prog_type.BPF_TRAMP_MAX))
    total = sum(tr.progs_cnt)
    ip_arg = any(p.get_func_ip for ps in tlinks for p in ps)
    return tlinks, total, ip_arg


def arch_prepare_bpf_trampoline(k: "Kernel", im: bpf_tramp_image, flags: BPF_TRAMP_F,
                                tlinks: tuple[tuple[BpfProgram, ...], ...],
                                tr: bpf_trampoline) -> tuple[int, bpf_tramp_image]:
    """arch_prepare_bpf_trampoline() (arch/x86/net/bpf_jit_comp.c), seed-v2 with 4/5: JIT into ``im``.

    The model records what is compiled in: the flags, the programs per kind and orig_call =
    func + X86_PATCH_SIZE, i.e. the original body (address ``<name>``). ORIG_STACK makes the
    image call [rbp+8] instead, and is ignored without CALL_ORIG. An architecture without a BPF
    trampoline JIT for kernel functions gets the weak default's -ENOTSUPP (trampoline.c).
    Argument-count limits are not modelled.
    """
    if not k.arch.bpf_trampoline:
        return -Errno.ENOTSUPP, im
    orig_call: Addr = tr.func_name
    return 0, bpf_tramp_image(addr=im.addr, key=im.key, ip=im.ip, flags=flags, progs=tlinks,
                              orig_call=orig_call)


# ---------------------------------------------------------------------------------------------
# The update
# ---------------------------------------------------------------------------------------------
def bpf_trampoline_update(k: "Kernel", tr: bpf_trampoline, lock_direct_mutex: bool) -> int:
    """bpf_trampoline_update() (trampoline.c), seed v2 5/5: rebuild the image and (re)attach it.

    Caller holds tr->mutex. No programs: unregister_fentry, drop the image, selector = 0.
    Otherwise JIT a new image (flags per the programs, ORIG_STACK if indirect_call) and register
    it (first image) or modify to it. -EAGAIN from the registration: WARN_ON_ONCE and give up if
    indirect_call is already set or an image already exists; else set indirect_call, reset
    fops->func and fops->trampoline and JIT again into the same image (``again:``).
    """
    tlinks, total, ip_arg = bpf_trampoline_get_progs(tr)
    if total == 0:
        assert tr.cur_image is not None
        err = unregister_fentry(k, tr, tr.cur_image.addr)
        bpf_tramp_image_put(k, tr.cur_image)
        tr.cur_image = None
        tr.selector = 0
        return err

    im = bpf_tramp_image_alloc(k, tr, tr.selector)
    flags = BPF_TRAMP_F.RESTORE_REGS
    if tlinks[bpf_tramp_prog_type.BPF_TRAMP_FEXIT] or tlinks[bpf_tramp_prog_type.BPF_TRAMP_MODIFY_RETURN]:
        flags = BPF_TRAMP_F.CALL_ORIG | BPF_TRAMP_F.SKIP_FRAME
    if ip_arg:
        flags |= BPF_TRAMP_F.IP_ARG

    while True:  # again:
        if tr.indirect_call:
            flags |= BPF_TRAMP_F.ORIG_STACK
        err, im = arch_prepare_bpf_trampoline(k, im, flags, tlinks, tr)
        if err < 0:
            return err
        if tr.indirect_call:
            tr.fops.flags |= F.SHARE_IPMODIFY
        if tr.cur_image is not None and tr.selector == 0:
            k.warn("bpf_trampoline_update", "an image is installed but the selector is 0")
        if tr.cur_image is None and tr.selector:
            k.warn("bpf_trampoline_update", "no image is installed but the selector is not 0")
        if tr.cur_image is not None:
            err = modify_fentry(k, tr, tr.cur_image.addr, im.addr, lock_direct_mutex)
        else:
            err = register_fentry(k, tr, im.addr)
        if err == -Errno.EAGAIN:
            if tr.indirect_call:
                k.warn("bpf_trampoline_update", "-EAGAIN with tr->indirect_call already set", once=True)
                return err
            if tr.cur_image is not None:  # the retry is for a first registration only
                k.warn("bpf_trampoline_update", "-EAGAIN with tr->cur_image set", once=True)
                return err
            tr.indirect_call = True
            tr.fops.func = None
            tr.fops.trampoline = 0
            continue
        break
    if err:
        return err
    if tr.cur_image is not None:
        bpf_tramp_image_put(k, tr.cur_image)
    tr.cur_image = im
    tr.selector += 1
    return 0


def bpf_tramp_ftrace_ops_func(ops: ftrace_ops, cmd: int) -> int:
    """bpf_tramp_ftrace_ops_func() (trampoline.c), new in seed v2 5/5: tr->fops' ops_func.

    ftrace calls it from prepare_direct_functions_for_ipmodify while holding direct_mutex. The
    documented lock order is tr->mutex -> direct_mutex -> ftrace_lock, and a BPF attach or
    detach on this trampoline holds tr->mutex while it waits for direct_mutex; blocking on
    tr->mutex here could therefore deadlock (ABBA), so it only trylocks and returns -EAGAIN
    when the mutex is busy (the live patch registration fails and must be retried). For the
    same reason the rebuild passes lock_direct_mutex = false (direct_mutex is already held).
    ENABLE sets indirect_call and rebuilds; DISABLE (never sent by v2 ftrace) clears
    indirect_call and SHARE_IPMODIFY and rebuilds; any other command is -EINVAL.
    """
    tr: bpf_trampoline = ops.private
    k = tr.kernel
    if not mutex_trylock(k, tr.mutex):
        return -Errno.EAGAIN
    cmds = k.policy.ftrace_ops_cmd
    if cmd == cmds.FTRACE_OPS_CMD_ENABLE_SHARE_IPMODIFY:
        tr.indirect_call = True
        ret = bpf_trampoline_update(k, tr, False)
    elif cmd == cmds.FTRACE_OPS_CMD_DISABLE_SHARE_IPMODIFY:
        tr.indirect_call = False
        tr.fops.flags &= ~F.SHARE_IPMODIFY
        ret = bpf_trampoline_update(k, tr, False)
    else:
        ret = -Errno.EINVAL
    mutex_unlock(k, tr.mutex)
    return ret


# ---------------------------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------------------------
def bpf_attach_type_to_tramp(prog: BpfProgram) -> bpf_tramp_prog_type:
    """bpf_attach_type_to_tramp() (trampoline.c), seed-v2: the trampoline list of a program."""
    return KINDS[prog.kind]


def bpf_trampoline_link_prog(k: "Kernel", link: bpf_tramp_link, tr: bpf_trampoline) -> int:
    """bpf_trampoline_link_prog() (trampoline.c), seed v2 5/5: add at the head, rebuild with lock_direct_mutex."""
    mutex_lock(k, tr.mutex)
    try:
        kind = bpf_attach_type_to_tramp(link.prog)
        if tr.extension_prog is not None:
            return -Errno.EBUSY
        cnt = sum(tr.progs_cnt)
        if cnt >= BPF_MAX_TRAMP_LINKS:
            return -Errno.E2BIG
        if link.hashed:
            return -Errno.EBUSY  # this link is on a list already
        if any(existing.prog == link.prog for existing in tr.progs_hlist[kind]):
            return -Errno.EBUSY  # the same program is on this list
        tr.progs_hlist[kind].insert(0, link)
        link.hashed = True
        tr.progs_cnt[kind] += 1
        err = bpf_trampoline_update(k, tr, True)
        if err:
            tr.progs_hlist[kind].remove(link)
            link.hashed = False
            tr.progs_cnt[kind] -= 1
        return err
    finally:
        mutex_unlock(k, tr.mutex)


def bpf_trampoline_unlink_prog(k: "Kernel", link: bpf_tramp_link, tr: bpf_trampoline) -> int:
    """bpf_trampoline_unlink_prog() (trampoline.c), seed v2 5/5: remove, rebuild (lock_direct_mutex)."""
    mutex_lock(k, tr.mutex)
    try:
        kind = bpf_attach_type_to_tramp(link.prog)
        tr.progs_hlist[kind].remove(link)
        link.hashed = False
        tr.progs_cnt[kind] -= 1
        return bpf_trampoline_update(k, tr, True)
    finally:
        mutex_unlock(k, tr.mutex)


# ---------------------------------------------------------------------------------------------
# Verifier and syscall side
# ---------------------------------------------------------------------------------------------
def within_error_injection_list(name: str) -> bool:
    """within_error_injection_list() (include/linux/error-injection.h), seed-v2: a stub on Debian's config."""
    return name in ERROR_INJECTION_LIST


def check_attach_modify_return(name: str) -> int:
    """check_attach_modify_return() (kernel/bpf/verifier.c), seed-v2: error-injection list or security_*."""
    if within_error_injection_list(name) or name.startswith(SECURITY_PREFIX):
        return 0
    return -Errno.EINVAL


def bpf_check_attach_target(k: "Kernel", prog: BpfProgram) -> int:
    """bpf_check_attach_target() + check_attach_btf_id() (kernel/bpf/verifier.c), seed-v2: vmlinux targets.

    btf_id_deny functions are -EINVAL for every tracing program; fmod_ret is -EINVAL outside
    the error-injection list and security_* functions. (At BPF_PROG_LOAD in the kernel.)
    """
    if prog.target in BTF_ID_DENY:
        return -Errno.EINVAL
    if prog.kind == "fmod_ret":
        return check_attach_modify_return(prog.target)
    return 0


def bpf_attach(k: "Kernel", prog: BpfProgram) -> int:
    """BPF_PROG_LOAD + BPF_LINK_CREATE (syscall.c: bpf_tracing_prog_attach), seed-v2: attach ``prog``.

    Verifier checks (check_attach_btf_id), bpf_trampoline_get, bpf_trampoline_link_prog, as one
    step (the prog's trampoline reference passes to the link). Returns 0
    or the kernel's negative errno; on failure the trampoline reference is put again. Unknown
    target names raise :class:`~ftlab.errors.InputError`. No lock is held on return.
    """
    _check_policy(k)
    ip = k.cat.lookup(prog.target, prog.sympos)
    err = bpf_check_attach_target(k, prog)
    if err:
        return err
    key = bpf_trampoline_compute_key(VMLINUX_BTF_OBJ_ID, btf_id_of(k, ip))
    tr = bpf_trampoline_get(k, key, ip)
    link = bpf_tramp_link(prog, key)
    err = bpf_trampoline_link_prog(k, link, tr)
    if err:
        bpf_trampoline_put(k, tr)
        return err
    bpf_state(k).links[prog] = link
    return 0


def bpf_detach(k: "Kernel", prog: BpfProgram) -> int:
    """bpf_tracing_link_release() (kernel/bpf/syscall.c), seed-v2: close ``prog``'s link.

    bpf_trampoline_unlink_prog (its error is a WARN_ON_ONCE in the kernel, and returned here),
    then bpf_trampoline_put. -ENOENT (model-level) if ``prog`` has no link. No lock is held on
    return.
    """
    st = bpf_state(k)
    link = st.links.pop(prog, None)
    if link is None:
        return -Errno.ENOENT
    tr = st.trampoline_table[link.key]
    err = bpf_trampoline_unlink_prog(k, link, tr)
    if err:
        k.warn("bpf_tracing_link_release", f"bpf_trampoline_unlink_prog returned {err}", once=True)
    bpf_trampoline_put(k, tr)
    return err


def bpf_trampoline_of(k: "Kernel", name: str, sympos: int = 0) -> bpf_trampoline | None:
    """The trampoline of function ``name``, if one exists."""
    ip = k.cat.lookup(name, sympos)
    key = bpf_trampoline_compute_key(VMLINUX_BTF_OBJ_ID, btf_id_of(k, ip))
    return bpf_state(k).trampoline_table.get(key)


def find_image(k: "Kernel", addr: Addr) -> bpf_tramp_image | None:
    """The live trampoline image whose code address is ``addr``."""
    st: BpfState | None = k.subsys.get("bpf")
    if st is None:
        return None
    for tr in st.trampoline_table.values():
        if tr.cur_image is not None and tr.cur_image.addr == addr:
            return tr.cur_image
    return None


def trampolines(k: "Kernel") -> Iterator[bpf_trampoline]:
    """Every trampoline, in key order."""
    st: BpfState | None = k.subsys.get("bpf")
    if st is not None:
        for _, tr in sorted(st.trampoline_table.items()):
            yield tr


# ---------------------------------------------------------------------------------------------
# Call path: what a trampoline image does when it runs
# ---------------------------------------------------------------------------------------------
def run_bpf_trampoline(k: "Kernel", ctx: CallContext, addr: Addr) -> int:
    """The code arch_prepare_bpf_trampoline JITs (bpf_jit_comp.c), seed-v2 with 4/5: facts §7.4.

    fentry programs in list order; fmod_ret programs (slot zeroed; the first non-zero return
    skips the rest and the original call and is the value fexit sees); the original call if
    CALL_ORIG: orig_call (func+5) or, with ORIG_STACK, the return address [rbp+8]; fexit
    programs with the return value. With SKIP_FRAME it returns to the function's caller;
    without (fentry only) it returns into [rbp+8], so the body there runs next.
    """
    im = find_image(k, addr)
    if im is None:
        ctx.emit("unmodelled", f"no live BPF image at {addr_str(addr)}; "
                               f"returns to {addr_str(ctx.ret_addr)}")
        return run_body(k, ctx, ctx.ret_addr)
    ret_addr = ctx.ret_addr
    ctx.emit("tramp", f"{im.addr} {_flag_names(im.flags)} [rbp+8]={addr_str(ret_addr)}")
    kinds = bpf_tramp_prog_type
    for p in im.progs[kinds.BPF_TRAMP_FENTRY]:
        ctx.programs.append(p.name)
        ctx.emit("bpf_prog", f"fentry {p.name}")
    retval = 0
    call_orig = True
    for p in im.progs[kinds.BPF_TRAMP_MODIFY_RETURN]:
        ctx.programs.append(p.name)
        ctx.emit("bpf_prog", f"fmod_ret {p.name} returns {p.ret}")
        if p.ret != 0:
            retval = p.ret
            call_orig = False
            ctx.emit("orig_call", f"skipped (fmod_ret {p.name} returned {p.ret})")
            break
    if im.flags & BPF_TRAMP_F.CALL_ORIG and call_orig:
        if im.flags & BPF_TRAMP_F.ORIG_STACK:
            target: Addr = ret_addr
            ctx.emit("orig_call", f"[rbp+8] {addr_str(target)}")
        else:
            target = im.orig_call
            ctx.emit("orig_call", f"func+{X86_PATCH_SIZE} {addr_str(target)}")
        retval = run_body(k, ctx, target)
    for p in im.progs[kinds.BPF_TRAMP_FEXIT]:
        ctx.programs.append(p.name)
        ctx.emit("bpf_prog", f"fexit {p.name} sees {retval}")
    if im.flags & BPF_TRAMP_F.SKIP_FRAME:
        ctx.emit("return", f"skip frame: {retval} to the caller of {ctx.name}")
        return retval
    ctx.emit("return", f"into {addr_str(ret_addr)}")
    return run_body(k, ctx, ret_addr)


def _flag_names(flags: int) -> str:
    """BPF_TRAMP_F flags as ``CALL_ORIG|SKIP_FRAME``."""
    names = [f.name or "" for f in BPF_TRAMP_F if flags & f.value]
    return "|".join(names) if names else "0"


register_code(IMAGE_PREFIX, run_bpf_trampoline, prefix=True)


__all__ = [
    "BPF_TRAMP_F", "bpf_tramp_prog_type", "BPF_MAX_TRAMP_LINKS", "BpfProgram", "BpfState", "bpf_tramp_link",
    "bpf_tramp_image", "bpf_trampoline", "bpf_state", "bpf_key", "bpf_trampoline_compute_key", "btf_id_of",
    "bpf_trampoline_lookup", "bpf_trampoline_get", "bpf_trampoline_put", "register_fentry", "modify_fentry",
    "unregister_fentry", "bpf_trampoline_update", "bpf_tramp_ftrace_ops_func", "bpf_trampoline_link_prog",
    "bpf_trampoline_unlink_prog", "bpf_check_attach_target", "check_attach_modify_return", "bpf_attach",
    "bpf_detach", "bpf_trampoline_of", "find_image", "trampolines", "run_bpf_trampoline", "tr_mutex_name",
]
