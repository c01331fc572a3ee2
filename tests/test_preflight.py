"""ftlab snapshot / ftlab preflight: the stand-alone snapshot script, the reconstruction from real
guest snapshots (tests/data/snapshots, taken by ftlab.preflight.oracle from the .yaml next to each),
open questions answered per variant, and bad input."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import pytest

from ftlab.cli import main
from ftlab.errors import InputError
from ftlab.model.policies import registry
from ftlab.preflight import (
    choose_policy,
    debian_version,
    load_snapshot,
    parse_action,
    parse_enabled_functions,
    preflight,
    reconstruct,
    upstream_version,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "snapshots")
SRC = os.path.join(os.path.dirname(__file__), "..", "src", "ftlab", "snapshot.py")


def snap(name: str) -> str:
    return os.path.join(DATA, f"{name}.snapshot.json")


def edited(tmp_path, name: str, edit) -> str:
    with open(snap(name)) as f:
        doc = json.load(f)
    doc = copy.deepcopy(doc)
    edit(doc)
    p = tmp_path / f"{name}-edited.json"
    p.write_text(json.dumps(doc))
    return str(p)


# -- snapshot.py ----------------------------------------------------------------------------------
def test_snapshot_script_runs_alone_and_records_what_it_cannot_read(tmp_path) -> None:
    alone = tmp_path / "snapshot.py"
    shutil.copy(SRC, alone)
    out = tmp_path / "x.json"
    r = subprocess.run([sys.executable, "-I", str(alone), "--out", str(out), "--no-bpftool"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(out.read_text())
    assert doc["format"] == 1 and doc["kind"] == "ftlab-snapshot"
    assert doc["uname"]["release"] == os.uname().release
    for ent in doc["files"].values():
        assert ("text" in ent) != ("error" in ent)
    for err in doc["errors"]:
        assert ": " in err and "\n" not in err


def test_snapshot_module_has_no_ftlab_import() -> None:
    text = open(SRC).read()
    assert "from ." not in text and "import ftlab" not in text and "from ftlab" not in text


def test_real_snapshots_have_the_documented_shape() -> None:
    for name in ("livepatch", "fexit", "livepatch-fexit", "mixed"):
        s = load_snapshot(snap(name))
        assert s.release.startswith("6.1.")
        assert s.uname_v is not None and s.uname_v.startswith("#1 SMP PREEMPT_DYNAMIC Debian 6.1.")
        assert (s.release, s.package_version) == ("6.1.0-56-amd64", "6.1.192-2")
        assert len(s.catalogue) == s.doc["available_filter_functions"]["lines"] > 38000
        assert os.path.exists(os.path.join(DATA, f"{name}.yaml"))


# -- reconstruction -------------------------------------------------------------------------------
def test_parse_enabled_functions_real_mixed() -> None:
    recs = {r.name: r for r in parse_enabled_functions(load_snapshot(snap("mixed")).text("enabled_functions"))}
    cmd = recs["cmdline_proc_show"]
    assert (cmd.count, cmd.flags, cmd.direct.startswith("bpf_trampoline_")) == (2, frozenset("RID"), True)
    assert recs["loadavg_proc_show"].direct.startswith("my_tramp1+") and recs["loadavg_proc_show"].owner_funcs == [
        "call_direct_funcs"]
    assert recs["uptime_proc_show"].owner_funcs == ["kprobe_ftrace_handler"]
    assert recs["version_proc_show"].owner_funcs == ["klp_ftrace_handler"]
    assert recs["security_task_getsid"].owner_funcs == ["function_trace_call"]


def test_reconstruct_mixed_matches_the_machine() -> None:
    s = load_snapshot(snap("mixed"))
    rec = reconstruct(s, "linux-6.1")
    assert not rec.questions
    kinds = sorted(a.describe() for a in rec.actions)
    assert any(d.startswith("livepatch lp_p1_") and "cmdline_proc_show, version_proc_show" in d for d in kinds)
    assert any(d.startswith("bpf fexit ftlab_fexit -> cmdline_proc_show") for d in kinds)
    assert any(d.startswith("bpf fentry ftlab_fentry -> meminfo_proc_show") for d in kinds)
    assert "kprobe uptime_proc_show (post_handler)" in kinds
    assert any(d.startswith("direct client dc_d1_") and "tramp=my_tramp1" in d for d in kinds)
    assert "tracer function filter=['meminfo_proc_show', 'security_task_getsid']" in kinds  # record order
    # patches oldest first (/proc/modules lists the newest first)
    lps = [a.args["name"] for a in rec.actions if a.kind == "livepatch"]
    assert lps[0].startswith("lp_p1_") and lps[1].startswith("lp_p2_")
    doc = preflight(snap("mixed"), ["call version_proc_show"])
    v = doc["variants"][0]
    assert v["replay_ok"] and v["mismatches"] == []
    assert v["actions"][0]["calls"][0]["body"].startswith("lp_p2_")    # the newest patch runs


def test_preflight_livepatch_then_fexit_and_second_ipmodify() -> None:
    doc = preflight(snap("livepatch"), ["bpf attach fexit cmdline_proc_show --prog fx",
                                        "kprobe add cmdline_proc_show --post"])
    a1, a2 = doc["variants"][0]["actions"]
    assert a1["result"] == "ok" and a1["safe"]
    assert a1["calls"][0]["programs"] == ["fx"] and a1["calls"][0]["body"].startswith("lp_p1_")
    assert any(c.startswith("cmdline_proc_show (2) R I D") for c in a1["changes"])
    assert a2["result"] == "EBUSY"
    assert a2["why"] == ("-EBUSY: a second IPMODIFY ops on cmdline_proc_show "
                         "(ftrace.c: __ftrace_hash_update_ipmodify)")
    assert not doc["ok"]


def test_policy_override_5_18_cannot_rebuild_livepatch_with_fexit() -> None:
    doc = preflight(snap("livepatch-fexit"), ["call cmdline_proc_show"], policy="linux-5.18")
    v = doc["variants"][0]
    assert not v["replay_ok"] and v["mismatches"] and not doc["ok"]


def test_fexit_after_fentry_under_livepatch_breaks_guarantees(tmp_path) -> None:
    doc = preflight(snap("livepatch"), ["bpf attach fentry cmdline_proc_show", "bpf attach fexit cmdline_proc_show"])
    last = doc["variants"][0]["actions"][-1]
    assert not last["safe"] and (last["broken"] or any("WARN" in w for c in last["calls"] for w in c["warnings"]))


def test_bpf_trampoline_without_program_info_is_answered_per_variant(tmp_path) -> None:
    p = edited(tmp_path, "fexit", lambda d: d["bpf"].update(links=[], source="none"))
    doc = preflight(p, ["livepatch enable --func cmdline_proc_show", "bpf attach fexit cmdline_proc_show"])
    assert len(doc["questions"]) == 1 and "unknown programs" in doc["questions"][0]["text"]
    labels = [v["label"] for v in doc["variants"]]
    assert len(labels) == 2 and "fentry" in labels[0] and "fexit" in labels[1]
    calls = [v["actions"][1]["calls"][0]["programs"] for v in doc["variants"]]
    assert calls == [["unknown_fentry@cmdline_proc_show", "preflight_fexit1"],
                     ["preflight_fexit1", "unknown_fexit@cmdline_proc_show"]]
    assert main(["preflight", p, "call cmdline_proc_show"]) == 0


def test_direct_trampoline_with_unknown_owner_is_answered_per_variant(tmp_path) -> None:
    def raw(d):
        ef = d["files"]["enabled_functions"]
        ef["text"] = ef["text"].replace(ef["text"].split("direct-->", 1)[1].split("\n", 1)[0], "0xffffffffc0401000")
        d["bpf"].update(links=[], source="none")
    p = edited(tmp_path, "fexit", raw)
    doc = preflight(p, ["livepatch enable --func cmdline_proc_show --name p9"])
    assert "unknown owner" in doc["questions"][0]["text"]
    res = {v["label"]: v["actions"][0] for v in doc["variants"]}
    bpf_v = next(a for lbl, a in res.items() if "ops_func (a BPF" in lbl)
    plain = next(a for lbl, a in res.items() if "without ops_func" in lbl)
    assert bpf_v["result"] == "ok"
    assert plain["result"] == "EBUSY" and "prepare_direct_functions_for_ipmodify" in plain["why"]
    assert main(["preflight", p, "livepatch enable --func cmdline_proc_show"]) == 1


def test_unreadable_catalogue_falls_back_to_the_embedded_one(tmp_path) -> None:
    p = edited(tmp_path, "livepatch", lambda d: d.update(available_filter_functions={
        "path": "/sys/kernel/tracing/available_filter_functions", "error": "EACCES: Permission denied"}))
    doc = preflight(p, ["call cmdline_proc_show"])
    assert any("embedded" in n for n in doc["notes"])


def test_unexplained_count_becomes_an_unknown_ops(tmp_path) -> None:
    p = edited(tmp_path, "livepatch", lambda d: d["files"]["enabled_functions"].update(
        text=d["files"]["enabled_functions"]["text"] + "meminfo_proc_show (1)      \ttramp: 0xffffffffc0500000 "
                                                       "(my_handler+0x0/0x40 [mymod]) ->my_handler+0x0/0x40 [mymod]\n"))
    rec = reconstruct(load_snapshot(p), "linux-6.1")
    ops = [a for a in rec.actions if a.kind == "ops"]
    assert ops and ops[0].args["funcs"] == ["meminfo_proc_show"] and not ops[0].args["ipmodify"]
    assert "my_handler" in ops[0].why


# -- the policy: chosen from the exact build -------------------------------------------------------
def with_uname(tmp_path, name: str, uname: dict) -> str:
    return edited(tmp_path, name, lambda d: d.update(uname=uname))


UNKNOWN_6_1 = {"release": "6.1.0-47-amd64", "machine": "x86_64",
               "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-01)"}
READ_6_12 = {"release": "6.12.118+deb12-amd64", "machine": "x86_64",
             "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1~deb12u1 (2026-11-17)"}


def test_the_build_is_uname_r_and_the_debian_version_of_uname_v() -> None:
    assert debian_version("#1 SMP PREEMPT_DYNAMIC Debian 6.12.95-1~bpo12+1 (2026-07-05)") == "6.12.95-1~bpo12+1"
    assert debian_version("#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023") is None
    assert upstream_version("6.1.0-57-amd64", "6.1.192-3") == "6.1.192"
    assert upstream_version("6.1.0-57-amd64", None) == "6.1"          # Debian's ABI name hides the patch level
    assert upstream_version("6.12.95+deb12-amd64", None) == "6.12.95"
    assert upstream_version("5.15.0-91-generic", None) == "5.15"       # Ubuntu's too
    assert upstream_version("6.5.6-300.fc39.x86_64", None) == "6.5.6"
    assert upstream_version("abc", None) is None


@pytest.mark.parametrize("upstream,policy", [
    ("4.19.0", "linux-5.18"), ("5.15.131", "linux-5.18"), ("6.0.5", "linux-6.1.159"), ("6.1.158", "linux-6.1.159"),
    ("6.1.160", "linux-6.1"), ("6.1.192", "linux-6.1"), ("6.1", "linux-6.1"), ("6.8.0", "linux-6.1"),
    ("6.12.40", "linux-6.12.58"), ("6.12.59", "linux-6.12"), ("6.12", "linux-6.12"), ("7.0.1", "linux-6.12"),
    ("x", None)])
def test_nearest_policy_by_upstream_version(upstream, policy) -> None:
    assert registry.nearest_policy(upstream) == policy


@pytest.mark.parametrize("path,policy", [(snap("mixed"), "linux-6.1"),
                                         (os.path.join(DATA, "6.12", "mixed.snapshot.json"), "linux-6.12")])
def test_a_validated_build_chooses_its_policy(capsys, path, policy) -> None:
    c = choose_policy(load_snapshot(path))
    assert (c.policy, c.forced, c.validated) == (policy, False, True)
    doc = preflight(path, ["call cmdline_proc_show"])
    assert (doc["policy"], doc["policy_from"], doc["validated"]) == (policy, "kernel build", True)
    assert doc["build"]["version"] == load_snapshot(path).package_version and "oracle" in doc["build"]["how"]
    code, out, _ = _cli(capsys, ["preflight", path, "call cmdline_proc_show"])
    assert code == 0 and out.splitlines()[0].endswith(f", policy {policy} (validated on this build)")


@pytest.mark.parametrize("uname,words", [
    (UNKNOWN_6_1, "kernel 6.1.0-47-amd64 (Debian 6.1.158-1) is not one ftlab was validated on; nearest policy "
                  "linux-6.1.159 (give --policy linux-6.1.159 to use it anyway)"),
    ({**UNKNOWN_6_1, "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-9 (2027-01-01)", "release": "6.1.0-58-amd64"},
     "nearest policy linux-6.1 (give --policy linux-6.1"),
    ({"release": "6.12.95+deb12-amd64", "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.12.95-1~bpo12+2 (2026-08-01)"},
     "(Debian 6.12.95-1~bpo12+2) is not one ftlab was validated on; nearest policy linux-6.12 "),
    ({"release": "5.15.0-91-generic", "version": "#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023"},
     "kernel 5.15.0-91-generic (#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023) is not one ftlab was validated on; "
     "nearest policy linux-5.18"),
    ({"release": "abc", "version": "x"}, "give --policy NAME to use one anyway (ftlab policies lists them)"),
    ({"release": "6.1.0-56-amd64", "machine": "x86_64"},
     "the snapshot does not record uname -v (an older snapshot.py), so its kernel build (6.1.0-56-amd64) cannot be "
     "told; nearest policy linux-6.1 (give --policy linux-6.1 to use it anyway), or take the snapshot again"),
])
def test_any_other_build_is_refused_in_one_line(tmp_path, capsys, uname, words) -> None:
    p = with_uname(tmp_path, "livepatch", uname)
    with pytest.raises(InputError):
        preflight(p, ["call cmdline_proc_show"])
    code, out, err = _cli(capsys, ["preflight", p, "call cmdline_proc_show", "--json"])
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"ftlab: {p}: ") and words in err, err


@pytest.mark.parametrize("uname", [UNKNOWN_6_1, {"release": "6.1.0-56-amd64", "machine": "x86_64"}])
def test_forcing_a_policy_on_another_build_proceeds_not_validated(tmp_path, capsys, uname) -> None:
    p = with_uname(tmp_path, "livepatch", uname)
    code, out, _ = _cli(capsys, ["preflight", p, "bpf attach fexit cmdline_proc_show", "--policy", "linux-6.1.159"])
    assert code == 0
    head = out.splitlines()[0]
    assert head.endswith(", policy linux-6.1.159 (NOT validated on this build: forced with --policy)"), head
    assert "  note: " in out.splitlines()[1]
    code, out, _ = _cli(capsys, ["preflight", p, "bpf attach fexit cmdline_proc_show", "--policy", "linux-6.1.159",
                                 "--json"])
    doc = json.loads(out)
    assert (code, doc["validated"], doc["policy_from"], doc["build"]["how"]) == (0, False, "option", None)
    assert doc["build"]["uname_v"] == uname.get("version")


def test_forcing_another_policy_on_a_validated_build_is_not_validated(capsys) -> None:
    doc = preflight(snap("livepatch"), ["call cmdline_proc_show"], policy="linux-6.1.159")
    assert (doc["policy"], doc["validated"]) == ("linux-6.1.159", False)
    assert "this build is validated for policy linux-6.1, not linux-6.1.159" in doc["notes"]
    doc = preflight(snap("livepatch"), ["call cmdline_proc_show"], policy="linux-6.1")
    assert (doc["policy_from"], doc["validated"]) == ("option", True)
    code, out, _ = _cli(capsys, ["preflight", snap("livepatch"), "call cmdline_proc_show", "--policy", "linux-6.1"])
    assert out.splitlines()[0].endswith("policy linux-6.1 (validated on this build; given with --policy)")


def test_a_build_read_but_not_run_is_chosen_and_says_so(tmp_path, capsys) -> None:
    p612 = os.path.join(DATA, "6.12", "livepatch.snapshot.json")
    with open(p612) as f:
        doc612 = json.load(f)
    doc612["uname"] = READ_6_12
    (tmp_path / "read.json").write_text(json.dumps(doc612))
    p = str(tmp_path / "read.json")
    doc = preflight(p, ["call cmdline_proc_show"])
    assert (doc["policy"], doc["policy_from"], doc["validated"]) == ("linux-6.12", "kernel build", False)
    assert "read against 6.12.95" in doc["build"]["how"]
    code, out, _ = _cli(capsys, ["preflight", p, "call cmdline_proc_show"])
    assert code == 0 and out.splitlines()[0].endswith(
        "policy linux-6.12 (stands for this build by reading only: NOT validated on it)")


def test_the_registry_lists_only_builds_it_can_name_and_says_how() -> None:
    seen = set()
    for name, info in registry.POLICIES.items():
        for b in info.builds:
            assert (b.release, b.version) not in seen
            seen.add((b.release, b.version))
            assert registry.policy_for_build(b.release, b.version) == (name, b)
            assert b.how and "\n" not in b.how
            assert upstream_version(b.release, b.version) is not None
            assert registry.nearest_policy(upstream_version(b.release, b.version)) == name
            if not b.validated:
                assert "read" in b.how
    # the test snapshots' builds are validated builds
    for path in (snap("mixed"), os.path.join(DATA, "6.12", "mixed.snapshot.json")):
        s = load_snapshot(path)
        hit = registry.policy_for_build(s.release, s.package_version)
        assert hit is not None and hit[1].validated


def test_parse_action_forms() -> None:
    c: dict = {}
    st = parse_action("livepatch enable --func cmdline_proc_show foo,2 --name px", 1, c)
    assert (st.livepatch, st.patch, [(f.name, f.sympos) for f in st.funcs]) == (
        "enable", "px", [("cmdline_proc_show", 0), ("foo", 2)])
    st = parse_action("bpf attach fmod_ret security_task_getsid --ret 1", 2, c)
    assert (st.kind, st.target.name, st.ret, st.prog) == ("fmod_ret", "security_task_getsid", 1, "preflight_fmod_ret1")
    assert parse_action("kprobe add f --post", 3, c).post
    assert parse_action("tracer function --filter 'vfs_*' --notrace vfs_read", 4, c).filter == ["vfs_*"]
    assert parse_action("direct register a b --tramp my_tramp2", 5, c).tramp == "my_tramp2"
    assert parse_action("ops register a --ipmodify", 6, c).ipmodify


@pytest.mark.parametrize("text", ["", "frobnicate x", "bpf attach fexit", "bpf attach fjump f", "kprobe add",
                                  "livepatch enable", "livepatch enable --func", "bpf attach fmod_ret f --ret x",
                                  "direct register f --tramp other", "transition start", "kprobe add f --bogus",
                                  "call 'unterminated"])
def test_parse_action_bad(text) -> None:
    with pytest.raises(InputError) as e:
        parse_action(text, 7, {})
    assert e.value.where == "action 7"


# -- CLI --------------------------------------------------------------------------------------------
def _cli(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv,where", [
    (["preflight", "/nonexistent.json", "call f"], "/nonexistent.json"),
    (["preflight", "SNAP", "bpf attach fexit no_such_function_xyz"], "action 1"),
    (["preflight", "SNAP", "call cmdline_proc_show,5"], "action 1"),
    (["preflight", "SNAP", "tracer banana"], "action 1"),
    (["preflight", "SNAP"], "preflight"),
    (["preflight", "SNAP", "call cmdline_proc_show", "--policy", "linux-9"], "preflight"),
])
def test_cli_bad_input_is_one_line_exit_2(capsys, argv, where) -> None:
    argv = [snap("livepatch") if a == "SNAP" else a for a in argv]
    code, out, err = _cli(capsys, argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"ftlab: {where}") and "Traceback" not in err


@pytest.mark.parametrize("content,what", [("{", "not JSON"), ("[]", "not an ftlab snapshot"),
                                          ('{"kind": "ftlab-snapshot", "format": 7}', "format 7")])
def test_cli_bad_snapshot_files(tmp_path, capsys, content, what) -> None:
    p = tmp_path / "s.json"
    p.write_text(content)
    code, _, err = _cli(capsys, ["preflight", str(p), "call cmdline_proc_show"])
    assert code == 2 and what in err and err.count("\n") == 1


def test_cli_corrupt_catalogue(tmp_path, capsys) -> None:
    p = edited(tmp_path, "livepatch", lambda d: d["available_filter_functions"].update(sha256="0" * 64))
    code, _, err = _cli(capsys, ["preflight", p, "call cmdline_proc_show"])
    assert code == 2 and "sha256" in err


def test_cli_text_and_json(capsys) -> None:
    code, out, _ = _cli(capsys, ["preflight", snap("livepatch"), "bpf attach fexit cmdline_proc_show"])
    assert code == 0 and "[1] bpf attach fexit cmdline_proc_show: ok" in out and "every action succeeds" in out
    code, out, _ = _cli(capsys, ["preflight", snap("livepatch"), "kprobe add cmdline_proc_show --post", "--json"])
    doc = json.loads(out)
    assert code == 1 and doc["format"] == 1 and doc["command"] == "preflight" and doc["ok"] is False
    assert doc["variants"][0]["actions"][0]["result"] == "EBUSY"


def test_cli_snapshot_writes_a_file(tmp_path, capsys) -> None:
    code, out, _ = _cli(capsys, ["snapshot", "--out", str(tmp_path / "s.json"), "--no-bpftool"])
    assert code == 0 and "snapshot:" in out
    assert json.loads((tmp_path / "s.json").read_text())["kind"] == "ftlab-snapshot"
    code, _, err = _cli(capsys, ["snapshot", "--out", str(tmp_path / "no" / "dir" / "s.json")])
    assert code == 2 and err.count("\n") == 1


@pytest.mark.parametrize("enabled,state,after", [(1, "patching", "lp_p1_"), (0, "unpatching", "original")])
def test_live_patch_in_transition_is_replayed_in_transition(tmp_path, enabled, state, after) -> None:
    def edit(d):
        d["livepatch"]["patches"][0].update(enabled=enabled, transition=1)
    p = edited(tmp_path, "livepatch", edit)
    doc = preflight(p, ["livepatch enable --func version_proc_show", "transition complete", "call cmdline_proc_show"])
    v = doc["variants"][0]
    assert f"({state})" in v["replay"][0]["action"] and v["replay_ok"]
    a1, a2, a3 = v["actions"]
    assert a1["result"] == "EBUSY" and "klp_enable_patch" in a1["why"]
    assert a2["result"] == "ok" and a3["calls"][0]["body"].startswith(after)


# -- snapshots of the real 6.12 guest (tests/data/snapshots/6.12, from the same .yaml files), rebuilt under
# linux-6.12, the policy of their build ---------------------------------------------------------------
def test_real_6_12_snapshots_are_read_and_rebuilt() -> None:
    for name in ("livepatch", "fexit", "livepatch-fexit", "mixed"):
        path = os.path.join(DATA, "6.12", f"{name}.snapshot.json")
        s = load_snapshot(path)
        assert s.release == "6.12.95+deb12-amd64" and not s.doc["errors"]
        assert len(s.catalogue) == s.doc["available_filter_functions"]["lines"] > 42000
        # 6.12 has the livepatch replace attribute, and its fdinfo names each link's target
        for p in s.doc["livepatch"]["patches"]:
            assert p["replace"] == 0
        for link in s.doc["bpf"]["links"]:
            assert link["target_obj_id"] == 1 and link["target"] in ("cmdline_proc_show", "meminfo_proc_show")
        recs = parse_enabled_functions(s.text("enabled_functions"))
        assert recs and all("M" in r.flags for r in recs if r.name != "security_task_getsid")
        assert s.package_version == "6.12.95-1~bpo12+1"
        doc = preflight(path, ["call cmdline_proc_show"])
        assert (doc["policy"], doc["validated"]) == ("linux-6.12", True)
        v = doc["variants"][0]
        assert v["replay_ok"] and v["mismatches"] == [], (name, v["mismatches"])
    lp = preflight(os.path.join(DATA, "6.12", "livepatch-fexit.snapshot.json"), ["call cmdline_proc_show"])
    call = lp["variants"][0]["actions"][0]["calls"][0]
    assert call["body"].startswith("lp_p1_") and call["programs"] == ["ftlab_fexit"]


def test_json_with_open_questions_and_a_forced_policy_matches_its_schema(tmp_path, capsys) -> None:
    from ftlab import output_schemas

    p = edited(tmp_path, "fexit", lambda d: (d["bpf"].update(links=[], source="none"), d.update(uname=UNKNOWN_6_1)))
    code, out, _ = _cli(capsys, ["preflight", p, "call cmdline_proc_show", "--policy", "linux-6.1", "--json"])
    doc = json.loads(out)
    assert code == 0 and doc["questions"] and doc["validated"] is False
    output_schemas.validate(doc)
