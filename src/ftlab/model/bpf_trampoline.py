"""The BPF trampoline core: what kernel/bpf/trampoline.c and the x86 JIT do in every kernel version.

Kernel source: kernel/bpf/trampoline.c and include/linux/bpf.h; the JIT is
arch/x86/net/bpf_jit_comp.c (arch_prepare_bpf_trampoline); the attach checks are
kernel/bpf/verifier.c (bpf_check_attach_target, check_attach_modify_return, btf_id_deny) and
kernel/bpf/syscall.c (bpf_tracing_prog_attach, bpf_tracing_link_release), on Debian's 6.1
config; the verifier checks and the link syscalls are the BPF client's
(:mod:`ftlab.model.clients.bpf`). Each Python function models the kernel function of the same name. C's globals
(trampoline_table, trampoline_mutex) live in ``k.subsys["bpf"]`` (:class:`BpfState`), so
``Kernel.copy()`` deep-copies them with the rest of the state.

This module holds what every version shares; the policies (each version's ``trampoline``
module) hold what differs and import it, and it reaches them through ``k.policy``: ``BPF_TRAMP_F`` (the flags that
version's bpf.h defines), ``register_fentry``,
``modify_fentry``, ``unregister_fentry``, ``bpf_tramp_image_alloc`` (the image's ksym name),
``bpf_trampoline_update``, and, where the version has a per-trampoline ftrace_ops,
``bpf_trampoline_lookup_fops`` / ``bpf_trampoline_put_fops`` (the fops blocks of
bpf_trampoline_lookup / bpf_trampoline_put) and ``bpf_tramp_ftrace_ops_func``.

Theory of operation (the rules this module owns):

1. One ``bpf_trampoline`` per attach target, found by key in the trampoline table under
   ``trampoline_mutex``; a link holds one reference; the last put frees it (and its fops).
2. Program lists per kind (fentry, fexit, fmod_ret) are changed under the per-trampoline mutex
   ``tr->mutex[<key>]``; a new link goes to the *head* of its list, so the most recently
   attached program of a kind runs first. At most BPF_MAX_TRAMP_LINKS (38) links (-E2BIG); a
   program already linked is -EBUSY.
3. Every change rebuilds the image (the policy's bpf_trampoline_update): fexit or fmod_ret
   present -> CALL_ORIG|SKIP_FRAME (the image calls the function and returns to its caller),
   else RESTORE_REGS (fentry only: the image returns into the function). ORIG_STACK (where the
   version has it) makes the image call the address at [rbp+8] -- whatever the fentry call
   returned to, e.g. a live patch's new_func when entered through ftrace_regs_caller --
   instead of func+5.
4. The image's JITed flags are what runs: :func:`run_bpf_trampoline` reads them from the
   image (decoded with the policy's ``BPF_TRAMP_F``), never from the trampoline.

How the three versions attach the image and share a function with a live patch:

============== ============================ ============================ ==============================
aspect         linux-5.18                   seed-v2 (4/5 + 5/5)          linux-6.1 (6.1.192)
============== ============================ ============================ ==============================
ftrace API     register_ftrace_direct(ip)   *_ftrace_direct_multi on     *_ftrace_direct_multi on
               on the shared direct_ops     tr->fops                     tr->fops
               (IPMODIFY|DIRECT)
ops_func       none                         ENABLE / DISABLE (trylock)   SELF (no lock); PEER /
                                                                         DISABLE_PEER (trylock,
                                                                         msleep(1))
live patch     -EBUSY in both orders        shares                       shares
sharing state  none                         tr->indirect_call (sticky)   BPF_TRAMP_F_SHARE_IPMODIFY
                                            + FTRACE_OPS_FL_SHARE_...    in tr->flags
ORIG_STACK     no such bit                  iff indirect_call            iff SHARE and CALL_ORIG
-EAGAIN retry  none                         first registration only      unconditional
image ksym     bpf_trampoline_<key>_<sel>   bpf_trampoline_<key>_<sel>   bpf_trampoline_<key>
============== ============================ ============================ ==============================

Naming. The trampoline key is bpf_trampoline_compute_key (include/linux/bpf_verifier.h) for a
kernel function: ``(btf_obj_id(vmlinux) << 32) | 0x80000000 | btf_id``, with
btf_obj_id(vmlinux) = 1 (the first BTF object) and a synthetic ``btf_id`` = record index + 1
(real BTF ids differ; the model needs only one distinct id per record). A module's function
uses its module's BTF object: synthetic ids 2, 3, ... in the catalogue's module order. The model uses an
image's ksym name as its code address. Where two live images would share a name (6.1, after
the selector was removed), the model appends ``#n`` to tell them apart; %pS
(:func:`ftlab.model.views.pS`) strips it. Images are one page before 6.8 (%pS prints
``bpf_trampoline_<key>...+0x0/0x1000``); from 6.8 as long as their code, which the version's
``bpf_tramp_image_alloc`` is given (6.12: arch_bpf_trampoline_size).

Not modelled: freplace (extension) programs, targets that are not ftrace locations
(bpf_arch_text_poke raises :class:`~ftlab.errors.ModelError`), the unloading of a target
module (the model never unloads one, so module_get always succeeds), sleepable programs, BPF LSM / cgroup shims,
BPF_TRAMP_F_TAIL_CALL_CTX
(set only for freplace targets in a tail-call context), the RCU / percpu_ref lifetime of old
images (an image is dropped when replaced or when an update fails, whether the version frees
it then or leaks it), and the image memory attributes. The program's load and its link
creation are one step (:func:`ftlab.model.clients.bpf.bpf_attach`), so a loaded but unattached program never holds a
trampoline reference.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InputError, KernelOops, ModelError
from .calls import CallContext, addr_str, run_body
from .calltable import CallTable, install
from .copying import fast_deepcopy
from .errno import Errno
from .locks import mutex_is_locked, mutex_lock, mutex_unlock
from .naming import Rename, spell
from .ops import Addr, ftrace_ops

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import Kernel

class BPF_TRAMP_F(enum.IntFlag):
    """Every BPF_TRAMP_F_* bit any modelled version defines (include/linux/bpf.h); same values in all.

    RESTORE_REGS..RET_FENTRY_RET: all versions; ORIG_STACK: seed-v2 (4/5) and 6.1;
    SHARE_IPMODIFY, TAIL_CALL_CTX: 6.1 only. Each policy module has its own ``BPF_TRAMP_F``
    with exactly the bits of its bpf.h; images carry flags of that type. This superset is for
    comparing flags across policies.
    """

    RESTORE_REGS = 1 << 0
    CALL_ORIG = 1 << 1
    SKIP_FRAME = 1 << 2
    IP_ARG = 1 << 3
    RET_FENTRY_RET = 1 << 4
    ORIG_STACK = 1 << 5
    SHARE_IPMODIFY = 1 << 6
    TAIL_CALL_CTX = 1 << 7


class bpf_tramp_prog_type(enum.IntEnum):
    """enum bpf_tramp_prog_type (include/linux/bpf.h), all policies."""

    BPF_TRAMP_FENTRY = 0
    BPF_TRAMP_FEXIT = 1
    BPF_TRAMP_MODIFY_RETURN = 2
    BPF_TRAMP_MAX = 3
    BPF_TRAMP_REPLACE = 4


#: BPF_MAX_TRAMP_LINKS (include/linux/bpf.h, x86_64).
BPF_MAX_TRAMP_LINKS = 38
#: X86_PATCH_SIZE / MCOUNT_INSN_SIZE: orig_call = func + 5, the original body.
X86_PATCH_SIZE = 5
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

    def __deepcopy__(self, memo: dict[int, Any]) -> BpfProgram:  # frozen: share it
        return self

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

    def spelled(self, nm: Rename | None) -> str:
        """``str(self)`` with the program's name renamed (:mod:`ftlab.model.naming`)."""
        return f"{self.kind}:{spell(nm, self.name)}"


