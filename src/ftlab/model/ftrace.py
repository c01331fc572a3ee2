"""The ftrace core shared by every policy: ops list, record accounting, code update, filters.

Kernel source: kernel/trace/ftrace.c and arch/x86/kernel/ftrace.c of Linux 6.1 (the same code in
5.18 and the seed's v2 tree unless a function says otherwise). Each Python function models the
kernel function of the same name; the first argument ``k`` is the :class:`~ftlab.model.kernel.Kernel`
that C keeps in globals. Kernel return conventions are kept: ``0`` or a negative errno.

Policy-specific functions (register/unregister, the IPMODIFY decision, the direct-call API) are
reached through ``k.policy``; the public entry points at the bottom of this module dispatch there.

Theory of operation, in brief. An ops is registered with register_ftrace_function ->
ftrace_startup: it goes to the head of ftrace_ops_list (__register_ftrace_function), the IPMODIFY
rules are applied to the records of its filter (ftrace_hash_ipmodify_enable, the policy's
__ftrace_hash_update_ipmodify), every record its filter-minus-notrace covers gets its count
incremented and REGS/TRAMP/DIRECT wants set (__ftrace_hash_rec_update), and the call sites are
rewritten (ftrace_run_update_code -> ftrace_check_record copies the wants into the _EN bits). What
a call site calls is then ftrace_get_addr_curr. Unregistering runs the same steps backwards.

One deliberate implementation difference, invisible in results: the kernel's code update walks
every record; the model walks only the records whose accounting changed since the last update
(``k._dirty``), because ftrace_check_record returns FTRACE_UPDATE_IGNORE for every other record.
This keeps a registration's cost independent of the kernel's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .errno import Errno
from .flags import FTRACE_OPS_FL_SUBOP, OPSF, RECF, ftrace_rec_count
from .hash import EMPTY_HASH, ftrace_hash, ftrace_hash_empty, ftrace_lookup_ip, ftrace_ops_hash, hash_contains_ip
from .kernel import TRAMP_BASE, TRAMP_SIZE, Kernel
from .locks import mutex_lock, mutex_unlock
from .ops import Addr, ftrace_ops

F = OPSF
R = RECF

# ftrace_ops_list_func is a linker alias of arch_ftrace_ops_list_func (vmlinux.lds.h); the model
# uses the name kallsyms prints.
FTRACE_OPS_LIST_FUNC = "arch_ftrace_ops_list_func"
FTRACE_STUB = "ftrace_stub"
FTRACE_ADDR = "ftrace_caller"            # FTRACE_ADDR on x86_64
FTRACE_REGS_ADDR = "ftrace_regs_caller"  # FTRACE_REGS_ADDR on x86_64
FTRACE_OPS_ASSIST_FUNC = "ftrace_ops_assist_func"

# ftrace_modify_all_code() commands (include/linux/ftrace.h).
FTRACE_UPDATE_CALLS = 1 << 0
FTRACE_DISABLE_CALLS = 1 << 1
FTRACE_UPDATE_TRACE_FUNC = 1 << 2
FTRACE_START_FUNC_RET = 1 << 3
FTRACE_STOP_FUNC_RET = 1 << 4

# ftrace_check_record() results (include/linux/ftrace.h).
FTRACE_UPDATE_IGNORE = 0
FTRACE_UPDATE_MAKE_CALL = 1
FTRACE_UPDATE_MODIFY_CALL = 2
FTRACE_UPDATE_MAKE_NOP = 3


# ---------------------------------------------------------------------------------------------
# Kill switch and warnings
# ---------------------------------------------------------------------------------------------
def ftrace_kill(k: Kernel) -> None:
    """ftrace_kill() (ftrace.c): disable ftrace for good after an anomaly; all policies."""
    k.ftrace_disabled = True
    k.ftrace_enabled = False
    k.ftrace_trace_function = FTRACE_STUB


def FTRACE_WARN_ON(k: Kernel, cond: bool, where: str, text: str) -> bool:
    """FTRACE_WARN_ON() (kernel/trace/ftrace.c): WARN and ftrace_kill() when ``cond`` holds."""
    if cond:
        k.warn(where, text)
        ftrace_kill(k)
    return cond


def ftrace_is_dead(k: Kernel) -> bool:
    """ftrace_is_dead() (ftrace.c): ftrace was killed."""
    return k.ftrace_disabled


# ---------------------------------------------------------------------------------------------
# ops basics
# ---------------------------------------------------------------------------------------------
def ftrace_ops_init(k: Kernel, ops: ftrace_ops) -> None:
    """ftrace_ops_init() (ftrace.c): point func_hash at local_hash and set INITIALIZED, once."""
    if not ops.flags & F.INITIALIZED:
        ops.func_hash = ops.local_hash
        ops.flags |= F.INITIALIZED


def ftrace_location(k: Kernel, ip: int) -> int:
    """ftrace_location() (ftrace.c): ``ip`` if it is a call site of a record, else 0."""
    return ip if k.cat.index(ip) is not None else 0


def ftrace_ops_get_func(ops: ftrace_ops) -> Addr | None:
    """ftrace_ops_get_func() (ftrace.c): ops->func, or the assist function for RECURSION/RCU ops."""
    if ops.flags & (F.RECURSION | F.RCU):
        return FTRACE_OPS_ASSIST_FUNC
    return ops.func


def ftrace_ops_get_list_func(ops: ftrace_ops) -> Addr | None:
    """ftrace_ops_get_list_func() (ftrace.c): the list function for DYNAMIC/RCU ops."""
    if ops.flags & (F.DYNAMIC | F.RCU):
        return FTRACE_OPS_LIST_FUNC
    return ftrace_ops_get_func(ops)


def update_ftrace_function(k: Kernel) -> None:
    """update_ftrace_function() (ftrace.c): choose the function ftrace_caller will call."""
    lst = k.ftrace_ops_list
    if not lst:
        func: Addr | None = FTRACE_STUB
    elif len(lst) == 1:
        func = ftrace_ops_get_list_func(lst[0])
    else:
        func = FTRACE_OPS_LIST_FUNC
    k.ftrace_trace_function = func if func is not None else FTRACE_STUB


def add_ftrace_ops(k: Kernel, ops: ftrace_ops) -> None:
    """add_ftrace_ops() (ftrace.c): insert at the head of ftrace_ops_list."""
    k.ftrace_ops_list.insert(0, ops)


def remove_ftrace_ops(k: Kernel, ops: ftrace_ops) -> int:
    """remove_ftrace_ops() (ftrace.c): unlink ``ops``; -1 if it is not on the list."""
    for i, op in enumerate(k.ftrace_ops_list):
        if op is ops:
            del k.ftrace_ops_list[i]
            return 0
    return -1


def arch_ftrace_update_trampoline(k: Kernel, ops: ftrace_ops) -> None:
    """arch_ftrace_update_trampoline() (arch/x86/kernel/ftrace.c): give an ops its own trampoline.

    An ops without a preset trampoline gets a private copy of ftrace_caller /
    ftrace_regs_caller (create_trampoline) and ALLOC_TRAMP; a preset trampoline is left alone.
    Only x86_64 has per-ops trampolines; elsewhere this is the kernel's empty weak function.
    """
    if not k.arch.per_ops_trampolines:
        return
    if not ops.trampoline:
        slot = 0
        while TRAMP_BASE + slot * TRAMP_SIZE in k.trampolines:
            slot += 1
        addr = TRAMP_BASE + slot * TRAMP_SIZE
        k.trampolines[addr] = ops.name
        ops.trampoline = addr
        ops.trampoline_size = TRAMP_SIZE
        ops.flags |= F.ALLOC_TRAMP
        return
    # A preset trampoline (not ALLOC_TRAMP) is the caller's own; an allocated one only has its
    # call re-pointed at ftrace_ops_get_func(ops), which the model derives when asked.


def ftrace_update_trampoline(k: Kernel, ops: ftrace_ops) -> None:
    """ftrace_update_trampoline() (ftrace.c): arch update (kallsyms/perf bookkeeping not modelled)."""
    arch_ftrace_update_trampoline(k, ops)


def arch_ftrace_trampoline_free(k: Kernel, ops: ftrace_ops) -> None:
    """arch_ftrace_trampoline_free() (x86 ftrace.c): free an allocated trampoline (ALLOC_TRAMP stays)."""
    if not ops.flags & F.ALLOC_TRAMP:
        return
    if isinstance(ops.trampoline, int):
        k.trampolines.pop(ops.trampoline, None)
    ops.trampoline = 0


def ftrace_trampoline_free(k: Kernel, ops: ftrace_ops) -> None:
    """ftrace_trampoline_free() (ftrace.c): free the ops' allocated trampoline, if any."""
    if ops.flags & F.ALLOC_TRAMP and ops.trampoline:
        arch_ftrace_trampoline_free(k, ops)


