"""Functions of loaded modules: the catalogue's ``name [module]`` records, ``module:name``
references in every client, the views' ``name [module]`` form, and preflight on snapshots whose
records, live patches, kprobes and filters name module functions."""

from __future__ import annotations

import copy
import json
import os

import pytest

from ftlab import catalogues
from ftlab.errors import InputError
from ftlab.model import views
from ftlab.model.catalogue import Catalogue
from ftlab.model.clients import bpf, kprobes, livepatch
from ftlab.model.kernel import Kernel
from ftlab.preflight import load_snapshot, preflight, reconstruct
from ftlab.scenario.loader import load_scenario_text
from ftlab.scenario.runner import run_scenario

TEXT = "foo\nbar\ndup\ndup\nfoo [nfs]\nonly_nfs [nfs]\ndup [nfs]\nfoo [xfs]\nonly_two [nfs]\nonly_two [xfs]\n"


@pytest.fixture()
def cat() -> Catalogue:
    return Catalogue.from_text(TEXT, "<test>")


def q(cat: Catalogue, idx: tuple[int, ...]) -> list[str]:
    return [cat.qualified_name_of_ip(cat.ip(i)) for i in idx]


# -- catalogue ----------------------------------------------------------------------------------
def test_module_records_keep_their_module(cat: Catalogue) -> None:
    assert cat.names[4] == "foo" and cat.module_of(4) == "nfs" and cat.module_of(0) is None
    assert cat.sym_of_ip(cat.ip(4)) == "foo [nfs]" and cat.sym_of_ip(cat.ip(0)) == "foo"
    assert cat.qualified_name_of_ip(cat.ip(4)) == "nfs:foo"
    assert cat.unique_names() == 5 and cat.duplicate_names() == 3  # foo, dup, only_two


def test_a_catalogue_without_modules_stores_none() -> None:
    assert Catalogue.from_text("a\nb\n", "<t>").modules is None
    assert Catalogue.synthetic(["a", "b [m]"]).module_of(1) == "m"


def test_plain_names_select_every_object_and_qualified_names_one(cat: Catalogue) -> None:
    assert q(cat, cat.indices("foo")) == ["foo", "nfs:foo", "xfs:foo"]            # filters, kallsyms order
    assert q(cat, cat.indices("nfs:foo")) == ["nfs:foo"]
    assert q(cat, cat.scope_indices("foo")) == ["foo"]                              # vmlinux first
    assert q(cat, cat.scope_indices("only_nfs")) == ["nfs:only_nfs"]                 # else the modules'
    assert q(cat, cat.object_indices("only_nfs", None)) == []                       # a live patch's vmlinux
    assert q(cat, cat.object_indices("dup", "nfs")) == ["nfs:dup"]


def test_lookup_counts_sympos_in_the_object(cat: Catalogue) -> None:
    assert cat.lookup("foo") == cat.ip(0)
    assert cat.lookup("nfs:foo") == cat.ip(4)
    assert cat.lookup("dup", 2) == cat.ip(3)
    assert cat.lookup("nfs:dup") == cat.ip(6)             # unique in nfs, although vmlinux has two
    with pytest.raises(InputError, match="name one module: nfs:only_two, xfs:only_two"):
        cat.lookup("only_two")


def test_unknown_function_names_the_module_that_has_it(cat: Catalogue) -> None:
    assert cat.unknown_function("only_nfs") == ("function 'only_nfs' is not in vmlinux; module nfs has it: "
                                                "write nfs:only_nfs")
    assert "unknown function 'ext4:foo'" in cat.unknown_function("ext4:foo")


def test_malformed_module_line_is_one_line_error() -> None:
    with pytest.raises(InputError) as e:
        Catalogue.from_text("foo\nbar [a b]\n", "f.txt")
    assert e.value.where == "f.txt:2"
    with pytest.raises(InputError, match="not a module name"):
        Catalogue.from_text("foo\nbar []\n", "f.txt")


# -- the model ----------------------------------------------------------------------------------
def test_live_patch_groups_functions_by_object(cat: Catalogue) -> None:
    k = Kernel(cat, policy="linux-6.1")
    assert livepatch.livepatch_enable(k, "p1", ["foo", "nfs:foo", ("nfs:dup", 0)]) == 0
    patch = livepatch.klp_state(k).sysfs["p1"]
    assert [(o.name, [f.old_name for f in o.funcs]) for o in patch.objs] == [(None, ["foo"]), ("nfs", ["foo", "dup"])]
    text = livepatch.livepatch_sysfs(k)
    assert "/sys/kernel/livepatch/p1/vmlinux/foo,1/" in text and "/sys/kernel/livepatch/p1/nfs/dup,1/" in text
    lines = views.enabled_functions(k).splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["foo", "foo [nfs]", "dup [nfs]"]


