"""6.12's tracefs text: enabled_functions' five flag slots, touched_functions, 6.12's %pS sizes.

Each expected line is one the real 6.12.95 printed in the oracle's guest
(tests/data/oracle-6.12/FACTS.md, section 6), with raw addresses as ``ADDR`` (they differ from
boot to boot); the 6.1 lines next to them are what the real 6.1.0-57 printed, which the model's
6.1 text must stay.
"""

from __future__ import annotations

import pytest

from ftlab.actions import RunContext
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import kprobes, livepatch, tracer
from ftlab.model.errno import Errno
from ftlab.model.kernel import Kernel
from ftlab.model.views import enabled_functions, normalize_addresses, touched_functions
from ftlab.scenario import load_scenario_text

NAMES = ["cmdline_proc_show", "version_proc_show", "security_task_getsid"]
F = "cmdline_proc_show"


def kernel(policy: str = "linux-6.12") -> Kernel:
    return Kernel(Catalogue.synthetic(NAMES), policy=policy)


def text(s: str | None) -> str:
    return normalize_addresses(s or "")


def test_a_live_patch_alone():
    for policy, line in (
            ("linux-6.12", "cmdline_proc_show (1)   I     M \ttramp: ADDR (klp_ftrace_handler+0x0/0x100) "
                           "->klp_ftrace_handler+0x0/0x100\n"),
            ("linux-6.1", "cmdline_proc_show (1)   I  \ttramp: ADDR (klp_ftrace_handler+0x0/0x110) "
                          "->klp_ftrace_handler+0x0/0x110\n")):
        k = kernel(policy)
        assert livepatch.livepatch_enable(k, "p1", [F]) == 0
        assert text(enabled_functions(k)) == line
    assert text(touched_functions(k)) == "" and touched_functions(kernel("linux-6.1")) is None


def test_kprobes_without_and_with_a_post_handler():
    k = kernel()
    assert kprobes.register_kprobe(k, F) == 0
    assert text(enabled_functions(k)) == ("cmdline_proc_show (1) R         \ttramp: ADDR (kprobe_ftrace_handler+0x0/0x1d0) "
                                          "->kprobe_ftrace_handler+0x0/0x1d0\n")
    assert text(touched_functions(k)) == text(enabled_functions(k))
    kprobes.unregister_kprobe(k, F)
    assert kprobes.register_kprobe(k, F, post_handler=True) == 0
    assert text(enabled_functions(k)) == ("cmdline_proc_show (1) R I     M \ttramp: ADDR (kprobe_ftrace_handler+0x0/0x1d0) "
                                          "->kprobe_ftrace_handler+0x0/0x1d0\n")


def test_the_function_and_function_graph_tracers_and_the_sticky_m():
    k = kernel()
    assert tracer.set_ftrace_filter(k, F) == 0 and tracer.current_tracer(k, "function") == 0
    assert text(enabled_functions(k)) == ("cmdline_proc_show (1)           \ttramp: ADDR (function_trace_call+0x0/0x110) "
                                          "->function_trace_call+0x0/0x110\n")
    assert tracer.current_tracer(k, "function_graph") == 0
    assert text(enabled_functions(k)) == ("cmdline_proc_show (1)           \ttramp: ADDR (ftrace_graph_func+0x0/0x20) "
                                          "->ftrace_graph_func+0x0/0x20\n")
    assert tracer.current_tracer(k, "nop") == 0
    livepatch.livepatch_enable(k, "p1", [F])
    livepatch.livepatch_disable(k, "p1")
    assert tracer.current_tracer(k, "function") == 0
    # "the function tracer again, after the live patch, kprobe-post, ... of earlier steps (sticky M)"
    assert text(enabled_functions(k)) == ("cmdline_proc_show (1)         M \ttramp: ADDR (function_trace_call+0x0/0x110) "
                                          "->function_trace_call+0x0/0x110\n")