def __register_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """__register_ftrace_function() (ftrace.c): checks, DYNAMIC, list insert, trampoline."""
    if ops.flags & F.DELETED:
        return -Errno.EINVAL
    if ops.flags & F.ENABLED:
        k.warn("__register_ftrace_function", f"{ops.name} is already enabled")
        return -Errno.EBUSY
    # CONFIG_DYNAMIC_FTRACE_WITH_REGS is set on x86_64, so the SAVE_REGS checks do not apply.
    if not k.ftrace_enabled and ops.flags & F.PERMANENT:
        return -Errno.EBUSY
    if not ops.core_data:
        ops.flags |= F.DYNAMIC
    add_ftrace_ops(k, ops)
    ops.saved_func = ops.func
    ftrace_update_trampoline(k, ops)
    if k.ftrace_enabled:
        update_ftrace_function(k)
    return 0


def __unregister_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """__unregister_ftrace_function() (ftrace.c): list removal and trace-function update."""
    if not ops.flags & F.ENABLED:
        k.warn("__unregister_ftrace_function", f"{ops.name} is not enabled")
        return -Errno.EBUSY
    ret = remove_ftrace_ops(k, ops)
    if ret < 0:
        return ret
    if k.ftrace_enabled:
        update_ftrace_function(k)
    ops.func = ops.saved_func
    return 0


# ---------------------------------------------------------------------------------------------
# Which ops covers which record
# ---------------------------------------------------------------------------------------------
def ftrace_ops_test(k: Kernel, ops: ftrace_ops, ip: int, regs: bool = True) -> bool:
    """ftrace_ops_test() (ftrace.c): would ``ops`` be called for ``ip`` (``regs``: pt_regs given)."""
    if not regs and ops.flags & F.SAVE_REGS:
        return False
    return hash_contains_ip(ip, ops.hash)


def ops_traces_mod(ops: ftrace_ops) -> bool:
    """ops_traces_mod() (ftrace.c): empty filter and empty notrace, i.e. the ops traces everything."""
    h = ops.hash
    return ftrace_hash_empty(h.filter_hash) and ftrace_hash_empty(h.notrace_hash)


def ops_references_ip(ops: ftrace_ops, ip: int) -> bool:
    """ops_references_ip() (ftrace.c, split out of ops_references_rec by the seed v2 3/5)."""
    if not ops.flags & F.ENABLED:
        return False
    if ops_traces_mod(ops):
        return True
    h = ops.hash
    if not ftrace_hash_empty(h.filter_hash) and not ftrace_lookup_ip(h.filter_hash, ip):
        return False
    if ftrace_lookup_ip(h.notrace_hash, ip):
        return False
    return True


def ops_references_rec(ops: ftrace_ops, ip: int) -> bool:
    """ops_references_rec() (ftrace.c): the seed's wrapper of ops_references_ip for a record."""
    return ops_references_ip(ops, ip)


def skip_record(flags: int) -> bool:
    """skip_record() (ftrace.c): DISABLED and not ENABLED records are left out of accounting."""
    return bool(flags & R.DISABLED) and not flags & R.ENABLED


def test_rec_ops_needs_regs(k: Kernel, ip: int) -> bool:
    """test_rec_ops_needs_regs() (ftrace.c): does any listed ops covering ``ip`` want SAVE_REGS."""
    for op in k.ftrace_ops_list:
        if ftrace_ops_test(k, op, ip, True) and op.flags & F.SAVE_REGS:
            return True
    return False


def ftrace_find_tramp_ops_any(k: Kernel, ip: int) -> ftrace_ops | None:
    """ftrace_find_tramp_ops_any() (ftrace.c): first listed ops with a trampoline covering ``ip``."""
    for op in k.ftrace_ops_list:
        if op.trampoline and hash_contains_ip(ip, op.hash):
            return op
    return None


