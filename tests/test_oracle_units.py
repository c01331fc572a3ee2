"""The real-kernel oracle's pure parts, without QEMU: generator, plan, module C, BPF program,
BTF parser, cpio writer, kernel discovery, observables, diff, and the CLI's bundled set.

The end-to-end run on a real guest is tests/test_oracle_smoke.py.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from importlib import resources

import pytest

from ftlab.errors import InputError, OracleError
from ftlab.oracle import agent, btf, gen, initramfs, install, modgen
from ftlab.oracle.diff import compare_scenario, compare_steps, render
from ftlab.oracle.observe import model_steps, normalize_record, observe, split_records
from ftlab.oracle.plan import plan_scenario, touched_functions
from ftlab.oracle.targets import CALLABLE
from ftlab.scenario import load_scenario_text

FAKE_BTF = {n: {"id": 100 + i, "nargs": 1 if n.startswith("security_") else 2} for i, n in enumerate(CALLABLE)}


def oracle_examples() -> dict[str, str]:
    root = resources.files("ftlab.examples").joinpath("oracle")
    return {e.name: e.read_text(encoding="utf-8") for e in root.iterdir() if e.name.endswith(".yaml")}


# -- generator -----------------------------------------------------------------------------------
def test_generator_is_deterministic_per_seed() -> None:
    a = gen.generate_files(7, 5)
    assert a == gen.generate_files(7, 5)
    assert a != gen.generate_files(8, 5)
    assert [n for n, _ in a] == [f"gen-7-{i:03d}.yaml" for i in range(5)]


def test_generated_scenarios_load_and_plan() -> None:
    for name, text in gen.generate_files(3, 40):
        sc, lines = load_scenario_text(text, name)
        planned = plan_scenario(sc, lines, name, FAKE_BTF)
        assert 5 <= len(planned.steps) <= 13
        assert {st["func"] for st in planned.steps if st["op"] == "call"} <= set(CALLABLE)
        model_steps(sc, lines, name)  # the model runs them (no input error)


def test_generated_scenarios_pin_a_known_text() -> None:
    text = gen.generate_files(1, 1)[0][1]
    assert text.startswith("description: random scenario 0 of seed 1 over ")
    assert "kernel: {policy: linux-6.1}\nsteps:\n  - {" in text


# -- plan ----------------------------------------------------------------------------------------
SCEN = """\
description: t
kernel: {policy: linux-6.1}
steps:
  - {livepatch: enable, patch: p1, funcs: [cmdline_proc_show]}
  - {bpf: attach, prog: fx, kind: fexit, target: cmdline_proc_show}
  - {kprobe: add, target: version_proc_show, post: true}
  - {tracer: function, filter: [uptime_proc_show, '*_proc_show']}
  - {direct: register, name: d, targets: [loadavg_proc_show]}
  - {call: cmdline_proc_show}
  - {call: security_task_getsid}
