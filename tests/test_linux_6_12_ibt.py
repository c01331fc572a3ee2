"""x86 IBT on Debian's 6.12: a function that starts with endbr64 has its ftrace record at func+4.

The shipped per-record offsets (data/*.records_at_offset_0.gz, from the real guest's
available_filter_functions_addrs against /proc/kallsyms) and where the model prints them: the
kprobe WARN the real 6.12.95 printed in the committed oracle run ("Failed to disarm kprobe-ftrace
at loadavg_proc_show+0x4/0x130", three-direct-kprobe-tracer; the model knows no function sizes,
so it prints the offset only), the kprobes list, a BPF image's call of the original body.
"""

from __future__ import annotations

from collections import Counter

from ftlab import catalogues
from ftlab.model import calls
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import bpf, kprobes
from ftlab.model.kernel import Kernel
from ftlab.scenario import load_scenario
from ftlab.scenario.runner import run_scenario


def test_the_shipped_offsets_are_the_measured_counts():
    vml = catalogues.embedded("linux-6.12")
    guest = catalogues.oracle_guest("linux-6.12")
    assert Counter(vml.fentry_offsets) == {4: 35665, 0: 7028}                 # FACTS.md section 3
    assert Counter(guest.fentry_offsets[len(vml):]) == {4: 364, 0: 49}
    for name in ("cmdline_proc_show", "loadavg_proc_show", "meminfo_proc_show", "uptime_proc_show",
                 "version_proc_show", "security_task_getsid", "9p:v9fs_statfs"):
        assert guest.fentry_offset(guest.index(guest.lookup(name))) == 4
    # 6.1 has no IBT: no offsets shipped, every record at its symbol
    assert catalogues.embedded().fentry_offsets is None and catalogues.oracle_guest().fentry_offsets is None
    assert Catalogue.synthetic(["fa"]).fentry_offset(0) == 0


def test_the_failed_kprobe_disarm_names_the_record_at_plus_4():
    src = "examples/oracle/three-direct-kprobe-tracer.yaml"
    sc, lines = load_scenario(src)
    warns = {}
    for policy in ("linux-6.12", "linux-6.1"):
        k = run_scenario(sc, lines, src, policy=policy).kernel
        # the oracle's cleanup after the scenario removes the post-handler probe kq: the disarm fails
        kprobes.unregister_kprobe(k, "kq")
        warns[policy] = [str(e) for e in k.warnings if "Failed to disarm" in e.text]
    assert warns["linux-6.12"] == ["WARN __disarm_kprobe_ftrace: Failed to disarm kprobe-ftrace at "
                                   "loadavg_proc_show+0x4 (error -2)"]
    assert warns["linux-6.1"] == ["WARN __disarm_kprobe_ftrace: Failed to disarm kprobe-ftrace at "
                                  "loadavg_proc_show+0x0 (error -2)"]


def test_the_kprobes_list_and_the_original_call_skip_the_endbr():
    k = Kernel(catalogues.embedded("linux-6.12"), policy="linux-6.12")
    assert kprobes.register_kprobe(k, "cmdline_proc_show") == 0
    assert kprobes.kprobe_list(k).split()[2] == "cmdline_proc_show+0x4"
    assert bpf.bpf_attach(k, bpf.BpfProgram("fx", "fexit", "version_proc_show")) == 0
    events = calls.call(k, "version_proc_show").events
    assert ("orig_call", "func+9 version_proc_show") in events          # endbr64 (4) + the fentry call (5)
    k61 = Kernel(catalogues.embedded(), policy="linux-6.1")
    assert bpf.bpf_attach(k61, bpf.BpfProgram("fx", "fexit", "version_proc_show")) == 0
    assert ("orig_call", "func+5 version_proc_show") in calls.call(k61, "version_proc_show").events
