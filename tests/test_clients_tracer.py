"""The function tracer and its filter files (kernel/trace/trace_functions.c, ftrace.c, Linux 6.1) under seed-v2."""

from __future__ import annotations

import pytest
from clientutil import EINVAL, ENODEV, LAYOUTS, TAGS, Run, assert_quiet, init_clients, run_orders, small_kernel

from ftlab import catalogues
from ftlab.errors import InputError
from ftlab.model import ftrace
from ftlab.model.calls import call
from ftlab.model.clients import tracer as t
from ftlab.model.clients.direct_client import direct_client_load
from ftlab.model.clients.kprobes import register_kprobe
from ftlab.model.clients.livepatch import livepatch_enable
from ftlab.model.flags import FTRACE_OPS_FL as F
from ftlab.model.kernel import Kernel

ALL = "#### all functions enabled ####\n"
NONE_DISABLED = "#### no functions disabled ####\n"


def filt(k: Kernel) -> str:
    return t.read_set_ftrace_filter(k)


def traced(k: Kernel, name: str, sympos: int = 0) -> bool:
    return name in call(k, name, sympos).details("function")


def test_global_ops_is_static_initialized_pid_with_empty_hashes():
    k = small_kernel()
    ops = t.global_ops(k)
    assert ops.flags == F.INITIALIZED | F.PID and ops.func == "ftrace_stub" and ops.core_data
    assert filt(k) == ALL and t.read_set_ftrace_notrace(k) == NONE_DISABLED
    assert t.read_current_tracer(k) == "nop\n"


def test_function_tracer_registers_global_ops_not_dynamic():
    run = Run(small_kernel())
    run(t.current_tracer, "function")
    ops = t.global_ops(run.k)
    assert ops.func == "function_trace_call"
    assert ops.flags == F.ENABLED | F.INITIALIZED | F.PID | F.ALLOC_TRAMP
    assert run.k.ftrace_ops_list == [ops]


@pytest.mark.slow
def test_empty_filter_traces_every_record_but_the_disabled_weak_ones_of_the_real_catalogue():
    k = init_clients(Kernel(catalogues.embedded()))
    assert len(k.cat) == 38252 and len(k.cat.invalid) == 597
    assert t.current_tracer(k, "function") == 0
    recs = list(k.enabled_records())
    assert len(recs) == 38252 - 597
    assert all(r.count == 1 for r in recs)
    assert t.current_tracer(k, "nop") == 0
    assert_quiet(k)


def test_nop_unregisters_and_resets_func_to_ftrace_stub():
    run = Run(small_kernel())
    run(t.current_tracer, "function")
    run(t.current_tracer, "function")  # same tracer again: nothing happens
    run(t.current_tracer, "nop")
    assert t.global_ops(run.k).func == "ftrace_stub"
    assert_quiet(run.k)


def test_unknown_tracers_are_not_modelled():
    with pytest.raises(InputError):
        t.current_tracer(small_kernel(), "irqsoff")


def test_function_trace_call_records_each_traced_call():
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "fa fb")
    run(t.current_tracer, "function")
    assert call(run.k, "fa").details("function") == ["fa"]
    assert not traced(run.k, "fc")


# ---------------------------------------------------------------------------------------------
# set_ftrace_filter / set_ftrace_notrace semantics
# ---------------------------------------------------------------------------------------------
def test_truncating_write_replaces_and_append_adds():
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "fa")
    run(t.set_ftrace_filter, "fb")
    assert filt(run.k) == "fb\n"
    run(t.set_ftrace_filter, "fc", append=True)
    assert filt(run.k) == "fb\nfc\n"


def test_whitespace_separated_tokens_and_globs():
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "  fa\tfb\n d*  ")
    assert filt(run.k) == "fa\nfb\ndup\ndup\n"
    run(t.set_ftrace_filter, "f*")
    assert filt(run.k) == "fa\nfb\nfc\nfd\n"


def test_bang_removes_from_the_set():
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "f*")
    run(t.set_ftrace_filter, "!fb !fc", append=True)
    assert filt(run.k) == "fa\nfd\n"


def test_a_token_matching_nothing_in_append_mode_is_einval_and_changes_nothing():
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "fa")
    run(t.set_ftrace_filter, "nosuch", append=True, expect=EINVAL)
    assert filt(run.k) == "fa\n"