def ftrace_find_tramp_ops_any_other(k: Kernel, ip: int, op_exclude: ftrace_ops) -> ftrace_ops | None:
    """ftrace_find_tramp_ops_any_other() (ftrace.c): as _any, skipping ``op_exclude``."""
    for op in k.ftrace_ops_list:
        if op is op_exclude or not op.trampoline:
            continue
        if hash_contains_ip(ip, op.hash):
            return op
    return None


def ftrace_find_tramp_ops_next(k: Kernel, ip: int, after: ftrace_ops) -> ftrace_ops | None:
    """ftrace_find_tramp_ops_next() (ftrace.c): the next listed ops with a trampoline covering ``ip``."""
    seen = False
    for op in k.ftrace_ops_list:
        if not seen:
            seen = op is after
            continue
        if op.trampoline and hash_contains_ip(ip, op.hash):
            return op
    return None


def ftrace_find_tramp_ops_curr(k: Kernel, ip: int) -> ftrace_ops | None:
    """ftrace_find_tramp_ops_curr() (ftrace.c): the ops whose trampoline the site calls now."""
    ro = k.removed_ops
    if ro is not None and hash_contains_ip(ip, ro.old_hash):
        return ro
    for op in k.ftrace_ops_list:
        if not op.trampoline or op.flags & F.ADDING:
            continue
        if op.flags & F.MODIFYING and hash_contains_ip(ip, op.old_hash):
            return op
        if not op.flags & F.MODIFYING and hash_contains_ip(ip, op.hash):
            return op
    return None


def ftrace_find_tramp_ops_new(k: Kernel, ip: int) -> ftrace_ops | None:
    """ftrace_find_tramp_ops_new() (ftrace.c): first listed ops covering ``ip``."""
    for op in k.ftrace_ops_list:
        if hash_contains_ip(ip, op.hash):
            return op
    return None


# ---------------------------------------------------------------------------------------------
# Record accounting
# ---------------------------------------------------------------------------------------------
def _indices_in_order(k: Kernel, hash: ftrace_hash) -> Iterator[int]:
    cat = k.cat
    for ip in hash:
        i = cat.index(ip)
        if i is not None:
            yield i


def __ftrace_hash_rec_update(k: Kernel, ops: ftrace_ops, filter_hash: bool, inc: bool) -> bool:
    """__ftrace_hash_rec_update() (ftrace.c): count ``ops`` in (or out of) the records it covers.

    Returns whether a call site needs rewriting (the 6.1 ftrace_test_record check).
    """
    if not ops.flags & F.ENABLED:
        return False
    fh = ops.hash
    all_recs = False
    if filter_hash:
        hash, other_hash = fh.filter_hash, fh.notrace_hash
        if ftrace_hash_empty(hash):
            all_recs = True
    else:
        inc = not inc
        hash, other_hash = fh.notrace_hash, fh.filter_hash
        if ftrace_hash_empty(hash):
            return False

    cat = k.cat
    update = False
    is_direct = bool(ops.flags & F.DIRECT)
    save_regs = bool(ops.flags & F.SAVE_REGS)
    has_tramp = bool(ops.trampoline)
    other_ips = other_hash.ips if other_hash is not None else frozenset()
    other_empty = not other_ips

    if all_recs:
        candidates: Iterable[int] = range(len(cat))
    else:
        candidates = _indices_in_order(k, hash)  # type: ignore[arg-type]

    # Plain ints in the loop: it runs once per record for a global ops.
    recs = k.recs
    invalid = cat.invalid
    dirty = k._dirty
    ip_of = cat.ip
    REF = k.ref_max
    DISABLED, ENABLED = R.DISABLED, R.ENABLED
    DIRECT, TRAMP, REGS = R.DIRECT, R.TRAMP, R.REGS
    for i in candidates:
        flags = recs.get(i)
        if flags is None:
            flags = DISABLED if i in invalid else 0
        if flags & DISABLED and not flags & ENABLED:  # skip_record()
            continue
        ip = ip_of(i)
        if all_recs or filter_hash:
            if ip in other_ips:
                continue
        elif not (ip in other_ips or other_empty):
            continue
        if inc:
            flags += 1
            if FTRACE_WARN_ON(k, flags & REF == REF, "__ftrace_hash_rec_update",
                              "record reference count overflow"):
                k.set_flags(i, flags)
                return False
            if is_direct:
                flags |= DIRECT
            if flags & REF == 1 and has_tramp:
                flags |= TRAMP
            else:
                flags &= ~TRAMP
            if save_regs:
                flags |= REGS
        else:
            if FTRACE_WARN_ON(k, flags & REF == 0, "__ftrace_hash_rec_update",
                              "record reference count underflow"):
                return False
            flags -= 1
            if is_direct:
                flags &= ~DIRECT
            if flags & REF > 0 and flags & REGS and save_regs:
                if not test_rec_ops_needs_regs(k, ip):
                    flags &= ~REGS
            if flags & REF == 1 and ftrace_find_tramp_ops_any_other(k, ip, ops):
                flags |= TRAMP
            else:
                flags &= ~TRAMP
        if flags == (DISABLED if i in invalid else 0):
            recs.pop(i, None)
        else:
            recs[i] = flags
        dirty.add(i)
        if not update:
            update = ftrace_check_record(k, i, True, False) != FTRACE_UPDATE_IGNORE
    return update


def ftrace_hash_rec_enable(k: Kernel, ops: ftrace_ops, filter_hash: bool = True) -> bool:
    """ftrace_hash_rec_enable() (ftrace.c)."""
    return __ftrace_hash_rec_update(k, ops, filter_hash, True)


def ftrace_hash_rec_disable(k: Kernel, ops: ftrace_ops, filter_hash: bool = True) -> bool:
    """ftrace_hash_rec_disable() (ftrace.c)."""
    return __ftrace_hash_rec_update(k, ops, filter_hash, False)


#: The regex_lock of global_ops' local_hash: it names the one hash other ops share (graph_ops).
GLOBAL_OPS_HASH_LOCK = "regex_lock[global_ops]"


def shares_global_hash(ops: ftrace_ops) -> bool:
    """``ops->func_hash == &global_ops.local_hash`` (global_ops itself, graph_ops)."""
    return ops.func_hash is not None and ops.func_hash.regex_lock == GLOBAL_OPS_HASH_LOCK