"""


def test_plan_steps_modules_and_touched() -> None:
    sc, lines = load_scenario_text(SCEN, "s.yaml")
    p = plan_scenario(sc, lines, "s.yaml", FAKE_BTF)
    assert [st["op"] for st in p.steps] == ["livepatch_enable", "bpf_attach", "kprobe_add", "tracer",
                                             "direct_register", "call", "call"]
    assert [m.name.split("_")[0] for m in p.modules] == ["lp", "kp", "dc"]
    assert p.touched == ["cmdline_proc_show", "version_proc_show", "uptime_proc_show", "loadavg_proc_show",
                         "security_task_getsid"]
    assert p.steps[-1]["how"] == "getsid" and p.steps[-2]["how"] == "/proc/cmdline"
    spec = p.spec({m.name: f"/x/{m.name}.ko" for m in p.modules}, "f.jsonl")
    assert spec["steps"][0]["ko"] == f"/x/{p.modules[0].name}.ko"
    assert touched_functions(sc) == p.touched


@pytest.mark.parametrize("step, msg", [
    ("{call: schedule}", "can call only"),
    ("{livepatch: enable, patch: p, funcs: [schedule]}", "can live-patch only"),
    ("{bpf: attach, prog: x, kind: fentry, target: schedule}", "has no BTF"),
    ("{direct: register, name: d, targets: [schedule], tramp: my_tramp9}", "trampolines"),
    ("{kprobe: add, target: {name: cmask_show, sympos: 2}}", "kprobe module names its target by symbol"),
    ("{direct: register, name: d, targets: [{name: cmask_show, sympos: 2}], tramp: my_tramp1}",
     "direct module finds its targets by name"),
])
def test_plan_refuses_what_the_oracle_cannot_replay(step: str, msg: str) -> None:
    sc, lines = load_scenario_text(f"steps:\n  - {{call: cmdline_proc_show}}\n  - {step}\n", "bad.yaml")
    with pytest.raises(InputError) as e:
        plan_scenario(sc, lines, "bad.yaml", FAKE_BTF)
    assert msg in e.value.message and e.value.where == "bad.yaml:3"


# -- module C ----------------------------------------------------------------------------------------
def test_livepatch_module_source() -> None:
    m = modgen.livepatch_module("p1", [("cmdline_proc_show", 0), ("security_task_getsid", 0)], replace=True)
    assert m.name.startswith("lp_p1_") and len(m.name) <= 55
    src = m.source
    assert src.startswith("// SPDX-License-Identifier: GPL-2.0\n")
    assert '{ .old_name = "cmdline_proc_show", .new_func = ftlab_body_0 },' in src
    assert '{ .old_name = "security_task_getsid", .new_func = ftlab_body_1 },' in src
    assert "static int ftlab_body_0(struct seq_file *m, void *v)" in src
    assert 'seq_puts(m, "ftlab-oracle body=p1 func=cmdline_proc_show\\n");' in src
    assert "static int ftlab_body_1(struct task_struct *p)" in src
    assert ".replace = true," in src and 'MODULE_INFO(livepatch, "Y");' in src
    assert "return klp_enable_patch(&ftlab_patch);" in src
    # the name is a function of the source: same input, same module; other input, other module
    assert modgen.livepatch_module("p1", [("cmdline_proc_show", 0), ("security_task_getsid", 0)], True) == m
    assert modgen.livepatch_module("p1", [("cmdline_proc_show", 0)]).name != m.name
    with pytest.raises(OracleError):
        modgen.livepatch_module("p1", [("schedule", 0)])


def test_kprobe_module_source() -> None:
    plain = modgen.kprobe_module("kp", "cmdline_proc_show", post=False).source
    post = modgen.kprobe_module("kp", "cmdline_proc_show", post=True).source
    assert '.symbol_name = "cmdline_proc_show",' in plain
    assert ".post_handler" not in plain and "\t.post_handler = ftlab_post,\n" in post
    assert "return register_kprobe(&ftlab_kp);" in post and "unregister_kprobe(&ftlab_kp);" in post


def test_direct_module_source() -> None:
    m = modgen.direct_module("sample")
    src = m.source
    assert m.name.startswith("dc_sample_")
    assert "register_ftrace_direct_multi(&ftlab_direct_ops" in src
    assert "modify_ftrace_direct_multi(&ftlab_direct_ops" in src
    assert "ops_func" not in src.replace("no ops_func", "")
    for t in ("my_tramp1", "my_tramp2"):
        assert f'"{t}:\\n"' in src
    assert src.count("ASM_RET") == 2 and src.count("ASM_ENDBR") == 2


# -- the agent's BPF program -----------------------------------------------------------------------
def _slots(prog: bytes) -> list[tuple[int, int, int, int, int]]:
    return [struct.unpack_from("<BBhi", prog, i) for i in range(0, len(prog), 8)]


@pytest.mark.parametrize("ret_off, ret", [(None, 0), (16, 0), (8, -1)])
def test_tracing_program_jumps_land_on_the_exit_path(ret_off: int | None, ret: int) -> None:
    prog = agent.tracing_program(map_fd=5, prog_id=3, ret_off=ret_off, ret=ret)
    slots = _slots(prog)
    out = len(slots) - 2
    assert slots[out] == (0xB7, 0, 0, ret) and slots[-1][0] == 0x95
    jumps = [(i, s) for i, s in enumerate(slots) if s[0] in (0x15, 0x25)]
    assert len(jumps) == 3
    for i, (_code, _regs, off, _imm) in jumps:
        assert i + 1 + off == out
    loads = [s for s in slots if s[0] == 0x18]
    assert len(loads) == 2 and all(s[3] == 5 and s[1] >> 4 == 1 for s in loads)
    if ret_off is None:
        assert slots[1] == (0xB7, 7, 0, 0)
    else:
        assert slots[1] == (0x79, 7 | (6 << 4), ret_off, 0)


def test_agent_helpers() -> None:
    assert agent.errname(16) == "EBUSY" and agent.errname(524) == "ENOTSUPP"
    text = "a (1) R\tx\n\tdirect-->y\nb (2)  \n"
    assert agent.enabled_records(text, {"a"}) == ["a (1) R\tx\n\tdirect-->y"]
    assert agent.enabled_records(text, None) == split_records(text)


def test_agent_is_standalone() -> None:
    """The agent runs in the guest with the host's python3 and no ftlab on its path."""
    code = f"import runpy, sys; sys.path = [p for p in sys.path if 'ftlab' not in p]; " \
           f"runpy.run_path({agent.__file__!r}, run_name='not_main')"
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- BTF ------------------------------------------------------------------------------------------------
def _btf_blob() -> bytes:
    strings = b"\0int\0foo_show\0m\0"
    types = b""
    types += struct.pack("<III", 1, (1 << 24), 4) + struct.pack("<I", 32)             # 1: INT
    types += struct.pack("<III", 0, (13 << 24) | 2, 1) + struct.pack("<IIII", 14, 1, 0, 1)  # 2: FUNC_PROTO(2)
    types += struct.pack("<III", 0, (4 << 24) | 1, 8) + struct.pack("<III", 14, 1, 0)  # 3: STRUCT (1 member)
    types += struct.pack("<III", 5, (12 << 24), 2)                                      # 4: FUNC foo_show
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_parse_btf_ids_and_argument_counts() -> None:
    assert btf.parse_btf(_btf_blob()) == {"foo_show": (4, 2)}
    with pytest.raises(OracleError):
        btf.parse_btf(b"\0" * 32)