def test_a_token_matching_nothing_after_truncation_leaves_the_filter_empty_i_e_all_functions():
    """ftrace_regex_open truncates at open and ftrace_regex_release installs the working hash
    whatever the write returned: ``echo nosuch > set_ftrace_filter`` fails with -EINVAL *and*
    empties the filter, so a running function tracer then traces everything."""
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "fa")
    run(t.current_tracer, "function")
    assert not traced(run.k, "fb")
    run(t.set_ftrace_filter, "nosuch", expect=EINVAL, failure_changes_state=True)
    assert filt(run.k) == ALL
    assert traced(run.k, "fb")


def test_tokens_before_a_bad_one_are_kept_and_those_after_are_dropped():
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "fa nosuch fb", expect=EINVAL, failure_changes_state=True)
    assert filt(run.k) == "fa\n"


def test_repeated_tokens_select_what_one_does_and_a_removal_between_them_counts():
    """A token that adds again what it added is matched once (4,000 ``*`` in one write used to take
    16 s); a ``!`` between two copies is honoured: the second copy adds back what it removed."""
    run = Run(small_kernel())
    run(t.set_ftrace_filter, " ".join(["f*"] * 4000))
    assert filt(run.k) == "fa\nfb\nfc\nfd\n"
    run(t.set_ftrace_filter, "f* !fb f*")
    assert filt(run.k) == "fa\nfb\nfc\nfd\n"
    run(t.set_ftrace_filter, "f* fa !fb fa")
    assert filt(run.k) == "fa\nfc\nfd\n"


def test_notrace_removes_from_what_the_tracer_sees():
    run = Run(small_kernel())
    run(t.set_ftrace_notrace, "fb")
    run(t.current_tracer, "function")
    assert t.read_set_ftrace_notrace(run.k) == "fb\n"
    assert traced(run.k, "fa") and not traced(run.k, "fb")
    run(t.set_ftrace_notrace, "")
    assert traced(run.k, "fb")


def test_filter_changes_while_tracing_update_the_records():
    run = Run(small_kernel())
    run(t.current_tracer, "function")
    run(t.set_ftrace_filter, "fa")
    assert [r.ip for r in run.k.enabled_records()] == [run.k.cat.lookup("fa")]
    run(t.set_ftrace_filter, "fb", append=True)
    assert len(list(run.k.enabled_records())) == 2


def test_index_tokens_select_by_record_number():
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "2")
    assert filt(run.k) == "fb\n"


def test_filter_files_once_ftrace_is_dead_are_enodev():
    run = Run(small_kernel())
    ftrace.ftrace_kill(run.k)
    assert t.set_ftrace_filter(run.k, "fa") == ENODEV


def test_unknown_filter_file_is_an_input_error():
    with pytest.raises(InputError):
        t.tracefs_write(small_kernel(), "set_graph_function", "fa")


# ---------------------------------------------------------------------------------------------
# With the other clients
# ---------------------------------------------------------------------------------------------
def test_tracer_live_patch_kprobe_and_direct_on_overlapping_functions_all_run():
    run = Run(small_kernel())
    run(t.set_ftrace_filter, "f*")
    run(t.current_tracer, "function")
    run(livepatch_enable, "p1", ["fb"])
    run(register_kprobe, "fb")
    run(direct_client_load, "dm", ["fa"])
    ta = call(run.k, "fa")
    assert ta.details("function") == ["fa"] and ta.details("direct") == ["dm:my_tramp"] and ta.body == "fa"
    tb = call(run.k, "fb")
    assert tb.details("function") == ["fb"] and tb.details("kprobe_pre") == ["fb"]
    assert tb.body == "livepatch_p1:fb"


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("other", [x for x in TAGS if x != "T"])
@pytest.mark.parametrize("t_first", [True, False])
@pytest.mark.parametrize("t_detached_first", [True, False])
def test_tracer_with_each_other_client_in_every_attach_and_detach_order(layout, other, t_first,
                                                                        t_detached_first):
    order = ["T", other] if t_first else [other, "T"]
    detach = ["T", other] if t_detached_first else [other, "T"]
    run_orders(layout, order, detach)