def ftrace_hash_rec_update_modify(k: Kernel, ops: ftrace_ops, filter_hash: bool, inc: bool) -> None:
    """ftrace_hash_rec_update_modify() (ftrace.c): ``ops``' records, and when ``ops`` uses
    global_ops' hash, those of every other ops on the list that uses it too (graph_ops)."""
    __ftrace_hash_rec_update(k, ops, filter_hash, inc)
    if not shares_global_hash(ops):
        return
    for op in list(k.ftrace_ops_list):
        if op is not ops and op.func_hash is ops.func_hash:
            __ftrace_hash_rec_update(k, op, filter_hash, inc)


def ftrace_hash_rec_disable_modify(k: Kernel, ops: ftrace_ops, filter_hash: bool) -> None:
    """ftrace_hash_rec_disable_modify() (ftrace.c)."""
    ftrace_hash_rec_update_modify(k, ops, filter_hash, False)


def ftrace_hash_rec_enable_modify(k: Kernel, ops: ftrace_ops, filter_hash: bool) -> None:
    """ftrace_hash_rec_enable_modify() (ftrace.c)."""
    ftrace_hash_rec_update_modify(k, ops, filter_hash, True)


# ---------------------------------------------------------------------------------------------
# IPMODIFY accounting (the decision itself is the policy's __ftrace_hash_update_ipmodify)
# ---------------------------------------------------------------------------------------------
def ftrace_hash_ipmodify_rollback(k: Kernel, walk: Iterable[int], old_hash: ftrace_hash,
                                  new_hash: ftrace_hash, end: int) -> int:
    """The ``rollback:`` label of __ftrace_hash_update_ipmodify (ftrace.c; the same in every policy).

    Walks the records again up to the failing one (``end``), skipping DISABLED records and
    unchanged ones, and reverses the FTRACE_FL_IPMODIFY changes of the first pass; returns -EBUSY.
    """
    cat = k.cat
    for ip in walk:
        i = cat.index(ip)
        if i is None:
            continue
        flags = k.get_flags(i)
        if flags & R.DISABLED:
            continue
        if ip == end:
            break
        in_old, in_new = ip in old_hash.ips, ip in new_hash.ips
        if in_old == in_new:
            continue
        k.set_flags(i, flags & ~R.IPMODIFY if in_new else flags | R.IPMODIFY)
    return -Errno.EBUSY


def ftrace_hash_ipmodify_enable(k: Kernel, ops: ftrace_ops) -> int:
    """ftrace_hash_ipmodify_enable() (ftrace.c): EMPTY_HASH -> filter (NULL when the filter is empty)."""
    hash = ops.hash.filter_hash
    if ftrace_hash_empty(hash):
        hash = None
    return k.policy.ftrace_hash_update_ipmodify(k, ops, EMPTY_HASH, hash)


def ftrace_hash_ipmodify_disable(k: Kernel, ops: ftrace_ops) -> None:
    """ftrace_hash_ipmodify_disable() (ftrace.c): filter -> EMPTY_HASH; the result is ignored."""
    hash = ops.hash.filter_hash
    if ftrace_hash_empty(hash):
        hash = None
    k.policy.ftrace_hash_update_ipmodify(k, ops, hash, EMPTY_HASH)


def ftrace_hash_ipmodify_update(k: Kernel, ops: ftrace_ops, new_hash: ftrace_hash | None) -> int:
    """ftrace_hash_ipmodify_update() (ftrace.c): old filter -> new filter of a live ops."""
    old_hash = ops.hash.filter_hash
    if ftrace_hash_empty(old_hash):
        old_hash = None
    if ftrace_hash_empty(new_hash):
        new_hash = None
    return k.policy.ftrace_hash_update_ipmodify(k, ops, old_hash, new_hash)


# ---------------------------------------------------------------------------------------------
# Call-site update
# ---------------------------------------------------------------------------------------------
def ftrace_noclear_flags(k: Kernel) -> int:
    """FTRACE_NOCLEAR_FLAGS (ftrace.c): what a record keeps when its count falls to 0 -- DISABLED,
    and from 6.4 (``k.policy.rec_touched_modified``) TOUCHED and MODIFIED too."""
    if k.policy.rec_touched_modified:
        return R.DISABLED | R.TOUCHED | R.MODIFIED
    return R.DISABLED


def ftrace_check_record(k: Kernel, i: int, enable: bool, update: bool) -> int:
    """ftrace_check_record() (ftrace.c): what record ``i``'s call site needs; with ``update`` apply it.

    From 6.4 (``k.policy.rec_touched_modified``) an update that enables or changes the record also
    sets TOUCHED, and MODIFIED if the record has DIRECT or IPMODIFY at that moment; a record whose
    count is 0 keeps FTRACE_NOCLEAR_FLAGS. CALL_OPS is never set on x86_64, so its part of the
    kernel's test is always false here.
    """
    flags = k.get_flags(i)
    ENABLED, DISABLED = R.ENABLED, R.DISABLED
    if flags & DISABLED and not flags & ENABLED:  # skip_record()
        return FTRACE_UPDATE_IGNORE
    REGS, REGS_EN, TRAMP, TRAMP_EN = R.REGS, R.REGS_EN, R.TRAMP, R.TRAMP_EN
    DIRECT, DIRECT_EN = R.DIRECT, R.DIRECT_EN
    count = flags & k.ref_max
    flag = ENABLED if (enable and count) else 0
    if flag:
        if (not flags & REGS) != (not flags & REGS_EN):
            flag |= REGS
        if (not flags & TRAMP) != (not flags & TRAMP_EN):
            flag |= TRAMP
        if count == 1:
            if (not flags & DIRECT) != (not flags & DIRECT_EN):
                flag |= DIRECT
        elif flags & DIRECT_EN:
            flag |= DIRECT
    if (flags & ENABLED) == flag:
        return FTRACE_UPDATE_IGNORE
    if flag:
        flag ^= flags & ENABLED
        if update:
            flags |= ENABLED
            touched = k.policy.rec_touched_modified
            if touched:
                flags |= R.TOUCHED
            if flag & REGS:
                flags = flags | REGS_EN if flags & REGS else flags & ~REGS_EN
            if flag & TRAMP:
                flags = flags | TRAMP_EN if flags & TRAMP else flags & ~TRAMP_EN
            if touched and flags & (DIRECT | R.IPMODIFY):  # anything that modifies the function
                flags |= R.MODIFIED
            if flag & DIRECT:
                if count == 1:
                    flags = flags | DIRECT_EN if flags & DIRECT else flags & ~DIRECT_EN
                else:
                    flags &= ~DIRECT_EN
            k.set_flags(i, flags)
        return FTRACE_UPDATE_MAKE_CALL if flag & ENABLED else FTRACE_UPDATE_MODIFY_CALL
    if update:
        if not count:
            flags &= ftrace_noclear_flags(k)
        else:
            flags &= ~(ENABLED | TRAMP_EN | REGS_EN | DIRECT_EN)
        k.set_flags(i, flags)
    return FTRACE_UPDATE_MAKE_NOP