def test_bpf_trampolines_of_module_functions_use_the_module_btf(cat: Catalogue) -> None:
    k = Kernel(cat, policy="linux-6.1")
    for name, target in (("a", "foo"), ("b", "nfs:foo"), ("c", "xfs:foo")):
        assert bpf.bpf_attach(k, bpf.BpfProgram(name, "fentry", target, 0, 0)) == 0
    keys = sorted(bpf.bpf_state(k).trampoline_table)
    assert [key >> 32 for key in keys] == [1, 2, 3]        # vmlinux, nfs, xfs
    assert {tr.func_name for tr in bpf.bpf_state(k).trampoline_table.values()} == {"foo", "nfs:foo", "xfs:foo"}


def test_kprobe_list_names_the_module(cat: Catalogue) -> None:
    k = Kernel(cat, policy="linux-6.1")
    assert kprobes.register_kprobe(k, "nfs:only_nfs") == 0
    assert kprobes.register_kprobe(k, "bar") == 0
    lines = kprobes.kprobe_list(k).splitlines()
    assert lines[0].split()[2:] == ["bar+0x0", "[FTRACE]"]
    assert lines[1].split()[2:] == ["only_nfs+0x0", "nfs", "[FTRACE]"]


SCENARIO = """\
kernel: {policy: linux-6.1, catalogue: ["foo", "only_nfs [nfs]"]}
steps:
  - {livepatch: enable, patch: p1, funcs: [only_nfs]}
"""


def test_a_live_patch_names_a_module_function_with_its_module() -> None:
    scenario, lines = load_scenario_text(SCENARIO, "s.yaml")
    with pytest.raises(InputError, match="not in vmlinux; module nfs has it: write nfs:only_nfs"):
        run_scenario(scenario, lines, "s.yaml")
    scenario, lines = load_scenario_text(SCENARIO.replace("[only_nfs]", "[nfs:only_nfs]")
                                         + "  - {call: only_nfs, expect: {body: p1}}\n", "s.yaml")
    result = run_scenario(scenario, lines, "s.yaml")
    assert result.ok


# -- preflight ------------------------------------------------------------------------------------
DATA = os.path.join(os.path.dirname(__file__), "data", "snapshots")


def _with_module_clients(tmp_path) -> str:
    """The real 'livepatch' snapshot, plus (edited in) a second live patch of 9p:v9fs_statfs,
    a kprobe on 9p:v9fs_mount and the function tracer on 9p's v9fs_umount_begin."""
    with open(os.path.join(DATA, "livepatch.snapshot.json")) as f:
        doc = copy.deepcopy(json.load(f))
    files = doc["files"]
    files["enabled_functions"]["text"] += (
        "v9fs_umount_begin [9p] (1)      \ttramp: 0xffffffffc0400000 (function_trace_call+0x0/0x120) "
        "->function_trace_call+0x0/0x120\n"
        "v9fs_statfs [9p] (1)   I  \ttramp: 0xffffffffc0401000 (klp_ftrace_handler+0x0/0x110) "
        "->klp_ftrace_handler+0x0/0x110\n"
        "v9fs_mount [9p] (1) R    \ttramp: 0xffffffffc0402000 (kprobe_ftrace_handler+0x0/0x1b0) "
        "->kprobe_ftrace_handler+0x0/0x1b0\n")
    files["kprobes_list"] = {"path": "/sys/kernel/debug/kprobes/list",
                             "text": "ffffffffc0123456  k  v9fs_mount+0x0  9p  [FTRACE]\n"}
    files["current_tracer"] = {"path": "current_tracer", "text": "function\n"}
    files["set_ftrace_filter"] = {"path": "set_ftrace_filter", "text": "v9fs_umount_begin [9p]\n"}
    files["set_ftrace_notrace"] = {"path": "set_ftrace_notrace", "text": "#### no functions disabled ####\n"}
    doc["livepatch"]["patches"].append({"name": "lp_9p", "enabled": 1, "transition": 0, "replace": None,
                                        "objects": [{"name": "9p", "patched": 1,
                                                     "funcs": [{"name": "v9fs_statfs", "sympos": 1}]}]})
    p = tmp_path / "modules.snapshot.json"
    p.write_text(json.dumps(doc))
    return str(p)


