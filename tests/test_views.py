"""enabled_functions and friends in the kernel's text format, against real-kernel observations."""

from __future__ import annotations

from kutil import F, SharingOwner, ftrace_ops

from ftlab import catalogues
from ftlab.model import direct, ftrace, views
from ftlab.model.kernel import Kernel

# Observed on Debian 6.1.0-56 (shared/reference/real-kernel-oracle.md), first line of each entry.
OBS_FEXIT = "cmdline_proc_show (1) R   D\ttramp: ftrace_regs_caller+0x0/0x58 (call_direct_funcs+0x0/0x30)"
OBS_BOTH = "cmdline_proc_show (2) R I D ->arch_ftrace_ops_list_func+0x0/0x1d0"
OBS_KLP = ("cmdline_proc_show (1)   I  \ttramp: 0xffffffffc02f8000 (klp_ftrace_handler+0x0/0x110) "
           "->klp_ftrace_handler+0x0/0x110")


def _klp(k: Kernel, ip: int) -> ftrace_ops:
    ops = ftrace_ops("klp_ops", "klp_ftrace_handler", F.IPMODIFY | F.PERMANENT)
    assert ftrace.ftrace_set_filter_ip(k, ops, ip) == 0
    return ops


def _bpf(k: Kernel, ip: int) -> ftrace_ops:
    owner = SharingOwner()
    owner.kernel = k
    ops = ftrace_ops("tr->fops", None, 0, ops_func=owner)
    assert ftrace.ftrace_set_filter_ip(k, ops, ip) == 0
    assert direct.register_ftrace_direct_multi(k, ops, "bpf_trampoline_6442455552") == 0
    return ops


def first_lines(text: str) -> list[str]:
    return [views.normalize_addresses(line) for line in text.splitlines() if not line.startswith("\t")]


def test_enabled_functions_bpf_alone_then_live_patch_match_the_real_kernel():
    k = Kernel(catalogues.embedded())
    ip = k.cat.lookup("cmdline_proc_show")
    _bpf(k, ip)
    text = views.enabled_functions(k)
    assert first_lines(text) == [OBS_FEXIT]
    assert text.splitlines()[1] == "\tdirect-->bpf_trampoline_6442455552+0x0/0x1000"
    assert ftrace.register_ftrace_function(k, _klp(k, ip)) == 0
    assert first_lines(views.enabled_functions(k)) == [OBS_BOTH]


def test_enabled_functions_live_patch_alone_matches_the_real_kernel_modulo_address():
    k = Kernel(catalogues.embedded())
    assert ftrace.register_ftrace_function(k, _klp(k, k.cat.lookup("cmdline_proc_show"))) == 0
    assert first_lines(views.enabled_functions(k)) == [views.normalize_addresses(OBS_KLP)]


def test_enabled_functions_is_empty_once_ftrace_is_dead():
    k = Kernel(catalogues.embedded())
    assert ftrace.register_ftrace_function(k, _klp(k, k.cat.lookup("cmdline_proc_show"))) == 0
    ftrace.ftrace_kill(k)
    assert views.enabled_functions(k) == ""


def test_set_ftrace_filter_view_and_ops_list():
    k = Kernel(catalogues.embedded())
    ops = ftrace_ops("t", "function_trace_call")
    ftrace.ftrace_ops_init(k, ops)
    assert views.set_ftrace_filter(k, ops) == "#### all functions enabled ####\n"
    assert views.set_ftrace_filter(k, ops, notrace=True) == "#### no functions disabled ####\n"
    ftrace.ftrace_set_filter_ip(k, ops, k.cat.lookup("cmdline_proc_show"))
    assert views.set_ftrace_filter(k, ops) == "cmdline_proc_show\n"
    assert ftrace.register_ftrace_function(k, ops) == 0
    assert views.ops_list(k).startswith("t: flags=ENABLED|DYNAMIC|INITIALIZED|ALLOC_TRAMP ")
    assert views.held_locks(k) == ""