def ftrace_test_record(k: Kernel, i: int, enable: bool) -> int:
    """ftrace_test_record() (ftrace.c): ftrace_check_record without updating."""
    return ftrace_check_record(k, i, enable, False)


def ftrace_find_rec_direct(k: Kernel, ip: int) -> Addr | None:
    """ftrace_find_rec_direct() (ftrace.c): the direct trampoline registered for ``ip``, if any."""
    return k.direct_functions.get(ip)


def ftrace_get_addr_new(k: Kernel, i: int) -> Addr:
    """ftrace_get_addr_new() (ftrace.c): what record ``i``'s call site should call (from wants)."""
    flags = k.get_flags(i)
    ip = k.cat.ip(i)
    if flags & R.DIRECT and ftrace_rec_count(flags, k.ref_max) == 1:
        addr = ftrace_find_rec_direct(k, ip)
        if addr:
            return addr
        k.warn("ftrace_get_addr_new", f"no direct function for {k.cat.names[i]}", once=True)
    if flags & R.TRAMP:
        ops = ftrace_find_tramp_ops_new(k, ip)
        if FTRACE_WARN_ON(k, ops is None or not ops.trampoline, "ftrace_get_addr_new",
                          f"Bad trampoline accounting at: {k.cat.names[i]}"):
            return FTRACE_ADDR
        return ops.trampoline  # type: ignore[union-attr]
    return FTRACE_REGS_ADDR if flags & R.REGS else FTRACE_ADDR


def ftrace_get_addr_curr(k: Kernel, i: int) -> Addr:
    """ftrace_get_addr_curr() (ftrace.c): what record ``i``'s call site calls now (from _EN bits).

    A record that is not ENABLED calls nothing; the model returns ``"nop"`` for it.
    """
    flags = k.get_flags(i)
    if not flags & R.ENABLED:
        return "nop"
    ip = k.cat.ip(i)
    if flags & R.DIRECT_EN:
        addr = ftrace_find_rec_direct(k, ip)
        if addr:
            return addr
        k.warn("ftrace_get_addr_curr", f"no direct function for {k.cat.names[i]}", once=True)
    if flags & R.TRAMP_EN:
        ops = ftrace_find_tramp_ops_curr(k, ip)
        if FTRACE_WARN_ON(k, ops is None, "ftrace_get_addr_curr",
                          f"Bad trampoline accounting at: {k.cat.names[i]}"):
            return FTRACE_ADDR
        return ops.trampoline  # type: ignore[union-attr]
    return FTRACE_REGS_ADDR if flags & R.REGS_EN else FTRACE_ADDR


def ftrace_replace_code(k: Kernel, enable: bool) -> None:
    """ftrace_replace_code() (ftrace.c): rewrite every call site whose state changed."""
    if k.ftrace_disabled:
        return
    for i in sorted(k._dirty):
        ftrace_check_record(k, i, enable, True)
    k._dirty.clear()


def ftrace_update_ftrace_func(k: Kernel, func: Addr) -> int:
    """ftrace_update_ftrace_func() (x86 ftrace.c): patch the call in ftrace_caller/ftrace_regs_caller."""
    k.statics["ftrace_call"] = func
    return 0


def ftrace_modify_all_code(k: Kernel, command: int) -> None:
    """ftrace_modify_all_code() (ftrace.c): trace function first via the list func, then call sites."""
    update = command & FTRACE_UPDATE_TRACE_FUNC
    if update:
        ftrace_update_ftrace_func(k, FTRACE_OPS_LIST_FUNC)
    if command & FTRACE_UPDATE_CALLS:
        ftrace_replace_code(k, True)
    elif command & FTRACE_DISABLE_CALLS:
        ftrace_replace_code(k, False)
    if update and k.ftrace_trace_function != FTRACE_OPS_LIST_FUNC:
        ftrace_update_ftrace_func(k, k.ftrace_trace_function)
    # FTRACE_START/STOP_FUNC_RET: ftrace_enable/disable_ftrace_graph_caller, the weak no-ops
    # where the arch has DYNAMIC_FTRACE_WITH_ARGS (x86_64): the graph tracer's entry is graph_ops'
    # own func, ftrace_graph_func, reached like any other ops


def ftrace_run_update_code(k: Kernel, command: int) -> None:
    """ftrace_run_update_code() (ftrace.c): code modification under text_mutex (x86 prepare/post)."""
    mutex_lock(k, "text_mutex")
    ftrace_modify_all_code(k, command)
    mutex_unlock(k, "text_mutex")


def ftrace_run_modify_code(k: Kernel, ops: ftrace_ops, command: int, old_hash: ftrace_ops_hash) -> None:
    """ftrace_run_modify_code() (ftrace.c): code update while ``ops`` changes its filter (MODIFYING)."""
    ops.flags |= F.MODIFYING
    ops.old_hash.filter_hash = old_hash.filter_hash
    ops.old_hash.notrace_hash = old_hash.notrace_hash
    ftrace_run_update_code(k, command)
    ops.old_hash.filter_hash = None
    ops.old_hash.notrace_hash = None
    ops.flags &= ~F.MODIFYING


def ftrace_startup_enable(k: Kernel, command: int) -> None:
    """ftrace_startup_enable() (ftrace.c)."""
    if k.saved_ftrace_func != k.ftrace_trace_function:
        k.saved_ftrace_func = k.ftrace_trace_function
        command |= FTRACE_UPDATE_TRACE_FUNC
    if not command or not k.ftrace_enabled:
        return
    ftrace_run_update_code(k, command)