def test_preflight_rebuilds_module_clients_and_predicts_on_module_functions(tmp_path) -> None:
    path = _with_module_clients(tmp_path)
    rec = reconstruct(load_snapshot(path), "linux-6.1")
    kinds = sorted(a.describe() for a in rec.actions)
    assert "livepatch lp_9p [9p:v9fs_statfs]" in kinds
    assert "kprobe 9p:v9fs_mount" in kinds
    tracer = next(a for a in rec.actions if a.kind == "tracer")
    cat = load_snapshot(path).catalogue
    assert tracer.args["filter"] == ["v9fs_umount_begin"]        # the only record of that name
    assert not any("module" in n and "left out" in n for n in rec.notes)
    # a name that vmlinux has too goes by its record's index (a name would select both, and
    # 6.1's ':mod:9p' selects nothing: filter_parse_regex makes '9p' an index)
    p2 = tmp_path / "dup.snapshot.json"
    d = json.loads(open(path).read())
    d["files"]["set_ftrace_filter"]["text"] = "v9fs_umount_begin [9p]\ndevice_show\n"
    p2.write_text(json.dumps(d))
    rec2 = reconstruct(load_snapshot(str(p2)), "linux-6.1")
    cat = load_snapshot(str(p2)).catalogue
    toks = next(a for a in rec2.actions if a.kind == "tracer").args["filter"]
    assert toks[0] == "v9fs_umount_begin" and cat.module_of(int(toks[1]) - 1) is None
    assert "tracer function filter=['9p:v9fs_umount_begin', 'device_show']" in [a.describe() for a in rec2.actions]
    assert cat.names[int(toks[1]) - 1] == "device_show" and len(cat.indices("device_show")) > 1
    doc = preflight(path, ["bpf attach fexit 9p:v9fs_statfs --prog fx", "kprobe add 9p:v9fs_statfs --post",
                           "call 9p:v9fs_statfs", "livepatch enable --func 9p:v9fs_mount"])
    v = doc["variants"][0]
    assert v["replay_ok"] and v["mismatches"] == []
    fx, kp, call, lp = v["actions"]
    assert fx["result"] == "ok" and any(c.startswith("v9fs_statfs [9p] (2) R I D") for c in fx["changes"])
    assert kp["result"] == "EBUSY"
    assert call["calls"][0]["body"] == "lp_9p" and call["calls"][0]["programs"] == ["fx"]
    assert lp["result"] == "ok"                       # a kprobe without post handler shares