def test_split_btf_numbers_after_its_base_and_shares_its_strings() -> None:
    base = btf.Btf(_btf_blob())                                    # 4 types, 16 bytes of strings
    strings = b"bar_statfs\0"                                      # split offset 0 = 16 overall
    types = struct.pack("<III", 0, (13 << 24) | 3, 1) + struct.pack("<IIIIII", 0, 1, 0, 1, 0, 1)  # 5: PROTO(3)
    types += struct.pack("<III", 16, (12 << 24), 5)                 # 6: FUNC bar_statfs (split string)
    types += struct.pack("<III", 5, (12 << 24), 2)                  # 7: FUNC foo_show (base string, base proto)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    split = btf.Btf(hdr + types + strings, base)
    assert split.funcs == {"bar_statfs": (6, 3), "foo_show": (7, 2)}
    assert split.ntypes == 7


def test_vmlinux_from_bzimage_finds_the_payload() -> None:
    import lzma
    payload = b"\x7fELF" + b"x" * 100
    image = b"MZ" + b"\0" * 50 + lzma.compress(payload, format=lzma.FORMAT_XZ) + b"\0\0\0\0"
    assert btf.vmlinux_from_bzimage(image) == payload
    assert btf.vmlinux_from_bzimage(b"hdr" + gzip.compress(payload)) == payload
    with pytest.raises(OracleError):
        btf.vmlinux_from_bzimage(b"nothing here")


# -- initramfs and kernel discovery ---------------------------------------------------------------------
def test_cpio_newc_round_trip() -> None:
    data = initramfs.cpio_newc([("init", 0o100755, b"#!/bin/sh\n", (0, 0)), ("dev/console", 0o20600, b"", (5, 1))])
    names = []
    pos = 0
    while True:
        head = data[pos:pos + 110]
        assert head[:6] == b"070701"
        f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos:pos + filesize]
        pos += filesize + (-filesize % 4)
        names.append((name, body, f[9], f[10]))
        if name == "TRAILER!!!":
            break
    assert names[0] == ("init", b"#!/bin/sh\n", 0, 0)
    assert names[1] == ("dev/console", b"", 5, 1)
    assert pos == len(data)