# ---------------------------------------------------------------------------------------------
# Startup / shutdown
# ---------------------------------------------------------------------------------------------
def ftrace_startup(k: Kernel, ops: ftrace_ops, command: int = 0) -> int:
    """ftrace_startup() (ftrace.c): put ``ops`` on the list, apply IPMODIFY rules, count, patch.

    Caller holds ftrace_lock. On an IPMODIFY refusal the registration is rolled back; as in the
    kernel, FTRACE_OPS_FL_ADDING stays set on the refused ops.
    """
    if k.ftrace_disabled:
        return -Errno.ENODEV
    ret = __register_ftrace_function(k, ops)
    if ret:
        return ret
    k.ftrace_start_up += 1
    ops.flags |= F.ENABLED | F.ADDING
    ret = ftrace_hash_ipmodify_enable(k, ops)
    if ret < 0:
        __unregister_ftrace_function(k, ops)
        k.ftrace_start_up -= 1
        ops.flags &= ~F.ENABLED
        if ops.flags & F.DYNAMIC:
            ftrace_trampoline_free(k, ops)
        return ret
    if ftrace_hash_rec_enable(k, ops, True):
        command |= FTRACE_UPDATE_CALLS
    ftrace_startup_enable(k, command)
    if k.ftrace_disabled:
        __unregister_ftrace_function(k, ops)
        return -Errno.ENODEV
    ops.flags &= ~F.ADDING
    return 0


def ftrace_shutdown(k: Kernel, ops: ftrace_ops, command: int = 0) -> int:
    """ftrace_shutdown() (ftrace.c): take ``ops`` off the list, uncount, patch, free its trampoline."""
    if k.ftrace_disabled:
        return -Errno.ENODEV
    ret = __unregister_ftrace_function(k, ops)
    if ret:
        return ret
    k.ftrace_start_up -= 1
    if k.ftrace_start_up < 0:
        k.warn("ftrace_shutdown", "ftrace_start_up < 0", once=True)
    ftrace_hash_ipmodify_disable(k, ops)
    if ftrace_hash_rec_disable(k, ops, True):
        command |= FTRACE_UPDATE_CALLS
    ops.flags &= ~F.ENABLED
    if k.saved_ftrace_func != k.ftrace_trace_function:
        k.saved_ftrace_func = k.ftrace_trace_function
        command |= FTRACE_UPDATE_TRACE_FUNC
    if command and k.ftrace_enabled:
        ops.flags |= F.REMOVING
        k.removed_ops = ops
        ops.old_hash.filter_hash = ops.hash.filter_hash
        ops.old_hash.notrace_hash = ops.hash.notrace_hash
        ftrace_run_update_code(k, command)
        if not k.ftrace_ops_list:
            # sanity check: every record must be back to its boot flags (FTRACE_NOCLEAR_FLAGS may stay)
            noclear = ftrace_noclear_flags(k)
            for r in list(k.touched_records()):
                if FTRACE_WARN_ON(k, bool(r.flags & ~noclear), "ftrace_shutdown",
                                  f"{k.cat.name_of_ip(r.ip)} flags:{r.flags:x} after the last ops left"):
                    break
        ops.old_hash.filter_hash = None
        ops.old_hash.notrace_hash = None
        k.removed_ops = None
        ops.flags &= ~F.REMOVING
    if ops.flags & F.DYNAMIC:
        ftrace_trampoline_free(k, ops)
    return 0


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------
def ftrace_hash_move(k: Kernel, ops: ftrace_ops, enable: bool, new_hash: ftrace_hash) -> int:
    """ftrace_hash_move() (ftrace.c): install a new filter (``enable``) or notrace hash on ``ops``."""
    if ops.flags & F.IPMODIFY and not enable:
        return -Errno.EINVAL
    if ftrace_hash_empty(new_hash):
        new_hash = EMPTY_HASH
    if enable:
        ret = ftrace_hash_ipmodify_update(k, ops, new_hash)
        if ret < 0:
            return ret
    ftrace_hash_rec_disable_modify(k, ops, enable)
    if enable:
        ops.hash.filter_hash = new_hash
    else:
        ops.hash.notrace_hash = new_hash
    ftrace_hash_rec_enable_modify(k, ops, enable)
    return 0


def ftrace_ops_update_code(k: Kernel, ops: ftrace_ops, old_hash: ftrace_ops_hash) -> None:
    """ftrace_ops_update_code() (ftrace.c): rewrite call sites after a live ops' filter changed;
    for global_ops' hash, also when global_ops is off but an ops sharing its hash is on."""
    if not k.ftrace_enabled:
        return
    if ops.flags & F.ENABLED:
        ftrace_run_modify_code(k, ops, FTRACE_UPDATE_CALLS, old_hash)
        return
    if not shares_global_hash(ops):
        return
    for op in list(k.ftrace_ops_list):
        if op.func_hash is ops.func_hash and op.flags & F.ENABLED:
            ftrace_run_modify_code(k, op, FTRACE_UPDATE_CALLS, old_hash)
            return


def __ftrace_hash_move_and_update_ops(k: Kernel, ops: ftrace_ops, new_hash: ftrace_hash, enable: bool) -> int:
    """__ftrace_hash_move_and_update_ops() (ftrace.c, 6.11+; before, the body of
    ftrace_hash_move_and_update_ops): install the hash (ftrace_hash_move), then rewrite the call
    sites (ftrace_ops_update_code)."""
    old = ftrace_ops_hash("old", ops.hash.filter_hash, ops.hash.notrace_hash)
    ret = ftrace_hash_move(k, ops, enable, new_hash)
    if not ret:
        ftrace_ops_update_code(k, ops, old)
    return ret


def ftrace_hash_move_and_update_ops(k: Kernel, ops: ftrace_ops, new_hash: ftrace_hash, enable: bool) -> int:
    """ftrace_hash_move_and_update_ops() (ftrace.c, up to 6.10): the policy's slot of that name
    (6.11 routes a subops' hash through its manager first:
    :func:`ftlab.model.policies.linux_6_12.ftrace.ftrace_hash_move_and_update_ops`)."""
    return __ftrace_hash_move_and_update_ops(k, ops, new_hash, enable)


# ---------------------------------------------------------------------------------------------
# Subops (v6.11+, 5fccc7552ccb "ftrace: Add subops logic to allow one ops to manage many"):
# a manager ops, registered once, traces the union of its subops' filters less the intersection
# of their notrace hashes; function_graph's users are the subops of graph_ops (fgraph.c)
# ---------------------------------------------------------------------------------------------
def append_hashes(ops: ftrace_ops) -> ftrace_hash:
    """append_hashes() (ftrace.c, 6.11+): the union of ``ops``' subops' filter hashes (EMPTY_HASH,
    i.e. everything, as soon as one is empty)."""
    ips: set[int] = set()
    for sub in ops.subop_list:
        h = sub.hash.filter_hash
        if ftrace_hash_empty(h):
            return EMPTY_HASH                         # append_hash: an empty hash does everything
        assert h is not None
        ips |= h.ips
    return ftrace_hash(ips) if ips else EMPTY_HASH


