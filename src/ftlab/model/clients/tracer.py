"""The function and function_graph tracers of the top trace instance, and its filter files, as
an ftrace client.

Kernel source: kernel/trace/trace_functions.c (function_trace_init, function_trace_reset,
tracing_start_function_trace, tracing_stop_function_trace, function_trace_call),
kernel/trace/fgraph.c (graph_ops, register_ftrace_graph, unregister_ftrace_graph),
kernel/trace/trace_functions_graph.c (graph_trace_init, graph_trace_reset),
arch/x86/kernel/ftrace.c (ftrace_graph_func),
kernel/trace/ftrace.c (global_ops, ftrace_init_array_ops, ftrace_reset_array_ops,
ftrace_regex_open, ftrace_regex_write, ftrace_process_regex, ftrace_regex_release) and
kernel/trace/trace.c (tracing_set_tracer, trace_get_user), Linux 6.1. The same code under every
ftrace policy.

Theory of operation
-------------------
The top instance traces through ``global_ops``: static (core data, never DYNAMIC), flags
INITIALIZED|PID, filter and notrace hashes starting as EMPTY_HASH, func ftrace_stub.
``echo function > current_tracer`` sets its func to function_trace_call and registers it;
``echo nop > current_tracer`` unregisters it and resets func to ftrace_stub. An empty filter
means every record (less the notrace ones, and less the DISABLED records of discarded weak
functions, which accounting skips).

``echo function_graph > current_tracer`` registers the top instance's fgraph user, whose
structure changed in 6.11 ("ftrace: Rewrite of function graph to allow multiple users"; the
policy's ``fgraph_array_size``):

* up to 6.10, ``graph_ops`` itself (register_ftrace_graph: one graph tracer at a time, else
  -EBUSY): static, INITIALIZED|PID, func ftrace_graph_func (x86_64: FTRACE_OPS_GRAPH_STUB is 0),
  and the *same* hash as global_ops (ASSIGN_OPS_HASH(graph_ops, &global_ops.local_hash)), so
  set_ftrace_filter / set_ftrace_notrace filter it too;
* from 6.11, ``funcgraph_ops`` (an fgraph_ops whose ftrace_ops has global_ops' hash:
  init_array_fgraph_ops) takes one of FGRAPH_ARRAY_SIZE slots of fgraph_array (-ENOSPC when all
  are taken) and becomes a *subops* of the manager ``graph_ops`` (static, flags 0 on x86_64, func
  ftrace_graph_func, a hash of its own): the first user starts the manager with copies of its
  hashes, later ones update its filter to the union and its notrace to the intersection
  (ftrace_startup_subops), so enabled_functions counts the manager once however many users trace
  a function. A filter file write while only function_graph runs reaches global_ops' hash, then
  the manager (the policy's ftrace_hash_move_and_update_ops). Other users (trace instances, the
  profiler) are :class:`fgraph_ops` a caller registers with :func:`register_ftrace_graph`.

A call of a traced function emits ("function_graph", name) per user that traces it: the entry
(function_graph_enter: from 6.11, each user of fgraph_array whose ops passes ftrace_ops_test, or
the only one directly); the return side (return_to_handler, which the entry hooks on the stack)
is not traced by the model.

Writing set_ftrace_filter / set_ftrace_notrace is open + write + close:

* open (ftrace_regex_open): with O_TRUNC (``>``) the working hash starts empty, in append mode
  (``>>``) it is a copy of the current one;
* write: the text is cut into whitespace-separated tokens, each processed in turn
  (ftrace_process_regex): a name, glob or index adds, a ``!`` form removes, and a token that
  selects nothing fails the write with -EINVAL -- the tokens after it are not processed, the ones
  before it stay in the working hash;
* close (ftrace_regex_release): the working hash replaces the ops' hash, *whatever the writes
  returned*.

So ``echo nosuch >> set_ftrace_filter`` changes nothing, but ``echo nosuch > set_ftrace_filter``
leaves the filter empty, i.e. every function traced if the tracer is on: the truncation happened
at open. The model does what the kernel does; :func:`tracefs_write` returns the failed write's
-EINVAL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import InputError
from .. import views
from ..calls import CallContext
from ..calltable import CallTable, install
from ..copying import fast_deepcopy
from ..errno import Errno
from ..flags import OPSF
from ..ftrace import (
    FTRACE_START_FUNC_RET,
    FTRACE_STOP_FUNC_RET,
    FTRACE_STUB,
    ftrace_ops_init,
    ftrace_shutdown,
    ftrace_shutdown_subops,
    ftrace_startup,
    ftrace_startup_subops,
    register_ftrace_function,
    unregister_ftrace_function,
)
from ..glob import match_records, trace_get_user_tokens
from ..hash import EMPTY_HASH, ftrace_hash, hash_contains_ip
from ..kernel import Kernel
from ..locks import mutex_lock, mutex_unlock
from ..ops import ftrace_ops
from ..refusals import kept

F = OPSF  # plain ints: hot paths

FUNCTION_TRACE_CALL = "function_trace_call"
FTRACE_GRAPH_FUNC = "ftrace_graph_func"
#: Tracers the model knows; others in available_tracers of a Debian kernel are not modelled.
MODELLED_TRACERS = ("function", "function_graph", "nop")
FILTER_FILES = ("set_ftrace_filter", "set_ftrace_notrace")


#: trace_graph_entry (trace_functions_graph.c): the entry function of a trace instance's fgraph user.
TRACE_GRAPH_ENTRY = "trace_graph_entry"


@dataclass(eq=False)
class fgraph_ops:
    """struct fgraph_ops (include/linux/ftrace.h): a function-graph user. ``entryfunc`` names its entry
    function; ``ops`` (6.11+) is its ftrace_ops, a subops of graph_ops whose hash is its filter;
    ``idx`` its slot in fgraph_array."""

    __deepcopy__ = fast_deepcopy

    name: str
    ops: ftrace_ops
    entryfunc: str = TRACE_GRAPH_ENTRY
    idx: int = -1


def fgraph_init_ops(name: str, src_ops: ftrace_ops | None) -> ftrace_ops:
    """fgraph_init_ops() (fgraph.c, 6.11+): an fgraph user's ftrace_ops, PID, and with ``src_ops``
    (the instance's ops) its local_hash as its func_hash, INITIALIZED."""
    ops = ftrace_ops(name, None, F.PID, core_data=True)
    if src_ops is not None:
        ops.func_hash = src_ops.local_hash
        ops.flags |= F.INITIALIZED
    return ops


@dataclass(eq=False)
class TracerState:
    """The top trace_array's function-tracing state, in ``k.subsys["tracer"]``, and fgraph.c's.

    ``graph_ops``: up to 6.10 the graph tracer's own ops, from 6.11 the manager; ``funcgraph_ops``
    (6.11+): the top instance's fgraph user; ``fgraph_array`` / ``fgraph_lru_*`` (6.11+): the users
    by slot and the LRU table of free slots (empty until the first registration).
    """

    __deepcopy__ = fast_deepcopy

    global_ops: ftrace_ops
    graph_ops: ftrace_ops
    current_tracer: str = "nop"
    function_enabled: bool = False  # tr->function_enabled
    ftrace_graph_active: int = 0
    funcgraph_ops: fgraph_ops | None = None
    fgraph_array: list[fgraph_ops | None] = field(default_factory=list)
    fgraph_lru_table: list[int] = field(default_factory=list)
    fgraph_lru_next: int = 0
    fgraph_lru_last: int = 0

    def key(self, nm: object = None) -> tuple[Any, ...]:
        key: tuple[Any, ...] = (self.current_tracer, self.function_enabled, self.global_ops.func,
                                self.ftrace_graph_active)
        if self.fgraph_array:  # 6.11+: who is in which slot, and the order slots are handed out in
            key += (tuple(g.name if g is not None else None for g in self.fgraph_array),
                    tuple(self.fgraph_lru_table), self.fgraph_lru_next, self.fgraph_lru_last)
        return key


def _new_global_ops() -> ftrace_ops:
    """global_ops (kernel/trace/ftrace.c): static, INITIALIZED|PID, both hashes EMPTY_HASH."""
    ops = ftrace_ops("global_ops", FTRACE_STUB, F.INITIALIZED | F.PID, core_data=True)
    ops.local_hash.filter_hash = EMPTY_HASH
    ops.local_hash.notrace_hash = EMPTY_HASH
    ops.func_hash = ops.local_hash  # INIT_OPS_HASH(global_ops)
    return ops


def _new_graph_ops(global_ops: ftrace_ops) -> ftrace_ops:
    """graph_ops (kernel/trace/fgraph.c, up to 6.10): static, INITIALIZED|PID, func ftrace_graph_func,
    and global_ops' local_hash as its hash (one object: filters written for global_ops filter it)."""
    ops = ftrace_ops("graph_ops", FTRACE_GRAPH_FUNC, F.INITIALIZED | F.PID, core_data=True)
    ops.func_hash = global_ops.local_hash  # ASSIGN_OPS_HASH(graph_ops, &global_ops.local_hash)
    return ops


def _new_graph_manager() -> ftrace_ops:
    """graph_ops (kernel/trace/fgraph.c, 6.11+): the manager of every fgraph user: static, flags
    FTRACE_OPS_GRAPH_STUB (0 on x86_64), func ftrace_graph_func, no trampoline preset (x86_64 has
    no FTRACE_GRAPH_TRAMP_ADDR); its hash is its own (ftrace_ops_init at the first subops)."""
    return ftrace_ops("graph_ops", FTRACE_GRAPH_FUNC, 0, core_data=True)


def tracer_state(k: Kernel) -> TracerState:
    """The tracer state of ``k`` (created with global_ops and graph_ops -- from 6.11 also the top
    instance's funcgraph_ops, init_array_fgraph_ops -- on first use)."""
    st = k.subsys.get("tracer")
    if st is None:
        g = _new_global_ops()
        if k.policy.fgraph_array_size:
            st = TracerState(g, _new_graph_manager(),
                             funcgraph_ops=fgraph_ops("funcgraph_ops", fgraph_init_ops("funcgraph_ops", g)))
        else:
            st = TracerState(g, _new_graph_ops(g))
        k.subsys["tracer"] = st
        install(k, CALLS)
    return st


def global_ops(k: Kernel) -> ftrace_ops:
    """The kernel's global_ops."""
    return tracer_state(k).global_ops


# ---------------------------------------------------------------------------------------------
# trace_functions.c / ftrace.c
# ---------------------------------------------------------------------------------------------
def function_trace_call(k: Kernel, op: ftrace_ops, ctx: CallContext) -> None:
    """function_trace_call() (kernel/trace/trace_functions.c), all policies.

    Record the call: ("function", name).
    """
    ctx.emit("function", ctx.name)




def trace_graph_entry(k: Kernel, gops: fgraph_ops, ctx: CallContext) -> None:
    """trace_graph_entry() (kernel/trace/trace_functions_graph.c), all policies: the graph tracer's
    entry of a call, recorded as ("function_graph", name)."""
    ctx.emit("function_graph", ctx.name)


#: The entry functions of fgraph users the model knows.
ENTRY_FUNCS = {TRACE_GRAPH_ENTRY: trace_graph_entry}


def ftrace_graph_func(k: Kernel, op: ftrace_ops, ctx: CallContext) -> None:
    """ftrace_graph_func() (arch/x86/kernel/ftrace.c), all policies: prepare_ftrace_return ->
    function_graph_enter. Up to 6.10 the one graph tracer's entry; from 6.11 the only user's
    directly (fgraph_do_direct), else every user of fgraph_array whose ops traces the function."""
    st = tracer_state(k)
    if not k.policy.fgraph_array_size:
        ctx.emit("function_graph", ctx.name)
        return
    users = [g for g in st.fgraph_array if g is not None]
    for gops in users:
        if len(users) > 1 and not hash_contains_ip(ctx.ip, gops.ops.hash):
            continue
        entry = ENTRY_FUNCS.get(gops.entryfunc)
        if entry is None:
            ctx.emit("unmodelled", f"fgraph entry function {gops.entryfunc} of {gops.name}")
            continue
        entry(k, gops, ctx)


def fgraph_lru_init(st: TracerState, size: int) -> None:
    """fgraph_lru_init() (fgraph.c, 6.11+): every slot free, in index order."""
    st.fgraph_lru_table = list(range(size))


def fgraph_lru_alloc_index(st: TracerState) -> int:
    """fgraph_lru_alloc_index() (fgraph.c, 6.11+): the least recently freed slot, -1 if none."""
    idx = st.fgraph_lru_table[st.fgraph_lru_next]
    if idx == -1:
        return -1
    st.fgraph_lru_table[st.fgraph_lru_next] = -1
    st.fgraph_lru_next = (st.fgraph_lru_next + 1) % len(st.fgraph_lru_table)
    return idx


def fgraph_lru_release_index(k: Kernel, st: TracerState, idx: int) -> int:
    """fgraph_lru_release_index() (fgraph.c, 6.11+): slot ``idx`` back to the table's end."""
    size = len(st.fgraph_lru_table)
    if idx < 0 or idx >= size:
        return -1
    if st.fgraph_lru_table[st.fgraph_lru_last] != -1:
        k.warn("fgraph_lru_release_index", f"slot {idx} released into a full table", once=True)
        return -1
    st.fgraph_lru_table[st.fgraph_lru_last] = idx
    st.fgraph_lru_last = (st.fgraph_lru_last + 1) % size
    return 0


def register_ftrace_graph(k: Kernel, gops: fgraph_ops | None = None) -> int:
    """register_ftrace_graph(gops) (kernel/trace/fgraph.c), under ftrace_lock; ``gops``: the top
    instance's user by default.

    Up to 6.10: -EBUSY if a graph tracer is on, else start graph_ops (ftrace_startup,
    FTRACE_START_FUNC_RET). From 6.11 (``k.policy.fgraph_array_size``): a slot of fgraph_array
    (-ENOSPC when none is free), then ftrace_startup_subops(graph_ops, gops->ops) --
    FTRACE_START_FUNC_RET for the first user only; a failure gives the slot back.
    """
    st = tracer_state(k)
    size = k.policy.fgraph_array_size
    mutex_lock(k, "ftrace_lock")
    if not size:
        if st.ftrace_graph_active:
            ret = -Errno.EBUSY
        else:
            st.ftrace_graph_active += 1
            ret = ftrace_startup(k, st.graph_ops, FTRACE_START_FUNC_RET)
        mutex_unlock(k, "ftrace_lock")
        return ret
    if gops is None:
        assert st.funcgraph_ops is not None
        gops = st.funcgraph_ops
    if not st.fgraph_array:
        st.fgraph_array = [None] * size
        fgraph_lru_init(st, size)
    i = fgraph_lru_alloc_index(st)
    if i < 0 or st.fgraph_array[i] is not None:
        mutex_unlock(k, "ftrace_lock")
        return -Errno.ENOSPC
    gops.idx = i
    st.ftrace_graph_active += 1
    command = FTRACE_START_FUNC_RET if st.ftrace_graph_active == 1 else 0
    ret = ftrace_startup_subops(k, st.graph_ops, gops.ops, command)
    if not ret:
        st.fgraph_array[i] = gops
    else:
        st.ftrace_graph_active -= 1
        fgraph_lru_release_index(k, st, i)
    mutex_unlock(k, "ftrace_lock")
    return ret


def unregister_ftrace_graph(k: Kernel, gops: fgraph_ops | None = None) -> None:
    """unregister_ftrace_graph(gops) (kernel/trace/fgraph.c), under ftrace_lock. Up to 6.10: stop
    graph_ops if on. From 6.11: if ``gops`` holds its slot, free it and ftrace_shutdown_subops
    (FTRACE_STOP_FUNC_RET for the last user)."""
    st = tracer_state(k)
    mutex_lock(k, "ftrace_lock")
    if not k.policy.fgraph_array_size:
        if st.ftrace_graph_active:
            st.ftrace_graph_active -= 1
            ftrace_shutdown(k, st.graph_ops, FTRACE_STOP_FUNC_RET)
        mutex_unlock(k, "ftrace_lock")
        return
    if gops is None:
        assert st.funcgraph_ops is not None
        gops = st.funcgraph_ops
    if (st.ftrace_graph_active and 0 <= gops.idx < len(st.fgraph_array) and st.fgraph_array[gops.idx] is gops
            and fgraph_lru_release_index(k, st, gops.idx) == 0):
        st.fgraph_array[gops.idx] = None
        st.ftrace_graph_active -= 1
        command = FTRACE_STOP_FUNC_RET if not st.ftrace_graph_active else 0
        ftrace_shutdown_subops(k, st.graph_ops, gops.ops, command)
    mutex_unlock(k, "ftrace_lock")


def graph_trace_init(k: Kernel) -> int:
    """graph_trace_init() (kernel/trace/trace_functions_graph.c), all policies: register_ftrace_graph
    of the instance's user (6.11+: tr->gops, the top instance's funcgraph_ops)."""
    return register_ftrace_graph(k)


def graph_trace_reset(k: Kernel) -> None:
    """graph_trace_reset() (kernel/trace/trace_functions_graph.c), all policies: unregister_ftrace_graph."""
    unregister_ftrace_graph(k)


def ftrace_init_array_ops(k: Kernel, func: str) -> None:
    """ftrace_init_array_ops() (kernel/trace/ftrace.c), all policies: the instance's ops calls ``func``."""
    global_ops(k).func = func


def ftrace_reset_array_ops(k: Kernel) -> None:
    """ftrace_reset_array_ops() (kernel/trace/ftrace.c), all policies: back to ftrace_stub."""
    global_ops(k).func = FTRACE_STUB


def tracing_start_function_trace(k: Kernel) -> int:
    """tracing_start_function_trace() (trace_functions.c), all policies.

    Register the ops; the kernel ignores the result.
    """
    st = tracer_state(k)
    st.function_enabled = False
    ret = register_ftrace_function(k, st.global_ops)
    st.function_enabled = True
    return ret


def tracing_stop_function_trace(k: Kernel) -> int:
    """tracing_stop_function_trace() (trace_functions.c), all policies.

    Unregister the ops; the result is ignored.
    """
    st = tracer_state(k)
    st.function_enabled = False
    return unregister_ftrace_function(k, st.global_ops)


def function_trace_init(k: Kernel) -> int:
    """function_trace_init() (trace_functions.c), all policies.

    Func = function_trace_call, then start; returns 0.
    """
    ftrace_init_array_ops(k, FUNCTION_TRACE_CALL)
    tracing_start_function_trace(k)
    return 0


def function_trace_reset(k: Kernel) -> None:
    """function_trace_reset() (trace_functions.c), all policies: stop, func back to ftrace_stub."""
    tracing_stop_function_trace(k)
    ftrace_reset_array_ops(k)


def tracing_set_tracer(k: Kernel, name: str) -> int:
    """tracing_set_tracer() (kernel/trace/trace.c), all policies, for the function, function_graph
    and nop tracers only.

    Same tracer again -> 0 with nothing done; otherwise the old tracer's reset, then the new
    one's init. Another real tracer raises InputError (not modelled).
    """
    if name not in MODELLED_TRACERS:
        raise InputError(f"tracer {name!r} is not modelled (modelled: {', '.join(MODELLED_TRACERS)})")
    st = tracer_state(k)
    if st.current_tracer == name:
        return 0
    if st.current_tracer == "function":
        function_trace_reset(k)
    elif st.current_tracer == "function_graph":
        graph_trace_reset(k)
    st.current_tracer = "nop"
    if name == "function":
        ret = function_trace_init(k)
    elif name == "function_graph":
        ret = graph_trace_init(k)
    else:
        return 0
    if ret:
        return ret
    st.current_tracer = name
    return 0


# ---------------------------------------------------------------------------------------------
# Filter files
# ---------------------------------------------------------------------------------------------
def ftrace_process_regex(k: Kernel, ips: set[int], token: str) -> int:
    """ftrace_process_regex() (kernel/trace/ftrace.c), all policies.

    Apply one token to the working hash; -EINVAL if it selects nothing.
    """
    negate, indices = match_records(k.cat, token)
    if not indices:
        return -Errno.EINVAL
    selected = map(k.cat.ip, indices)
    if negate:
        ips.difference_update(selected)
    else:
        ips.update(selected)
    return 0


def tracefs_write(k: Kernel, file: str, text: str, append: bool = False) -> int:
    """``echo text > file`` (or ``>>`` with ``append``) for set_ftrace_filter / set_ftrace_notrace.

    open (ftrace_regex_open) + one write per token (ftrace_regex_write) + close
    (ftrace_regex_release). Returns 0, -ENODEV once ftrace is dead, or the -EINVAL of the first
    token that selects nothing; the close applies the working hash in every case.
    """
    if file not in FILTER_FILES:
        raise InputError(f"{file!r} is not a filter file ({', '.join(FILTER_FILES)})")
    enable = file == "set_ftrace_filter"
    if k.ftrace_disabled:
        return -Errno.ENODEV
    ops = global_ops(k)
    ftrace_ops_init(k, ops)
    tokens = trace_get_user_tokens(text)
    # open
    fh = ops.hash
    mutex_lock(k, fh.regex_lock)
    orig = fh.filter_hash if enable else fh.notrace_hash
    work: set[int] = set() if not append or orig is None else set(orig.ips)
    mutex_unlock(k, fh.regex_lock)
    # writes: each token in turn; the first failure ends the writing. A token that adds what it
    # already added, with no removal since, changes nothing and is not matched again (the kernel
    # matches it again, to the same effect)
    ret = 0
    added: set[str] = set()
    for token in tokens:
        if token in added:
            continue
        ret = ftrace_process_regex(k, work, token)
        if ret < 0:
            break
        if token.startswith("!"):
            added.clear()
        else:
            added.add(token)
    # release
    mutex_lock(k, fh.regex_lock)
    mutex_lock(k, "ftrace_lock")
    k.policy.ftrace_hash_move_and_update_ops(k, ops, ftrace_hash(work), enable)
    mutex_unlock(k, "ftrace_lock")
    mutex_unlock(k, fh.regex_lock)
    if ret < 0 and work != (set(orig.ips) if orig is not None else set()):
        kept(k, "ftrace_regex_release", f"the failed write to {file} still installs the tokens before the one "
             "that selects nothing")
    return ret


def set_ftrace_filter(k: Kernel, text: str, append: bool = False) -> int:
    """``echo text > set_ftrace_filter`` (``>>`` with ``append``); see :func:`tracefs_write`."""
    return tracefs_write(k, "set_ftrace_filter", text, append)


def set_ftrace_notrace(k: Kernel, text: str, append: bool = False) -> int:
    """``echo text > set_ftrace_notrace`` (``>>`` with ``append``); see :func:`tracefs_write`."""
    return tracefs_write(k, "set_ftrace_notrace", text, append)


def current_tracer(k: Kernel, name: str) -> int:
    """``echo name > current_tracer`` (tracing_set_tracer); ``function`` or ``nop``."""
    return tracing_set_tracer(k, name.strip())


def read_current_tracer(k: Kernel) -> str:
    """``cat current_tracer``."""
    return tracer_state(k).current_tracer + "\n"


def read_set_ftrace_filter(k: Kernel) -> str:
    """``cat set_ftrace_filter``: names in record order, or ``#### all functions enabled ####``."""
    return views.set_ftrace_filter(k, global_ops(k))


def read_set_ftrace_notrace(k: Kernel) -> str:
    """``cat set_ftrace_notrace``: names in record order, or ``#### no functions disabled ####``."""
    return views.set_ftrace_filter(k, global_ops(k), notrace=True)


#: What this client adds to a kernel's call table (:mod:`ftlab.model.calltable`).
CALLS = CallTable(callbacks={FUNCTION_TRACE_CALL: function_trace_call, FTRACE_GRAPH_FUNC: ftrace_graph_func})


__all__ = ["TracerState", "fgraph_ops", "fgraph_init_ops", "register_ftrace_graph", "unregister_ftrace_graph",
           "tracer_state", "global_ops", "function_trace_call", "tracing_set_tracer",
           "current_tracer", "tracefs_write", "set_ftrace_filter", "set_ftrace_notrace",
           "read_current_tracer", "read_set_ftrace_filter", "read_set_ftrace_notrace",
           "FUNCTION_TRACE_CALL"]
