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

``echo function_graph > current_tracer`` registers ``graph_ops`` instead (register_ftrace_graph,
one graph tracer at a time, else -EBUSY): static, INITIALIZED|PID, func ftrace_graph_func
(x86_64: FTRACE_OPS_GRAPH_STUB is 0), and the *same* hash as global_ops (ASSIGN_OPS_HASH(graph_ops,
&global_ops.local_hash)), so set_ftrace_filter / set_ftrace_notrace filter it too. A call of a
traced function emits ("function_graph", name): the entry (function_graph_enter); the return
side (return_to_handler, which the entry hooks on the stack) is not traced by the model.

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

from dataclasses import dataclass
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
    ftrace_hash_move_and_update_ops,
    ftrace_ops_init,
    ftrace_shutdown,
    ftrace_startup,
    register_ftrace_function,
    unregister_ftrace_function,
)
from ..glob import match_records, trace_get_user_tokens
from ..hash import EMPTY_HASH, ftrace_hash
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


@dataclass(eq=False)
class TracerState:
    """The top trace_array's function-tracing state, in ``k.subsys["tracer"]``."""

    __deepcopy__ = fast_deepcopy

    global_ops: ftrace_ops
    graph_ops: ftrace_ops
    current_tracer: str = "nop"
    function_enabled: bool = False  # tr->function_enabled
    ftrace_graph_active: int = 0

    def key(self, nm: object = None) -> tuple[Any, ...]:
        return (self.current_tracer, self.function_enabled, self.global_ops.func, self.ftrace_graph_active)


def _new_global_ops() -> ftrace_ops:
    """global_ops (kernel/trace/ftrace.c): static, INITIALIZED|PID, both hashes EMPTY_HASH."""
    ops = ftrace_ops("global_ops", FTRACE_STUB, F.INITIALIZED | F.PID, core_data=True)
    ops.local_hash.filter_hash = EMPTY_HASH
    ops.local_hash.notrace_hash = EMPTY_HASH
    ops.func_hash = ops.local_hash  # INIT_OPS_HASH(global_ops)
    return ops


def _new_graph_ops(global_ops: ftrace_ops) -> ftrace_ops:
    """graph_ops (kernel/trace/fgraph.c): static, INITIALIZED|PID, func ftrace_graph_func, and
    global_ops' local_hash as its hash (one object: filters written for global_ops filter it)."""
    ops = ftrace_ops("graph_ops", FTRACE_GRAPH_FUNC, F.INITIALIZED | F.PID, core_data=True)
    ops.func_hash = global_ops.local_hash  # ASSIGN_OPS_HASH(graph_ops, &global_ops.local_hash)
    return ops


def tracer_state(k: Kernel) -> TracerState:
    """The tracer state of ``k`` (created with global_ops and graph_ops on first use)."""
    st = k.subsys.get("tracer")
    if st is None:
        g = _new_global_ops()
        st = k.subsys["tracer"] = TracerState(g, _new_graph_ops(g))
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




def ftrace_graph_func(k: Kernel, op: ftrace_ops, ctx: CallContext) -> None:
    """ftrace_graph_func() (arch/x86/kernel/ftrace.c), all policies: the graph tracer's entry
    (prepare_ftrace_return -> function_graph_enter), recorded as ("function_graph", name)."""
    ctx.emit("function_graph", ctx.name)




def register_ftrace_graph(k: Kernel) -> int:
    """register_ftrace_graph() (kernel/trace/fgraph.c), all policies: -EBUSY if a graph tracer is
    on, else start graph_ops (ftrace_startup, FTRACE_START_FUNC_RET) under ftrace_lock."""
    st = tracer_state(k)
    mutex_lock(k, "ftrace_lock")
    if st.ftrace_graph_active:
        ret = -Errno.EBUSY
    else:
        st.ftrace_graph_active += 1
        ret = ftrace_startup(k, st.graph_ops, FTRACE_START_FUNC_RET)
    mutex_unlock(k, "ftrace_lock")
    return ret


def unregister_ftrace_graph(k: Kernel) -> None:
    """unregister_ftrace_graph() (kernel/trace/fgraph.c), all policies: stop graph_ops if on."""
    st = tracer_state(k)
    mutex_lock(k, "ftrace_lock")
    if st.ftrace_graph_active:
        st.ftrace_graph_active -= 1
        ftrace_shutdown(k, st.graph_ops, FTRACE_STOP_FUNC_RET)
    mutex_unlock(k, "ftrace_lock")


def graph_trace_init(k: Kernel) -> int:
    """graph_trace_init() (kernel/trace/trace_functions_graph.c), all policies: register_ftrace_graph."""
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
    ftrace_hash_move_and_update_ops(k, ops, ftrace_hash(work), enable)
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


__all__ = ["TracerState", "tracer_state", "global_ops", "function_trace_call", "tracing_set_tracer",
           "current_tracer", "tracefs_write", "set_ftrace_filter", "set_ftrace_notrace",
           "read_current_tracer", "read_set_ftrace_filter", "read_set_ftrace_notrace",
           "FUNCTION_TRACE_CALL"]