def test_init_script_loads_the_9p_chain_in_order() -> None:
    script = initramfs.init_script()
    assert "for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache " \
           "9pnet 9pnet_virtio 9p; do" in script
    assert 'chroot /host "$ftlab_python" -B "$ftlab_agent" "$ftlab_plan"' in script
    assert script.rstrip().endswith("poweroff -f")


def test_installed_kernels_are_discovered_and_sorted(tmp_path) -> None:
    for v in ("6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-56-rt-amd64", "5.10.0-20-amd64", "6.1.0-13-cloud-amd64"):
        (tmp_path / f"vmlinuz-{v}").write_bytes(b"")
    assert install.installed_kernels(str(tmp_path)) == ["6.1.0-9-amd64", "6.1.0-56-amd64"]


# -- observables and diff -------------------------------------------------------------------------------
def test_normalize_record() -> None:
    rec = ("cmdline_proc_show (2) R I D ->arch_ftrace_ops_list_func+0x0/0x1d0\n"
           "\tdirect-->bpf_trampoline_6442538863+0x0/0x1000")
    assert normalize_record(rec) == ("cmdline_proc_show (2) R I D ->arch_ftrace_ops_list_func+0x0/0x1d0\n"
                                     "\tdirect-->bpf_trampoline_KEY+0x0/0x1000")
    assert normalize_record("f (1)   I  \ttramp: 0xffffffffc02f8000 (klp_ftrace_handler+0x0/0x110) "
                            "->klp_ftrace_handler+0x0/0x110") == \
        "f (1)   I  \ttramp: ADDR (klp_ftrace_handler+0x0/0x110) ->klp_ftrace_handler+0x0/0x110"
    # the oracle's module suffix goes, and a size the model only assumes reads SIZE on both sides
    assert normalize_record("f (1) R   D\ttramp: x\n\tdirect-->my_tramp1+0x0/0x24 [dc_sample_7bacd1a4]") == \
        normalize_record("f (1) R   D\ttramp: x\n\tdirect-->my_tramp1+0x0/0x100") == \
        "f (1) R   D\ttramp: x\n\tdirect-->my_tramp1+0x0/SIZE"


def test_observe_names_the_patched_bodys_value() -> None:
    raw = {"result": "ok", "enabled": [], "ftrace_dead": False, "warn": False,
           "call": {"body": "p1", "programs": ["fe", "fx"], "fexit": [["fx", 1280356619]], "retval": 1280356619,
                    "body_ret": 1280356619, "hooks": ["kprobe:k:pre"]}}
    kernel = dict(raw, call=dict(raw["call"], fexit=[["fx", 0]], retval=0, body_ret=0))
    assert observe(raw) == observe(kernel)
    assert observe(raw)["fexit"] == [["fx", "<p1>"]] and observe(raw)["retval"] == "<p1>"
    orig = dict(raw, call=dict(raw["call"], body="original", body_ret=None, retval=0, fexit=[["fx", 0]]))
    assert observe(orig)["retval"] == 0
    assert observe({"result": "EBUSY"})["body"] is None


def test_model_steps_shape() -> None:
    text = ("steps:\n  - {livepatch: enable, patch: p1, funcs: [cmdline_proc_show]}\n"
            "  - {bpf: attach, prog: fx, kind: fexit, target: cmdline_proc_show}\n  - {call: cmdline_proc_show}\n")
    sc, lines = load_scenario_text(text, "m.yaml")
    steps = model_steps(sc, lines, "m.yaml")
    assert [s["result"] for s in steps] == ["ok", "ok", "ok"]
    assert [normalize_record(r) for r in steps[1]["enabled"]] == [
        "cmdline_proc_show (2) R I D ->arch_ftrace_ops_list_func+0x0/0x1d0\n\tdirect-->bpf_trampoline_KEY+0x0/0x1000"]
    obs = observe(steps[2])
    assert (obs["body"], obs["programs"], obs["fexit"], obs["retval"]) == ("p1", ["fx"], [["fx", "<p1>"]], "<p1>")


