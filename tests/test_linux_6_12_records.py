"""6.12's dyn_ftrace flags: TOUCHED and MODIFIED (v6.4), FTRACE_REF_MAX_SHIFT 19.

What the real 6.12.95 printed (tests/data/oracle-6.12/FACTS.md, section 1): ``M`` is set on a
record once it had IPMODIFY or DIRECT and is never cleared; a record of count 0 keeps only that
(touched_functions lists it); the function tracer or a kprobe alone never sets ``M``. 6.1 has
neither bit: its records go back to their boot flags.
"""

from __future__ import annotations

import pytest

from ftlab.model import ftrace
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import bpf, kprobes, livepatch, tracer
from ftlab.model.flags import FTRACE_FL as R
from ftlab.model.flags import rec_flag_names
from ftlab.model.kernel import Kernel
from ftlab.model.ops import ftrace_ops
from ftlab.model.policies import get_policy

NAMES = ["cmdline_proc_show", "version_proc_show", "security_task_getsid"]
F = "cmdline_proc_show"


def kernel(policy: str = "linux-6.12") -> Kernel:
    return Kernel(Catalogue.synthetic(NAMES), policy=policy)


def flags(k: Kernel, name: str = F) -> int:
    return k.rec_by_name(name).flags


def test_the_table_says_which_versions_have_the_bits():
    p12, p61 = get_policy("linux-6.12"), get_policy("linux-6.1")
    assert (p12.FTRACE_REF_MAX_SHIFT, p12.rec_touched_modified, p12.rec_call_ops) == (19, True, True)
    for name in ("linux-5.18", "seed-v2", "linux-6.1", "linux-6.1.159"):
        p = get_policy(name)
        assert (p.FTRACE_REF_MAX_SHIFT, p.rec_touched_modified, p.rec_call_ops) == (23, False, False)
    assert kernel().ref_max == 0x7FFFF and Kernel(Catalogue.synthetic(NAMES), policy=p61).ref_max == 0x7FFFFF
    assert (int(R.MODIFIED), int(R.TOUCHED), int(R.CALL_OPS_EN), int(R.CALL_OPS)) == (1 << 19, 1 << 20, 1 << 21,
                                                                                     1 << 22)


def test_a_live_patch_sets_touched_and_modified_and_they_stay_after_it_is_gone():
    k = kernel()
    assert livepatch.livepatch_enable(k, "p1", [F]) == 0
    f = flags(k)
    assert f & R.ENABLED and f & R.IPMODIFY and f & R.TOUCHED and f & R.MODIFIED
    assert k.rec_by_name(F).count == 1
    assert livepatch.livepatch_disable(k, "p1") == 0
    # count 0, R/I/D and the _EN bits cleared, FTRACE_NOCLEAR_FLAGS kept: the record stays stored
    assert flags(k) == R.TOUCHED | R.MODIFIED and k.rec_by_name(F).count == 0
    assert [r.flags for r in k.touched_records()] == [R.TOUCHED | R.MODIFIED]
    # ftrace_shutdown's sanity check (no ops left) ignores them: no WARN, ftrace alive
    assert not k.ftrace_ops_list and k.warnings == [] and not k.ftrace_disabled


def test_the_same_on_6_1_leaves_nothing():
    k = kernel("linux-6.1")
    assert livepatch.livepatch_enable(k, "p1", [F]) == 0
    assert not flags(k) & (R.TOUCHED | R.MODIFIED)
    assert livepatch.livepatch_disable(k, "p1") == 0
    assert flags(k) == 0 and list(k.touched_records()) == [] and k.warnings == []


def test_the_function_tracer_and_a_plain_kprobe_touch_but_do_not_modify():
    k = kernel()
    assert tracer.set_ftrace_filter(k, F) == 0 and tracer.current_tracer(k, "function") == 0
    assert flags(k) & R.TOUCHED and not flags(k) & R.MODIFIED
    assert tracer.current_tracer(k, "nop") == 0
    assert flags(k) == R.TOUCHED
    assert kprobes.register_kprobe(k, F) == 0
    assert flags(k) & R.REGS and not flags(k) & R.MODIFIED
    kprobes.unregister_kprobe(k, F)
    assert flags(k) == R.TOUCHED and k.warnings == []


@pytest.mark.parametrize("kind", ["fentry", "fexit", "fmod_ret"])
def test_a_bpf_trampoline_modifies(kind):
    k = kernel()
    target = "security_task_getsid" if kind == "fmod_ret" else F
    prog = bpf.BpfProgram("p", kind, target)
    assert bpf.bpf_attach(k, prog) == 0
    assert flags(k, target) & (R.DIRECT | R.MODIFIED | R.TOUCHED) == R.DIRECT | R.MODIFIED | R.TOUCHED
    assert bpf.bpf_detach(k, prog) == 0
    assert flags(k, target) == R.TOUCHED | R.MODIFIED


def test_modified_is_sticky_under_a_later_function_tracer():
    # FACTS.md: "the function tracer again, after the live patch, ... (sticky M)"
    k = kernel()
    livepatch.livepatch_enable(k, "p1", [F])
    livepatch.livepatch_disable(k, "p1")
    tracer.set_ftrace_filter(k, F)
    tracer.current_tracer(k, "function")
    f = flags(k)
    assert f & R.ENABLED and f & R.MODIFIED and not f & (R.IPMODIFY | R.DIRECT) and k.rec_by_name(F).count == 1


def test_no_code_update_no_touched():
    # ftrace_enabled=0: ftrace_startup_enable runs no update, so ftrace_check_record never sets them
    k = kernel()
    k.ftrace_enabled = False
    ops = ftrace_ops("plain", "function_trace_call")
    assert ftrace.ftrace_set_filter_ip(k, ops, k.cat.lookup(F)) == 0
    assert ftrace.register_ftrace_function(k, ops) == 0
    assert flags(k) & R.TOUCHED == 0 and k.rec_by_name(F).count == 1


def test_the_count_is_the_low_19_bits():
    k = kernel()
    livepatch.livepatch_enable(k, "p1", [F])
    f = flags(k)
    assert f & k.ref_max == 1                     # TOUCHED (bit 20) and MODIFIED (bit 19) are not counted
    assert "TOUCHED" in rec_flag_names(f, 19) and "count=1" in rec_flag_names(f, 19)