def test_touched_functions_lists_count_zero_records_with_what_the_caller_calls_now():
    k = kernel()
    livepatch.livepatch_enable(k, "p1", [F])
    livepatch.livepatch_disable(k, "p1")
    # no ops registered: the static caller calls ftrace_stub
    assert enabled_functions(k) == ""
    assert touched_functions(k) == "cmdline_proc_show (0)         M  ->ftrace_stub+0x0/0x20\n"
    # another ops registered elsewhere: its list function (FACTS.md, "an fmod_ret program alone")
    livepatch.livepatch_enable(k, "p2", ["security_task_getsid"])
    assert text(touched_functions(k)) == (
        "cmdline_proc_show (0)         M  ->arch_ftrace_ops_list_func+0x0/0x1d0\n"
        "security_task_getsid (1)   I     M \ttramp: ADDR (klp_ftrace_handler+0x0/0x100) "
        "->klp_ftrace_handler+0x0/0x100\n")
    assert text(touched_functions(k, {"security_task_getsid"})).startswith("security_task_getsid (1)")


def test_a_show_touched_functions_step():
    src = ("kernel: {policy: %s}\nsteps:\n  - {livepatch: enable, patch: p1, funcs: [cmdline_proc_show]}\n"
           "  - {livepatch: disable, patch: p1}\n  - {show: touched_functions}\n")
    from ftlab.scenario.runner import run_scenario

    for policy, result, view in (("linux-6.12", "ok", "cmdline_proc_show (0)         M  ->ftrace_stub+0x0/0x20\n"),
                                 ("linux-6.1", "ENOENT", None)):
        sc, lines = load_scenario_text(src % policy, "t.yaml")
        res = run_scenario(sc, lines, "t.yaml")
        assert (res.steps[2].result, res.steps[2].view) == (result, view)


def test_show_on_a_kernel_without_the_file_is_enoent():
    from ftlab.actions.observe import ShowStep, apply_show

    k = kernel("linux-6.1")
    assert apply_show(RunContext(k), ShowStep(show="touched_functions")).ret == -Errno.ENOENT


@pytest.mark.parametrize("policy,sizes", [
    ("linux-6.12", {"ftrace_regs_caller": 0x65, "call_direct_funcs": 0x20, "klp_ftrace_handler": 0x100,
                    "kprobe_ftrace_handler": 0x1D0, "function_trace_call": 0x110, "ftrace_graph_func": 0x20,
                    "arch_ftrace_ops_list_func": 0x1D0, "ftrace_stub": 0x20}),
    ("linux-6.1", {"ftrace_regs_caller": 0x58, "call_direct_funcs": 0x30, "klp_ftrace_handler": 0x110,
                   "kprobe_ftrace_handler": 0x1B0, "function_trace_call": 0x120, "ftrace_graph_func": 0x10,
                   "arch_ftrace_ops_list_func": 0x1D0}),
])
def test_the_sizes_of_each_kernel(policy, sizes):
    from ftlab.model.views import pS

    k = kernel(policy)
    for sym, size in sizes.items():
        assert pS(k, sym) == f"{sym}+0x0/0x{size:x}"


# ---------------------------------------------------------------------------------------------
# BPF trampoline image sizes (FACTS.md section 2: every size the real 6.12.95 printed)
# ---------------------------------------------------------------------------------------------
#: (programs on the trampoline, target, under a live patch) -> direct-->bpf_trampoline_<key>+0x0/<size>
IMAGE_SIZES = [
    (("fentry",), "cmdline_proc_show", False, 0xAC), (("fentry",), "cmdline_proc_show", True, 0xAC),
    (("fentry",), "security_task_getsid", False, 0xA4), (("fentry",), "security_task_getsid", True, 0xA4),
    (("fexit",), "cmdline_proc_show", False, 0xE0), (("fexit",), "cmdline_proc_show", True, 0xE1),
    (("fexit",), "security_task_getsid", False, 0xD8),
    (("fmod_ret",), "security_task_getsid", False, 0xEE), (("fmod_ret",), "security_task_getsid", True, 0xEE),
    (("fentry", "fexit"), "cmdline_proc_show", False, 0x120), (("fentry", "fexit"), "cmdline_proc_show", True, 0x121),
    (("fexit", "fexit"), "version_proc_show", False, 0x120),
    (("fentry", "fmod_ret"), "security_task_getsid", False, 0x12E),
    (("fexit", "fmod_ret"), "security_task_getsid", True, 0x12E),
    (("fmod_ret", "fmod_ret"), "security_task_getsid", False, 0x13E),
    (("fentry", "fentry", "fexit"), "version_proc_show", False, 0x160),
    (("fentry", "fexit", "fexit"), "version_proc_show", False, 0x160),
    (("fentry", "fexit", "fmod_ret"), "security_task_getsid", False, 0x16E),
    (("fexit", "fmod_ret", "fmod_ret"), "security_task_getsid", True, 0x17E),
    (("fmod_ret",) * 3, "security_task_getsid", False, 0x18E),
    (("fentry", "fentry", "fexit", "fexit"), "version_proc_show", False, 0x1A0),
    (("fentry", "fentry", "fexit", "fexit"), "version_proc_show", True, 0x1A1),
    (("fentry", "fexit", "fmod_ret", "fmod_ret"), "security_task_getsid", False, 0x1BE),
    (("fexit",) + ("fmod_ret",) * 3, "security_task_getsid", False, 0x1CE),
    (("fentry", "fexit") + ("fmod_ret",) * 3, "security_task_getsid", False, 0x20E),
]