@dataclass(eq=False)
class bpf_tramp_link:
    """struct bpf_tramp_link (include/linux/bpf.h): a program's link into one trampoline list.

    ``hashed`` is ``!hlist_unhashed(&link->tramp_hlist)``; ``key`` names the trampoline the
    link holds a reference on (link->trampoline).
    """

    __deepcopy__ = fast_deepcopy

    prog: BpfProgram
    key: int = 0
    hashed: bool = False


@dataclass(frozen=True)
class bpf_tramp_image:
    """struct bpf_tramp_image (include/linux/bpf.h) with the model's record of the JITed code.

    ``addr``: the image's code address (its ksym name, plus ``#n`` where the version's names
    collide). ``flags`` (of the policy's BPF_TRAMP_F type), ``progs`` (per kind, list order at
    JIT time) and ``orig_call`` are what arch_prepare_bpf_trampoline compiled in.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> bpf_tramp_image:  # frozen: share it
        return self

    addr: str
    key: int
    ip: int
    flags: int = 0
    progs: tuple[tuple[BpfProgram, ...], ...] = ((), (), ())
    orig_call: Addr = 0
    #: im->size: one page before 6.8; the JIT's size of the image from then on (bpf_prog_pack)
    size: int = BPF_IMAGE_SIZE

    def key_tuple(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return (self.addr, int(self.flags), tuple(tuple(p.spelled(nm) for p in ps) for ps in self.progs),
                self.orig_call)


@dataclass(eq=False)
class bpf_trampoline:
    """struct bpf_trampoline (include/linux/bpf.h); fields a version lacks keep their zero value.

    ``fops``: the trampoline's own direct ftrace_ops (seed v2 5/5 and 6.1, with
    CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS; None in 5.18, which uses the shared direct_ops).
    ``selector``: image counter of 5.18 and seed-v2 (6.1.192 has none: "bpf: Remove bpf
    trampoline selector", stable 6.1.39). ``indirect_call``: seed-v2 only. ``flags``: 6.1's
    ``tr->flags`` (u32 of BPF_TRAMP_F bits; the earlier versions compute flags per update).
    ``kernel`` stands for the kernel globals C reaches from bpf_tramp_ftrace_ops_func (whose
    ftrace_ops_func_t signature carries only the ops and the command; tr is ops->private).
    """

    __deepcopy__ = fast_deepcopy

    key: int
    kernel: Kernel
    mutex: str
    fops: ftrace_ops | None = None
    refcnt: int = 1
    func_addr: int = 0            # tr->func.addr
    func_name: str = ""
    ftrace_managed: bool = False  # tr->func.ftrace_managed
    progs_hlist: list[list[bpf_tramp_link]] = field(default_factory=lambda: [[], [], []])
    progs_cnt: list[int] = field(default_factory=lambda: [0, 0, 0])
    cur_image: bpf_tramp_image | None = None
    selector: int = 0             # 5.18, seed-v2
    indirect_call: bool = False   # seed-v2
    flags: int = 0                # 6.1
    extension_prog: BpfProgram | None = None  # freplace; never set by this model

    def key_tuple(self, nm: Rename | None = None) -> tuple[Any, ...]:
        """Hashable value of this trampoline (canonical state forms; ``nm``: client renaming)."""
        return (self.key, self.refcnt, self.func_addr, self.ftrace_managed,
                tuple(tuple(link.prog.spelled(nm) for link in lst) for lst in self.progs_hlist),
                tuple(self.progs_cnt), self.cur_image.key_tuple(nm) if self.cur_image else None,
                self.selector, self.indirect_call, int(self.flags))


@dataclass
class BpfState:
    """The BPF globals of one kernel: trampoline_table (kernel/bpf/trampoline.c) and open links."""

    __deepcopy__ = fast_deepcopy

    trampoline_table: dict[int, bpf_trampoline] = field(default_factory=dict)
    links: dict[BpfProgram, bpf_tramp_link] = field(default_factory=dict)

    def key(self, nm: Rename | None = None) -> tuple[Any, ...]:
        return (tuple(tr.key_tuple(nm) for _, tr in sorted(self.trampoline_table.items())),
                tuple(sorted((p.spelled(nm), link.key) for p, link in self.links.items())))


def bpf_state(k: Kernel) -> BpfState:
    """The BPF subsystem state of ``k`` (created on first use)."""
    st: BpfState | None = k.subsys.get("bpf")
    if st is None:
        st = k.subsys["bpf"] = BpfState()
        install(k, CALLS)
    return st


def bpf_key(k: Kernel) -> tuple[Any, ...]:
    """Canonical, hashable form of the BPF state (complements ``k.key()``)."""
    st: BpfState | None = k.subsys.get("bpf")
    return st.key() if st is not None else BpfState().key()


def bpf_trampoline_compute_key(btf_obj_id: int, btf_id: int) -> int:
    """bpf_trampoline_compute_key() (include/linux/bpf_verifier.h), all policies: key of a kernel function."""
    return (btf_obj_id << 32) | 0x80000000 | btf_id


def tr_mutex_name(key: int) -> str:
    """The name of ``tr->mutex`` in the kernel's lock table."""
    return f"tr->mutex[{key}]"


def bpf_trampoline_lookup(k: Kernel, key: int) -> bpf_trampoline:
    """bpf_trampoline_lookup() (trampoline.c), all policies: find, or allocate with refcount 1.

    Under trampoline_mutex: an existing trampoline gets refcount + 1. A new one gets its fops
    from the policy's ``bpf_trampoline_lookup_fops`` (the DIRECT_CALLS block that seed v2 5/5
    added and 6.1 kept; 5.18 has no such block, and its ``bpf_trampoline_lookup_fops`` is None).
    """
    st = bpf_state(k)
    mutex_lock(k, "trampoline_mutex")
    tr = st.trampoline_table.get(key)
    if tr is not None:
        tr.refcnt += 1
    else:
        tr = bpf_trampoline(key=key, kernel=k, mutex=tr_mutex_name(key))
        tr.fops = k.policy.bpf_trampoline_lookup_fops(k, tr)
        st.trampoline_table[key] = tr
    mutex_unlock(k, "trampoline_mutex")
    return tr


def bpf_trampoline_get(k: Kernel, key: int, ip: int) -> bpf_trampoline:
    """bpf_trampoline_get() (trampoline.c), all policies: lookup, then set tr->func.addr once under tr->mutex."""
    tr = bpf_trampoline_lookup(k, key)
    mutex_lock(k, tr.mutex)
    if not tr.func_addr:
        tr.func_addr = ip
        tr.func_name = k.cat.qualified_name_of_ip(ip)
    mutex_unlock(k, tr.mutex)
    return tr


def bpf_trampoline_put(k: Kernel, tr: bpf_trampoline) -> None:
    """bpf_trampoline_put() (trampoline.c), all policies: drop a reference; the last frees tr.

    The fops (where the version has one) goes through the policy's ``bpf_trampoline_put_fops``.
    """
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
        del st.trampoline_table[tr.key]  # hlist_del, then kfree
        if tr.fops is not None:
            k.policy.bpf_trampoline_put_fops(k, tr)
    finally:
        mutex_unlock(k, "trampoline_mutex")


# ---------------------------------------------------------------------------------------------
# Helpers every version's register/modify/unregister_fentry uses
# ---------------------------------------------------------------------------------------------
def bpf_trampoline_module_get(k: Kernel, tr: bpf_trampoline) -> int:
    """bpf_trampoline_module_get() (trampoline.c), all policies: 0 (vmlinux targets have no module;
    a module target's module is never going in the model, so try_module_get succeeds)."""
    return 0


def bpf_trampoline_module_put(k: Kernel, tr: bpf_trampoline) -> None:
    """bpf_trampoline_module_put() (trampoline.c), all policies: module references are not counted."""


def bpf_arch_text_poke(k: Kernel, tr: bpf_trampoline, old_addr: Addr | None, new_addr: Addr | None) -> int:
    """bpf_arch_text_poke() (arch/x86/net/bpf_jit_comp.c): for targets that are not ftrace locations.

    Not modelled (every record of the catalogue is an ftrace location): raises ModelError.
    """
    raise ModelError(f"{tr.func_name}: bpf_arch_text_poke targets are not modelled")


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def cur_image_of_empty(k: Kernel, tr: bpf_trampoline) -> bpf_tramp_image:
    """``tr->cur_image`` as every version's bpf_trampoline_update reads it when no programs are left.

    The kernel dereferences it unchecked (``tr->cur_image->image``). It is NULL only for a
    trampoline that never got an image or already lost it, which ftrace reaches only through
    a stale fops: after an unregistration failed (ftrace killed), a freed trampoline's fops
    stays listed, and 6.1's DISABLE_PEER still calls into it. The model reports that NULL
    dereference as an Oops.
    """
    if tr.cur_image is None:
        k.log("BUG", "bpf_trampoline_update", "kernel NULL pointer dereference (tr->cur_image is NULL)")
        raise KernelOops(f"bpf_trampoline_update of {tr.func_name or tr.key}: no programs and "
                         "tr->cur_image is NULL")
    return tr.cur_image


def bpf_tramp_image_put(k: Kernel, im: bpf_tramp_image) -> None:
    """bpf_tramp_image_put() (trampoline.c), all policies: the old image is unreachable; dropped at once."""


def bpf_trampoline_get_progs(tr: bpf_trampoline) -> tuple[tuple[tuple[BpfProgram, ...], ...], int, bool]:
    """bpf_trampoline_get_progs() (trampoline.c), all policies: programs per kind in list order, total, ip_arg."""
    tlinks = tuple(tuple(link.prog for link in tr.progs_hlist[kind])
                   for kind in range(bpf_tramp_prog_type.BPF_TRAMP_MAX))
    total = sum(tr.progs_cnt)
    ip_arg = any(p.get_func_ip for ps in tlinks for p in ps)
    return tlinks, total, ip_arg


def has_call_orig(tlinks: tuple[tuple[BpfProgram, ...], ...]) -> bool:
    """The test every version's bpf_trampoline_update makes: fexit or fmod_ret programs present."""
    return bool(tlinks[bpf_tramp_prog_type.BPF_TRAMP_FEXIT]
                or tlinks[bpf_tramp_prog_type.BPF_TRAMP_MODIFY_RETURN])


def arch_prepare_bpf_trampoline(k: Kernel, im: bpf_tramp_image, flags: int,
                                tlinks: tuple[tuple[BpfProgram, ...], ...],
                                tr: bpf_trampoline) -> tuple[int, bpf_tramp_image]:
    """arch_prepare_bpf_trampoline() (arch/x86/net/bpf_jit_comp.c), all policies: JIT into ``im``.

    The model records what is compiled in: the flags (as the policy's BPF_TRAMP_F), the
    programs per kind and orig_call = func + X86_PATCH_SIZE, after a leading endbr64 where the
    function has one (is_endbr: the catalogue's ``fentry_offsets``, 6.12's IBT), i.e. the original
    body (address ``<name>``). ORIG_STACK
    (seed-v2 4/5: ``call *rax``; 6.1: ``call *rbx``) makes the image call [rbp+8] instead and is
    ignored without CALL_ORIG; 5.18 has no such bit. An architecture without a BPF trampoline
    JIT for kernel functions gets the weak default's -ENOTSUPP (trampoline.c). Argument-count
    limits are not modelled.
    """
    if not k.arch.bpf_trampoline:
        return -Errno.ENOTSUPP, im
    orig_call: Addr = tr.func_name
    return 0, bpf_tramp_image(addr=im.addr, key=im.key, ip=im.ip, flags=k.policy.BPF_TRAMP_F(flags),
                              progs=tlinks, orig_call=orig_call, size=im.size)


# ---------------------------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------------------------
def bpf_attach_type_to_tramp(prog: BpfProgram) -> bpf_tramp_prog_type:
    """bpf_attach_type_to_tramp() (trampoline.c), all policies: the trampoline list of a program."""
    return KINDS[prog.kind]


def bpf_trampoline_link_prog(k: Kernel, link: bpf_tramp_link, tr: bpf_trampoline) -> int:
    """bpf_trampoline_link_prog() (trampoline.c), all policies: add at the head, rebuild.

    The rebuild is the policy's bpf_trampoline_update with lock_direct_mutex = true (seed v2
    5/5 and 6.1; 5.18 has no such argument and ignores it).
    """
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
        err = k.policy.bpf_trampoline_update(k, tr, True)
        if err:
            tr.progs_hlist[kind].remove(link)
            link.hashed = False
            tr.progs_cnt[kind] -= 1
        return err
    finally:
        mutex_unlock(k, tr.mutex)


def bpf_trampoline_unlink_prog(k: Kernel, link: bpf_tramp_link, tr: bpf_trampoline) -> int:
    """bpf_trampoline_unlink_prog() (trampoline.c), all policies: remove, rebuild (lock_direct_mutex)."""
    mutex_lock(k, tr.mutex)
    try:
        kind = bpf_attach_type_to_tramp(link.prog)
        tr.progs_hlist[kind].remove(link)
        link.hashed = False
        tr.progs_cnt[kind] -= 1
        return k.policy.bpf_trampoline_update(k, tr, True)
    finally:
        mutex_unlock(k, tr.mutex)


# ---------------------------------------------------------------------------------------------
# bpf_trampoline_update(): the steps every version shares. Each version's own
# bpf_trampoline_update (its policy's trampoline module) strings them together with what differs.
# ---------------------------------------------------------------------------------------------
def update_without_progs(k: Kernel, tr: bpf_trampoline) -> int:
    """The ``total->nr_links == 0`` branch of bpf_trampoline_update() (trampoline.c), every version.

    unregister_fentry(tr, tr->cur_image->image) (the policy's), bpf_tramp_image_put(cur_image),
    cur_image = NULL; returns unregister_fentry's answer. Each version adds its own epilogue
    (5.18 and seed v2: selector = 0; 6.1: the flags of the start when unregistering failed).
    """
    err = k.policy.unregister_fentry(k, tr, cur_image_of_empty(k, tr).addr)
    if tr.cur_image is not None:
        bpf_tramp_image_put(k, tr.cur_image)
    tr.cur_image = None
    return err


def prog_flags(T: Any, tlinks: tuple[tuple[BpfProgram, ...], ...], ip_arg: bool) -> int:
    """The program-dependent flags of bpf_trampoline_update() (trampoline.c), every version.

    CALL_ORIG|SKIP_FRAME when fexit or fmod_ret programs are attached (the image calls the
    function and returns to its caller), else RESTORE_REGS (fentry only: the image returns into
    the function); IP_ARG when a program calls bpf_get_func_ip. ``T`` is the version's BPF_TRAMP_F.
    """
    flags = int(T.CALL_ORIG | T.SKIP_FRAME) if has_call_orig(tlinks) else int(T.RESTORE_REGS)
    if ip_arg:
        flags |= int(T.IP_ARG)
    return flags


def attach_image(k: Kernel, tr: bpf_trampoline, im: bpf_tramp_image, lock_direct_mutex: bool) -> int:
    """The attach step of bpf_trampoline_update() (trampoline.c), every version.

    ``tr->cur_image`` set: the policy's modify_fentry(tr, cur_image, im, lock_direct_mutex);
    else its register_fentry(tr, im). (5.18's modify_fentry has no lock argument and ignores it.)
    """
    if tr.cur_image is not None:
        return k.policy.modify_fentry(k, tr, tr.cur_image.addr, im.addr, lock_direct_mutex)
    return k.policy.register_fentry(k, tr, im.addr)


def check_selector(k: Kernel, tr: bpf_trampoline) -> None:
    """The two WARN_ONs on ``tr->selector`` of bpf_trampoline_update() (trampoline.c), in the
    versions that have a selector (5.18, seed v2): an installed image with selector 0, or none
    with a non-zero selector."""
    if tr.cur_image is not None and tr.selector == 0:
        k.warn("bpf_trampoline_update", "an image is installed but the selector is 0")
    if tr.cur_image is None and tr.selector:
        k.warn("bpf_trampoline_update", "no image is installed but the selector is not 0")


def install_image(k: Kernel, tr: bpf_trampoline, im: bpf_tramp_image) -> None:
    """The success tail of bpf_trampoline_update() (trampoline.c), every version: put the old
    image (bpf_tramp_image_put), ``tr->cur_image = im``."""
    if tr.cur_image is not None:
        bpf_tramp_image_put(k, tr.cur_image)
    tr.cur_image = im


def find_image(k: Kernel, addr: Addr) -> bpf_tramp_image | None:
    """The live trampoline image whose code address is ``addr``."""
    st: BpfState | None = k.subsys.get("bpf")
    if st is None:
        return None
    for tr in st.trampoline_table.values():
        if tr.cur_image is not None and tr.cur_image.addr == addr:
            return tr.cur_image
    return None


def trampolines(k: Kernel) -> Iterator[bpf_trampoline]:
    """Every trampoline, in key order."""
    st: BpfState | None = k.subsys.get("bpf")
    if st is not None:
        for _, tr in sorted(st.trampoline_table.items()):
            yield tr


# ---------------------------------------------------------------------------------------------
# Call path: what a trampoline image does when it runs
# ---------------------------------------------------------------------------------------------
def run_bpf_trampoline(k: Kernel, ctx: CallContext, addr: Addr) -> int:
    """The code arch_prepare_bpf_trampoline JITs (bpf_jit_comp.c), all policies: facts §7.4.

    Runs what the image's flags say, decoded with the policy's BPF_TRAMP_F: fentry programs in
    list order; fmod_ret programs (slot zeroed; the first non-zero return skips the rest and
    the original call and is the value fexit sees); the original call if CALL_ORIG: orig_call
    (func+5, the body as compiled) or, with ORIG_STACK (seed-v2 4/5, 6.1; 5.18 has no such
    bit), the return address [rbp+8], which is the live patch's new function when the image
    was entered from ftrace_regs_caller after klp changed regs->ip; fexit programs with the
    return value. With SKIP_FRAME it returns to the function's caller; without (fentry only)
    it returns into [rbp+8], so the body there runs next.
    """
    im = find_image(k, addr)
    if im is None:
        ctx.emit("unmodelled", f"no live BPF image at {addr_str(addr)}; "
                               f"returns to {addr_str(ctx.ret_addr)}")
        return run_body(k, ctx, ctx.ret_addr)
    T: Any = k.policy.BPF_TRAMP_F
    orig_stack = int(getattr(T, "ORIG_STACK", 0))
    ret_addr = ctx.ret_addr
    ctx.emit("tramp", f"{im.addr} {_flag_names(k, im.flags)} [rbp+8]={addr_str(ret_addr)}")
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
    if im.flags & T.CALL_ORIG and call_orig:
        if im.flags & orig_stack:
            target: Addr = ret_addr
            ctx.emit("orig_call", f"[rbp+8] {addr_str(target)}")
        else:
            target = im.orig_call
            i = k.cat.index(im.ip)
            skip = (k.cat.fentry_offset(i) if i is not None else 0) + X86_PATCH_SIZE  # endbr64, then the call
            ctx.emit("orig_call", f"func+{skip} {addr_str(target)}")
        retval = run_body(k, ctx, target)
    for p in im.progs[kinds.BPF_TRAMP_FEXIT]:
        ctx.programs.append(p.name)
        ctx.emit("bpf_prog", f"fexit {p.name} sees {retval}")
    if im.flags & T.SKIP_FRAME:
        ctx.emit("return", f"skip frame: {retval} to the caller of {ctx.name}")
        return retval
    ctx.emit("return", f"into {addr_str(ret_addr)}")
    return run_body(k, ctx, ret_addr)


def _flag_names(k: Kernel, flags: int) -> str:
    """BPF_TRAMP_F flags as ``CALL_ORIG|SKIP_FRAME``, with the names of the policy's bpf.h."""
    names = [f.name or "" for f in k.policy.BPF_TRAMP_F if flags & f.value]
    return "|".join(names) if names else "0"


#: What the BPF trampoline core adds to a kernel's call table: the code of its images.
CALLS = CallTable(prefixes=((IMAGE_PREFIX, run_bpf_trampoline),))