def test_preflight_refuses_a_plain_name_that_only_a_module_has(tmp_path, capsys) -> None:
    from ftlab.cli import main
    path = _with_module_clients(tmp_path)
    code = main(["preflight", path, "livepatch enable --func v9fs_statfs"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "'v9fs_statfs' is not in vmlinux; module 9p has it: write 9p:v9fs_statfs" in err


def test_mod_command_cannot_name_a_module_whose_name_starts_with_a_digit() -> None:
    # 6.1: filter_parse_regex makes "9p" an index token, ftrace_match never matches an index, and
    # cache_mod refuses a loaded module: the write fails with -EINVAL
    from ftlab.model.clients import tracer
    from ftlab.model.errno import Errno
    from ftlab.model.glob import match_records
    c = Catalogue.from_text("vfs_read\nv9fs_mount [9p]\next4_read [ext4]\n", "<t>")
    assert match_records(c, "v9fs_mount:mod:9p").indices == []
    assert match_records(c, "*:mod:ext4").indices == [2]
    k = Kernel(c, policy="linux-6.1")
    assert tracer.set_ftrace_filter(k, "v9fs_mount:mod:9p") == -Errno.EINVAL
    assert tracer.set_ftrace_filter(k, "v9fs_mount") == 0
    assert tracer.read_set_ftrace_filter(k) == "v9fs_mount [9p]\n"


# -- the oracle's guest catalogue and generated modules ---------------------------------------------
def test_oracle_guest_catalogue_is_embedded_then_the_guest_modules() -> None:
    from ftlab.oracle.install import GUEST_MODULES
    emb, guest = catalogues.embedded(), catalogues.oracle_guest()
    assert guest.names[:len(emb)] == emb.names and guest.module_of(len(emb) - 1) is None
    mods = [guest.module_of(i) for i in range(len(emb), len(guest))]
    assert list(dict.fromkeys(mods)) == list(GUEST_MODULES)          # the guest's load order
    assert guest.lookup("9p:v9fs_statfs") == guest.lookup("v9fs_statfs")


def test_live_patch_module_has_one_klp_object_per_object() -> None:
    from ftlab.oracle.modgen import livepatch_module
    src = livepatch_module("p1", [("cmdline_proc_show", 0), ("9p:v9fs_statfs", 0)]).source
    assert '{ .old_name = "v9fs_statfs", .new_func = ftlab_body_1 }' in src
    assert "static int ftlab_body_1(struct dentry *dentry, struct kstatfs *buf)" in src
    objs = src.split("static struct klp_object ftlab_objs[] = {", 1)[1].split("};", 1)[0]
    assert objs.split("\n")[1:3] == ["\t{ .funcs = ftlab_funcs_0 },", '\t{ .name = "9p", .funcs = ftlab_funcs_1 },']


def test_oracle_reports_module_records_by_their_heads() -> None:
    from ftlab.oracle.plan import touched_functions
    scenario, _ = load_scenario_text(
        "kernel: {catalogue: oracle-guest}\nsteps:\n  - {kprobe: add, target: '9p:v9fs_statfs'}\n"
        "  - {call: cmdline_proc_show}\n", "s.yaml")
    assert touched_functions(scenario) == ["v9fs_statfs [9p]", "cmdline_proc_show"]
    k = Kernel(catalogues.oracle_guest(), policy="linux-6.1")
    assert kprobes.register_kprobe(k, "9p:v9fs_statfs") == 0
    assert views.enabled_functions(k, {"v9fs_statfs [9p]"}).startswith("v9fs_statfs [9p] (1) R")
    assert views.enabled_functions(k, {"v9fs_statfs"}) == ""


def test_a_universe_may_name_module_functions() -> None:
    from kutil import explore_universe
    model, result = explore_universe(
        "policy: linux-6.1\nfunctions: [foo, 'foo [nfs]']\ncalls: true\nclients:\n"
        "  - {livepatch: p1, funcs: ['nfs:foo']}\n  - {bpf: fx, kind: fexit, target: 'nfs:foo'}\n"
        "  - {kprobe: kp, target: foo, post: true}\n")
    assert [str(a) for a in model.call_actions] == ["call foo", "call nfs:foo"]
    assert result.states > 10
    result.assert_no_violation("no_oops", "no_model_error")


def test_catalogue_command_shows_modules(tmp_path, capsys) -> None:
    from ftlab.cli import main
    p = tmp_path / "aff.txt"
    p.write_text("foo\nbar [nfs]\nfoo [nfs]\n")
    assert main(["catalogue", "--catalogue", str(p), "--glob", "f*:mod:nfs"]) == 0
    out = capsys.readouterr().out
    assert "(MATCH_FRONT_ONLY in module nfs)" in out and out.rstrip().endswith("foo [nfs]")
    assert main(["catalogue", "--catalogue", "oracle-guest", "--glob", "v9fs_statfs"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("v9fs_statfs [9p]")
    assert main(["catalogue", "--catalogue", str(p), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["module"]) for r in doc["records"]] == [("foo", None), ("bar", "nfs"), ("foo", "nfs")]


def test_snapshot_names_a_link_target_in_a_module_by_its_btf_object() -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("snap_alone", os.path.join(os.path.dirname(__file__), "..", "src",
                                                                             "ftlab", "snapshot.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    vml = (1 << 32) | 0x80000000 | 500
    m9p = (7 << 32) | 0x80000000 | 500          # same BTF id in a module's split BTF
    text = (f"cmdline_proc_show (1) R   D\ttramp: ftrace_regs_caller+0x0/0x58 (call_direct_funcs+0x0/0x30)\n"
            f"\tdirect-->bpf_trampoline_{vml}+0x0/0x1000\n"
            f"v9fs_statfs [9p] (1) R   D\ttramp: ftrace_regs_caller+0x0/0x58 (call_direct_funcs+0x0/0x30)\n"
            f"\tdirect-->bpf_trampoline_{m9p}+0x0/0x1000\n")
    assert mod._tramp_targets(text) == {(1, 500): "cmdline_proc_show", (7, 500): "9p:v9fs_statfs"}


def test_refused_module_filter_and_plain_module_name_leave_the_state_as_it_was() -> None:
    from ftlab.model.clients import tracer
    from ftlab.model.errno import Errno
    k = Kernel(Catalogue.from_text("vfs_read\nv9fs_mount [9p]\n", "<t>"), policy="linux-6.1")
    assert tracer.set_ftrace_filter(k, "vfs_read") == 0
    assert tracer.current_tracer(k, "function") == 0
    before = k.full_key()
    # appended (no truncation at open): the refused token changes nothing
    assert tracer.set_ftrace_filter(k, "v9fs_mount:mod:9p", append=True) == -Errno.EINVAL
    assert k.full_key() == before and not k.locks
    # a live patch's plain name is its vmlinux object's: klp_find_object_symbol finds nothing
    assert livepatch.livepatch_enable(k, "p1", ["v9fs_mount"]) == -Errno.EINVAL
    assert k.full_key() == before and not k.locks