def intersect_hashes(ops: ftrace_ops) -> ftrace_hash:
    """intersect_hashes() (ftrace.c, 6.11+, as 6.12.95 has it): the first subops' turn copies the
    *manager's* own notrace hash (``ops->func_hash->notrace_hash``), each further subops
    intersects it with its notrace hash; empty as soon as the result is. With a single subops the
    manager's notrace hash is therefore returned unchanged."""
    result: frozenset[int] | None = None
    for sub in ops.subop_list:
        if result is None:
            h = ops.hash.notrace_hash
            result = h.ips if h is not None else frozenset()
            continue
        n = sub.hash.notrace_hash
        result = result & (n.ips if n is not None else frozenset())   # intersect_hash
        if not result:
            break
    return ftrace_hash(result) if result else EMPTY_HASH


def ops_equal(a: ftrace_hash | None, b: ftrace_hash | None) -> bool:
    """ops_equal() (ftrace.c, 6.11+): the two hashes hold the same ips (NULL and empty alike)."""
    if ftrace_hash_empty(a) or ftrace_hash_empty(b):
        return ftrace_hash_empty(a) and ftrace_hash_empty(b)
    assert a is not None and b is not None
    return a.ips == b.ips


def ftrace_update_ops(k: Kernel, ops: ftrace_ops, filter_hash: ftrace_hash, notrace_hash: ftrace_hash) -> int:
    """ftrace_update_ops() (ftrace.c, 6.11+): move each hash that differs into the (live) manager."""
    if not ops_equal(filter_hash, ops.hash.filter_hash):
        ret = __ftrace_hash_move_and_update_ops(k, ops, filter_hash, True)
        if ret < 0:
            return ret
    if not ops_equal(notrace_hash, ops.hash.notrace_hash):
        ret = __ftrace_hash_move_and_update_ops(k, ops, notrace_hash, False)
        if ret < 0:
            return ret
    return 0


def _list_del(ops: ftrace_ops, sub: ftrace_ops) -> None:
    ops.subop_list = tuple(op for op in ops.subop_list if op is not sub)


def ftrace_startup_subops(k: Kernel, ops: ftrace_ops, subops: ftrace_ops, command: int) -> int:
    """ftrace_startup_subops() (ftrace.c, 6.11+): add ``subops`` to the manager ``ops``.

    The first subops: the manager takes copies of its hashes and is started (ftrace_startup).
    Later ones: the manager's filter becomes the union (empty if either is), its notrace the
    intersection (empty if either is), through ftrace_update_ops. The subops is then ENABLED|SUBOP
    and managed by ``ops``; it never goes on ftrace_ops_list itself.
    """
    if k.ftrace_disabled:
        return -Errno.ENODEV
    ftrace_ops_init(k, ops)
    ftrace_ops_init(k, subops)
    if subops.flags & F.ENABLED:
        k.warn("ftrace_startup_subops", f"{subops.name} is already enabled", once=True)
        return -Errno.EBUSY
    fh, sh = ops.hash, subops.hash
    for h in (fh, sh):                                # make everything canonical
        if h.filter_hash is None:
            h.filter_hash = EMPTY_HASH
        if h.notrace_hash is None:
            h.notrace_hash = EMPTY_HASH
    assert fh.filter_hash is not None and fh.notrace_hash is not None
    assert sh.filter_hash is not None and sh.notrace_hash is not None
    if not ops.subop_list:
        saved = (fh.filter_hash, fh.notrace_hash)
        fh.filter_hash, fh.notrace_hash = sh.filter_hash, sh.notrace_hash   # copy_hash (immutable here)
        ops.subop_list = (subops,) + ops.subop_list
        ret = ftrace_startup(k, ops, command)
        if ret < 0:
            _list_del(ops, subops)
            fh.filter_hash, fh.notrace_hash = saved
        else:
            subops.flags |= F.ENABLED | FTRACE_OPS_FL_SUBOP
            subops.managed = ops
        return ret
    if ftrace_hash_empty(fh.filter_hash) or ftrace_hash_empty(sh.filter_hash):
        filter_hash = EMPTY_HASH
    else:
        filter_hash = ftrace_hash(fh.filter_hash.ips | sh.filter_hash.ips)
    if ftrace_hash_empty(fh.notrace_hash) or ftrace_hash_empty(sh.notrace_hash):
        notrace_hash = EMPTY_HASH
    else:
        both = fh.notrace_hash.ips & sh.notrace_hash.ips
        notrace_hash = ftrace_hash(both) if both else EMPTY_HASH
    ops.subop_list = (subops,) + ops.subop_list
    ret = ftrace_update_ops(k, ops, filter_hash, notrace_hash)
    if ret < 0:
        _list_del(ops, subops)
    else:
        subops.flags |= F.ENABLED | FTRACE_OPS_FL_SUBOP
        subops.managed = ops
    return ret


def ftrace_shutdown_subops(k: Kernel, ops: ftrace_ops, subops: ftrace_ops, command: int) -> int:
    """ftrace_shutdown_subops() (ftrace.c, 6.11+): take ``subops`` out of the manager ``ops``.

    The last one: the manager is shut down (ftrace_shutdown) and its hashes emptied. Otherwise the
    manager's hashes are rebuilt from the others (append_hashes, intersect_hashes) through
    ftrace_update_ops.
    """
    if k.ftrace_disabled:
        return -Errno.ENODEV
    if not subops.flags & F.ENABLED:
        k.warn("ftrace_shutdown_subops", f"{subops.name} is not enabled", once=True)
        return -Errno.EINVAL
    _list_del(ops, subops)
    if not ops.subop_list:
        ret = ftrace_shutdown(k, ops, command)
        if ret < 0:
            ops.subop_list = (subops,) + ops.subop_list
            return ret
        ops.hash.filter_hash = EMPTY_HASH
        ops.hash.notrace_hash = EMPTY_HASH
        subops.flags &= ~(F.ENABLED | FTRACE_OPS_FL_SUBOP)
        subops.managed = None
        return 0
    ret = ftrace_update_ops(k, ops, append_hashes(ops), intersect_hashes(ops))
    if ret < 0:
        ops.subop_list = (subops,) + ops.subop_list
    else:
        subops.flags &= ~(F.ENABLED | FTRACE_OPS_FL_SUBOP)
        subops.managed = None
    return ret