def _raw(result: str = "ok", **call: object) -> dict:
    return {"index": 1, "action": "a", "result": result, "enabled": ["f (1)"], "ftrace_dead": False, "warn": False,
            "call": call or None}


def test_compare_steps_agreement_difference_and_missing() -> None:
    rows = compare_steps([_raw(), _raw("EBUSY"), _raw()], [_raw(), _raw("ok")])
    assert [r["agree"] for r in rows] == [True, False, False]
    assert rows[1]["differs"] == ["result"]
    assert rows[2]["kernel"] is None and "result" in rows[2]["differs"]
    sc = compare_scenario("x.yaml", [_raw()], {"status": "clean", "steps": [_raw()], "wall_s": 1.0, "boot": 1})
    assert sc["agree"]
    doc = {"kernel": "6.1.0-56-amd64", "policy": "linux-6.1",
           "scenarios": [sc, compare_scenario("y.yaml", [_raw("EBUSY")], {"status": "clean", "steps": [_raw()],
                                                                           "wall_s": 1.0, "boot": 1})]}
    text = render(doc)
    assert "== y.yaml: DIFFER" in text and "result: model=EBUSY  kernel=ok" in text
    assert "1/2 scenarios agree; 1 of 2 steps differ" in text


# -- the bundled oracle scenarios and the CLI ------------------------------------------------------------
def test_at_least_thirty_oracle_scenarios_all_replayable() -> None:
    ex = oracle_examples()
    assert len(ex) >= 30
    pairs = {n for n in ex if n.startswith("pair-")}
    assert len(pairs) == 28  # every pair of the eight clients, both orders in each file
    for name, text in ex.items():
        sc, lines = load_scenario_text(text, name)
        plan_scenario(sc, lines, name, FAKE_BTF)


def test_ftlab_run_does_not_list_oracle_scenarios() -> None:
    from ftlab.bundled import bundled
    from ftlab.cli import main
    assert not any(n.startswith("pair-") or "/" in n for n in bundled())
    assert main(["oracle", "gen", "--help"]) == 0


def test_oracle_gen_cli_writes_files(tmp_path, capsys) -> None:
    from ftlab.cli import main
    assert main(["oracle", "gen", "--seed", "5", "--count", "3", "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "oracle" and doc["action"] == "gen" and len(doc["files"]) == 3
    assert sorted(os.listdir(tmp_path)) == ["gen-5-000.yaml", "gen-5-001.yaml", "gen-5-002.yaml"]
    assert (tmp_path / "gen-5-001.yaml").read_text() == gen.generate_files(5, 3)[1][1]


def test_oracle_scenario_arguments_resolve(capsys) -> None:
    from ftlab.bundled import resolve_items
    items = resolve_items(["oracle/pair-livepatch-fexit", "atomic-replace"])
    assert [i.source for i in items] == ["examples/oracle/pair-livepatch-fexit.yaml", "examples/atomic-replace.yaml"]
    assert len(resolve_items(["oracle/"])) == len(oracle_examples())
    with pytest.raises(InputError):
        resolve_items(["oracle/nope"])


def test_a_step_the_guest_died_in_compares_on_its_result_only() -> None:
    dead = {"index": 1, "action": "a", "result": "Oops", "enabled": [], "call": None, "ftrace_dead": None,
            "warn": None, "synthetic": True}
    rows = compare_steps([_raw("Oops")], [dead])
    assert rows[0]["agree"]
    assert compare_steps([_raw("ok")], [dead])[0]["differs"] == ["result"]


def test_a_folder_of_scenarios_is_every_file_in_it(tmp_path):
    """`ftlab oracle diff examples/oracle/` takes the folder as its scenario files."""
    from pathlib import Path

    import pytest

    from ftlab.bundled import resolve_items
    from ftlab.errors import InputError

    folder = Path(__file__).resolve().parents[1] / "src" / "ftlab" / "examples" / "oracle"
    items = resolve_items([str(folder)])
    assert len(items) == len([f for f in folder.iterdir() if f.suffix == ".yaml"]) >= 30
    with pytest.raises(InputError, match="no scenario files"):
        resolve_items([str(tmp_path)])