@pytest.mark.parametrize("progs,target,patched,size", IMAGE_SIZES)
def test_bpf_trampoline_image_sizes_are_the_real_ones(progs, target, patched, size):
    from ftlab import catalogues
    from ftlab.model.clients import bpf

    k = Kernel(catalogues.embedded("linux-6.12"), policy="linux-6.12")
    if patched:
        assert livepatch.livepatch_enable(k, "p1", [target]) == 0
    for n, kind in enumerate(progs):
        assert bpf.bpf_attach(k, bpf.BpfProgram(f"p{n}", kind, target)) == 0
    assert "\tdirect-->bpf_trampoline_" in enabled_functions(k, {target})
    assert enabled_functions(k, {target}).rstrip("\n").endswith(f"+0x0/0x{size:x}")
    assert not k.ftrace_disabled and k.warnings == []


def test_a_module_functions_image_is_sized_from_its_modules_btf():
    from ftlab import catalogues
    from ftlab.model.clients import bpf

    k = Kernel(catalogues.oracle_guest("linux-6.12"), policy="linux-6.12")
    assert k.cat.func_model(k.cat.index(k.cat.lookup("9p:v9fs_statfs"))) == ((8, False), (8, False))
    assert bpf.bpf_attach(k, bpf.BpfProgram("fx", "fexit", "9p:v9fs_statfs")) == 0
    assert enabled_functions(k, {"v9fs_statfs [9p]"}).rstrip("\n").endswith("+0x0/0xe0")


def test_image_sizes_follow_the_jit_for_other_prototypes():
    from ftlab.model.policies.linux_6_12 import BPF_TRAMP_F as T
    from ftlab.model.policies.linux_6_12.bpf_jit import FALLBACK_MODEL
    from ftlab.model.policies.linux_6_12.bpf_jit import __arch_prepare_bpf_trampoline_len as size

    ptr = (8, False)
    fexit = int(T.CALL_ORIG | T.SKIP_FRAME)
    # each register argument: a store before the programs, a load before the original call
    assert [size((ptr,) * n, fexit, (0, 1, 0), T) for n in range(1, 7)] == [0xD8 + 8 * n for n in range(6)]
    assert size((), fexit, (0, 1, 0), T) == 0xD0 - 3  # nr_regs 0: "xor eax, eax" instead of "mov eax, 0"
    # a seventh argument comes on the caller's stack: copied (load + store) for the programs and again
    # for the original call; a 4-byte one also gets its upper half cleared each time (clean_stack_garbage)
    six = size((ptr,) * 6, fexit, (0, 1, 0), T)
    assert size((ptr,) * 7, fexit, (0, 1, 0), T) == six + 16
    assert size((ptr,) * 6 + ((4, False),), fexit, (0, 1, 0), T) == six + 16 + 2 * 7
    # a 16-byte struct takes two registers
    assert size(((16, True),), fexit, (0, 1, 0), T) == size((ptr, ptr), fexit, (0, 1, 0), T)
    # more than MAX_BPF_FUNC_ARGS registers: -ENOTSUPP
    assert size(((16, True),) * 7, fexit, (0, 1, 0), T) == -524
    assert len(FALLBACK_MODEL) == 5