def ftrace_hash_move_and_update_subops(k: Kernel, subops: ftrace_ops, new_hash: ftrace_hash, enable: bool) -> int:
    """ftrace_hash_move_and_update_subops() (ftrace.c, 6.11+): a new filter (``enable``) or notrace
    hash for ``subops`` (the hash it shares, e.g. global_ops' for the top instance's
    function_graph), then the manager's rebuilt from every subops (append_hashes /
    intersect_hashes) and moved in; on failure the subops' hash is put back."""
    ops = subops.managed
    if ops is None or ops.flags & FTRACE_OPS_FL_SUBOP:
        k.warn("ftrace_hash_move_and_update_subops", f"{subops.name} has no manager", once=True)
        return -Errno.EINVAL
    sh = subops.hash
    saved = sh.filter_hash if enable else sh.notrace_hash
    moved = EMPTY_HASH if ftrace_hash_empty(new_hash) else new_hash   # __ftrace_hash_move
    if enable:
        sh.filter_hash = moved
        manager_hash = append_hashes(ops)
    else:
        sh.notrace_hash = moved
        manager_hash = intersect_hashes(ops)
    ret = __ftrace_hash_move_and_update_ops(k, ops, manager_hash, enable)
    if ret:
        if enable:
            sh.filter_hash = saved
        else:
            sh.notrace_hash = saved
    return ret


def ftrace_match_records(k: Kernel, ips: set[int], buf: str) -> int:
    """ftrace_match_records() (ftrace.c): add (or, with ``!``, remove) what ``buf`` selects; found?"""
    from .glob import match_records  # local import: glob depends on the catalogue only

    negate, indices = match_records(k.cat, buf)
    cat = k.cat
    for i in indices:
        if negate:
            ips.discard(cat.ip(i))
        else:
            ips.add(cat.ip(i))
    return 1 if indices else 0


def __ftrace_match_addr(k: Kernel, ips: set[int], ip: int, remove: bool) -> int:
    """__ftrace_match_addr() (ftrace.c): add/remove one address of a temporary hash."""
    ip = ftrace_location(k, ip)
    if not ip:
        return -Errno.EINVAL
    if remove:
        if ip not in ips:
            return -Errno.ENOENT
        ips.discard(ip)
        return 0
    ips.add(ip)
    return 0


def ftrace_set_hash(k: Kernel, ops: ftrace_ops, buf: str | None, ips: Iterable[int] | None,
                    remove: bool, reset: bool, enable: bool) -> int:
    """ftrace_set_hash() (ftrace.c): edit a filter/notrace hash under regex_lock, then ftrace_lock."""
    if k.ftrace_disabled:
        return -Errno.ENODEV
    fh = ops.hash
    mutex_lock(k, fh.regex_lock)
    try:
        orig = fh.filter_hash if enable else fh.notrace_hash
        new: set[int] = set() if reset or orig is None else set(orig.ips)
        if buf is not None and not ftrace_match_records(k, new, buf):
            return -Errno.EINVAL
        if ips is not None:
            for ip in ips:
                ret = __ftrace_match_addr(k, new, ip, remove)
                if ret < 0:
                    return ret
        mutex_lock(k, "ftrace_lock")
        ret = k.policy.ftrace_hash_move_and_update_ops(k, ops, ftrace_hash(new), enable)
        mutex_unlock(k, "ftrace_lock")
        return ret
    finally:
        mutex_unlock(k, fh.regex_lock)


def ftrace_set_addr(k: Kernel, ops: ftrace_ops, ips: Iterable[int], remove: bool, reset: bool,
                    enable: bool) -> int:
    """ftrace_set_addr() (ftrace.c)."""
    return ftrace_set_hash(k, ops, None, ips, remove, reset, enable)


def ftrace_set_filter_ip(k: Kernel, ops: ftrace_ops, ip: int, remove: bool = False,
                         reset: bool = False) -> int:
    """ftrace_set_filter_ip() (ftrace.c): add/remove one address to/from ``ops``' filter."""
    ftrace_ops_init(k, ops)
    return ftrace_set_addr(k, ops, [ip], remove, reset, True)


def ftrace_set_filter_ips(k: Kernel, ops: ftrace_ops, ips: Iterable[int], remove: bool = False,
                          reset: bool = False) -> int:
    """ftrace_set_filter_ips() (ftrace.c): several addresses at once."""
    ftrace_ops_init(k, ops)
    return ftrace_set_addr(k, ops, list(ips), remove, reset, True)


def ftrace_set_filter(k: Kernel, ops: ftrace_ops, buf: str, reset: bool = False) -> int:
    """ftrace_set_filter() (ftrace.c): filter by a tracefs token (name, glob, ``!glob``)."""
    ftrace_ops_init(k, ops)
    return ftrace_set_hash(k, ops, buf, None, False, reset, True)


def ftrace_set_notrace(k: Kernel, ops: ftrace_ops, buf: str, reset: bool = False) -> int:
    """ftrace_set_notrace() (ftrace.c): notrace by a tracefs token."""
    ftrace_ops_init(k, ops)
    return ftrace_set_hash(k, ops, buf, None, False, reset, False)


def ftrace_free_filter(k: Kernel, ops: ftrace_ops) -> None:
    """ftrace_free_filter() (ftrace.c, 6.1 and earlier): free both hashes, without any check.

    The kernel frees the memory and leaves the pointers; on a still-registered ops that is a
    use after free, which the model does not follow (it leaves such an ops' hashes as they are).
    Later kernels WARN on an enabled ops here; 6.1 does not.
    """
    ftrace_ops_init(k, ops)
    if ops.flags & F.ENABLED:
        return
    ops.hash.filter_hash = EMPTY_HASH
    ops.hash.notrace_hash = EMPTY_HASH


# ---------------------------------------------------------------------------------------------
# Public entry points: dispatch to the kernel's policy
# ---------------------------------------------------------------------------------------------
def register_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """register_ftrace_function() (ftrace.c) under ``k.policy``."""
    return k.policy.register_ftrace_function(k, ops)


def unregister_ftrace_function(k: Kernel, ops: ftrace_ops) -> int:
    """unregister_ftrace_function() (ftrace.c) under ``k.policy``."""
    return k.policy.unregister_ftrace_function(k, ops)
