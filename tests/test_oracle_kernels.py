"""The oracle's kernel table (ftlab.oracle.kernels), kernel discovery and setup helpers, and the
6.12 record layout in the observables: no guest is booted here."""

from __future__ import annotations

import gzip
import lzma
import struct

import pytest

from ftlab.errors import InputError, OracleError
from ftlab.model.policies.registry import policy_for_series
from ftlab.oracle import btf, install, kernels
from ftlab.oracle.diff import compare_steps, model_policy, results_series
from ftlab.oracle.initramfs import init_script
from ftlab.oracle.modgen import direct_module
from ftlab.oracle.observe import head_fields, normalize_record, observe, record_text, three_columns

# excerpts of the real modules.dep / modules.builtin of Debian's 6.1.0-57-amd64 and 6.12.95+deb12-amd64
DEP_61 = """\
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko \
kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
"""
BUILTIN_61 = "kernel/fs/fuse/virtiofs.ko\n"
DEP_612 = """\
kernel/fs/netfs/netfs.ko.xz:
kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz
kernel/net/9p/9pnet_fd.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
"""
BUILTIN_612 = """\
kernel/fs/fuse/virtiofs.ko
kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko
kernel/drivers/virtio/virtio_pci.ko
"""


def _modules_dir(tmp_path, dep: str, builtin: str):
    (tmp_path / "modules.dep").write_text(dep.replace("\\\n", ""))
    (tmp_path / "modules.builtin").write_text(builtin)
    return str(tmp_path)


# -- the table -------------------------------------------------------------------------------------------
def test_table_names_each_kernel_and_its_policy() -> None:
    assert list(kernels.KERNELS) == ["6.1", "6.12"]
    assert kernels.get("6.1").policy == "linux-6.1" and kernels.get("6.12").policy == policy_for_series("6.12")
    assert kernels.get("6.1").suite is None and kernels.get("6.12").suite == "bookworm-backports"
    assert kernels.get("6.12").sources_file == "/etc/apt/sources.list.d/ftlab-bookworm-backports.sources"
    assert [k.series for k in kernels.select("all")] == ["6.1", "6.12"]
    with pytest.raises(InputError, match="unknown kernel '6.2'"):
        kernels.get("6.2")


def test_releases_are_matched_exactly() -> None:
    k61, k612 = kernels.get("6.1"), kernels.get("6.12")
    assert k61.matches("6.1.0-57-amd64") and not k61.matches("6.12.95+deb12-amd64")
    assert k612.matches("6.12.95+deb12-amd64") and not k612.matches("6.1.0-57-amd64")
    for other in ("6.1.0-57-rt-amd64", "6.1.0-57-cloud-amd64", "6.12.95+deb12-cloud-amd64", "6.12.95+deb12-rt-amd64",
                  "6.10.0-1-amd64"):
        assert kernels.series_of(other) is None
    assert kernels.series_of("6.12.118+deb12-amd64") is k612


def test_installed_kernels_tell_6_1_and_6_12_apart(tmp_path) -> None:
    for v in ("6.1.0-9-amd64", "6.1.0-57-amd64", "6.12.95+deb12-amd64", "6.12.9+deb12-amd64", "6.12.95+deb12-rt-amd64"):
        (tmp_path / f"vmlinuz-{v}").write_bytes(b"")
    assert install.installed_kernels(str(tmp_path)) == ["6.1.0-9-amd64", "6.1.0-57-amd64"]
    assert install.installed_kernels(str(tmp_path), series="6.12") == ["6.12.9+deb12-amd64", "6.12.95+deb12-amd64"]


# -- the guest's modules ---------------------------------------------------------------------------------
def test_6_1_module_list_derived_from_modules_dep_is_the_recorded_one(tmp_path) -> None:
    d = _modules_dir(tmp_path, DEP_61, BUILTIN_61)
    mods = kernels.guest_modules(kernels.get("6.1"), d)
    assert tuple(m for m, _ in mods) == install.GUEST_MODULES
    assert mods[-1] == ("9p", f"{d}/kernel/fs/9p/9p.ko")


def test_6_12_module_list_skips_what_is_built_in(tmp_path) -> None:
    d = _modules_dir(tmp_path, DEP_612, BUILTIN_612)
    mods = kernels.guest_modules(kernels.get("6.12"), d)
    assert [m for m, _ in mods] == ["netfs", "9pnet", "9pnet_virtio", "9p"]
    assert mods[0][1].endswith("kernel/fs/netfs/netfs.ko.xz")
    assert "for m in netfs 9pnet 9pnet_virtio 9p; do" in init_script([m for m, _ in mods])


def test_a_missing_module_is_one_error(tmp_path) -> None:
    d = _modules_dir(tmp_path, DEP_612.replace("kernel/fs/9p/9p.ko.xz", "kernel/fs/9p/x.ko.xz"), BUILTIN_612)
    with pytest.raises(OracleError, match="no module 9p"):
        kernels.guest_modules(kernels.get("6.12"), d)


def test_module_bytes_reads_compressed_modules(tmp_path) -> None:
    elf = b"\x7fELF" + bytes(60)
    (tmp_path / "a.ko.xz").write_bytes(lzma.compress(elf))
    (tmp_path / "b.ko.gz").write_bytes(gzip.compress(elf))
    (tmp_path / "c.ko").write_bytes(elf)
    assert {kernels.module_bytes(str(tmp_path / n)) for n in ("a.ko.xz", "b.ko.gz", "c.ko")} == {elf}
    (tmp_path / "d.ko.xz").write_bytes(b"junk")
    with pytest.raises(OracleError, match="cannot decompress"):
        kernels.module_bytes(str(tmp_path / "d.ko.xz"))


# -- setup helpers ---------------------------------------------------------------------------------------
def test_madison_lines_give_the_suite() -> None:
    text = ("linux-image-6.12.95+deb12-amd64 | 6.12.95-1~bpo12+1 | http://deb.debian.org/debian "
            "bookworm-backports/main amd64 Packages\n"
            "linux-image-6.12.118+deb12-amd64 | 6.12.118-1~deb12u1 | http://deb.debian.org/debian-security "
            "bookworm-security/main amd64 Packages\n")
    assert install.parse_madison(text) == [
        ("linux-image-6.12.95+deb12-amd64", "6.12.95-1~bpo12+1", "bookworm-backports"),
        ("linux-image-6.12.118+deb12-amd64", "6.12.118-1~deb12u1", "bookworm-security")]


def test_suite_enabled_reads_both_source_formats(tmp_path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert not install.suite_enabled("bookworm-backports", str(tmp_path))
    assert install.suite_enabled("bookworm-updates", str(tmp_path))
    (tmp_path / "sources.list").write_text("# deb http://deb.debian.org/debian bookworm-backports main\n")
    assert not install.suite_enabled("bookworm-backports", str(tmp_path))
    (tmp_path / "sources.list").write_text("deb http://deb.debian.org/debian bookworm-backports main\n")
    assert install.suite_enabled("bookworm-backports", str(tmp_path))
    text = install.sources_text("bookworm-backports")
    assert "Suites: bookworm-backports\n" in text and text.startswith("Types: deb\n")


def test_bzimage_payload_kind_from_the_boot_header() -> None:
    def image(payload: bytes) -> bytes:
        setup = bytearray(2 * 512)                       # setup_sects = 1
        setup[0x1F1] = 1
        setup[0x202:0x206] = b"HdrS"
        struct.pack_into("<H", setup, 0x206, 0x20F)
        struct.pack_into("<II", setup, 0x248, 16, len(payload))
        return bytes(setup) + bytes(16) + payload + b"trailer"
    assert btf.payload_kind(image(btf.ZSTD_MAGIC + b"rest")) == "zstd"
    xz = lzma.compress(b"\x7fELFvmlinux", format=lzma.FORMAT_XZ)
    assert btf.payload_kind(image(xz)) == "xz"
    assert btf.vmlinux_from_bzimage(image(xz)) == b"\x7fELFvmlinux"
    assert btf.payload_kind(b"no header") == "unknown"


# -- generated modules -----------------------------------------------------------------------------------
def test_direct_module_per_api() -> None:
    old, new = direct_module("d1").source, direct_module("d1", "ops").source
    assert "register_ftrace_direct_multi(&ftlab_direct_ops, ftlab_tramp_addr(ftlab_tramp_sel))" in old
    assert "CALL_DEPTH_ACCOUNT" not in old and "nospec-branch" not in old
    assert "\tret = register_ftrace_direct(&ftlab_direct_ops, ftlab_tramp_addr(ftlab_tramp_sel));" in new
    assert "modify_ftrace_direct(&ftlab_direct_ops, ftlab_tramp_addr(sel))" in new
    assert "unregister_ftrace_direct(&ftlab_direct_ops, ftlab_tramp_addr(ftlab_tramp_sel), true);" in new
    assert "_multi" not in new and new.count("\tCALL_DEPTH_ACCOUNT\n") == 2
    # the filter is freed once: by unregister_ftrace_direct(..., true), not again in the exit
    assert "ftrace_free_filter" not in new.split("ftlab_direct_exit", 1)[1]
    with pytest.raises(OracleError):
        direct_module("d1", "ip")


# -- 6.12's enabled_functions layout ---------------------------------------------------------------------
LP_612 = "cmdline_proc_show (1)   I     M \ttramp: 0xffffffffc0517000 (klp_ftrace_handler+0x0/0x100) " \
         "->klp_ftrace_handler+0x0/0x100"
LP_61 = "cmdline_proc_show (1)   I  \ttramp: 0xffffffffc02f8000 (klp_ftrace_handler+0x0/0x110) " \
        "->klp_ftrace_handler+0x0/0x110"
BPF_612 = "cmdline_proc_show (2) R I D   M  ->arch_ftrace_ops_list_func+0x0/0x1d0\n" \
          "\tdirect-->bpf_trampoline_6442501022+0x0/0xe1"
BPF_61 = "cmdline_proc_show (2) R I D ->arch_ftrace_ops_list_func+0x0/0x1d0\n" \
         "\tdirect-->bpf_trampoline_6442465810+0x0/0x1000"


def test_head_fields_read_both_layouts() -> None:
    h = head_fields(LP_612)
    assert h is not None and (h["count"], h["R"], h["I"], h["D"], h["O"], h["M"], h["columns"]) == \
        (1, False, True, False, False, True, 5)
    h = head_fields(LP_61)
    assert h is not None and (h["I"], h["O"], h["M"], h["columns"]) == (True, None, None, 3)
    assert head_fields("f (1)         M \ttramp: x")["M"] is True        # M sticky, nothing else left
    assert head_fields("v9fs_statfs [9p] (1) R          ->x")["name"] == "v9fs_statfs [9p]"
    assert head_fields("not a record") is None


def test_three_columns_drops_o_and_m_only() -> None:
    assert three_columns(BPF_612) == BPF_612.replace(" D   M  ->", " D ->")
    assert three_columns(LP_612) == LP_612.replace("   I     M \t", "   I  \t")
    assert three_columns(LP_61) == LP_61 and three_columns(BPF_61) == BPF_61


def test_loose_comparison_is_count_flags_and_names() -> None:
    assert normalize_record(BPF_612, strict=False) == normalize_record(BPF_61, strict=False) == \
        "cmdline_proc_show (2) R I D ->arch_ftrace_ops_list_func+0x0/SIZE\n\tdirect-->bpf_trampoline_KEY+0x0/SIZE"
    assert normalize_record(LP_612, strict=False) == normalize_record(LP_61, strict=False)
    # what the records name still counts: another owner, another direct target kind
    other = BPF_612.replace("bpf_trampoline_6442501022", "my_tramp1")
    assert normalize_record(other, strict=False) != normalize_record(BPF_61, strict=False)
    assert normalize_record(BPF_612.replace("(2)", "(3)"), strict=False) != normalize_record(BPF_61, strict=False)


def test_strict_comparison_keeps_columns_and_known_sizes() -> None:
    # the 6.1 comparison is unchanged: a 6.12 record does not pass for a 6.1 one
    assert normalize_record(BPF_612) != normalize_record(BPF_61)
    assert normalize_record(LP_612) != normalize_record(LP_61)
    assert normalize_record(BPF_61) == "cmdline_proc_show (2) R I D ->arch_ftrace_ops_list_func+0x0/0x1d0\n" \
                                       "\tdirect-->bpf_trampoline_KEY+0x0/0x1000"
    assert "   M  ->" in normalize_record(BPF_612)


def test_loose_observation_keeps_the_printed_text() -> None:
    raw = {"result": "ok", "enabled": [BPF_612], "ftrace_dead": False, "warn": False, "call": None}
    obs = observe(raw, strict=False)
    assert obs["enabled_text"] == [record_text(BPF_612)] == [
        "cmdline_proc_show (2) R I D   M  ->arch_ftrace_ops_list_func+0x0/0x1d0\n"
        "\tdirect-->bpf_trampoline_KEY+0x0/0xe1"]
    assert "enabled_text" not in observe(raw)
    model = dict(raw, enabled=[BPF_61])
    assert compare_steps([model], [raw], strict=False)[0]["agree"]
    assert compare_steps([model], [raw], strict=True)[0]["differs"] == ["enabled"]


def test_model_policy_stands_in_until_the_model_has_linux_6_12() -> None:
    from ftlab.model.policies import policy_names

    assert model_policy("6.1") == ("linux-6.1", None)
    policy, note = model_policy("6.12")
    if "linux-6.12" in policy_names():
        assert (policy, note) == ("linux-6.12", None)
    else:
        assert policy == "linux-6.1" and "no policy for kernel 6.12" in note
    assert results_series({"kernel": "6.12.95+deb12-amd64"}) == "6.12"
    assert results_series({"kernel": "6.1.0-56-amd64"}) == "6.1"
    assert results_series({"kernel": "6.1.0-56-amd64", "series": "6.12"}) == "6.12"


# -- ground truth tooling ----------------------------------------------------------------------------------
def test_agent_read_step_filters_words_and_copies(tmp_path) -> None:
    from ftlab.oracle import agent

    src = tmp_path / "kallsyms"
    src.write_text("ffffffff81000000 T cmdline_proc_show\nffffffff81000040 t other\nffffffff81000080 T x [9p]\n")
    out = agent.Scenario.read(None, {"files": [  # type: ignore[arg-type]
        {"path": str(src), "words": ["cmdline_proc_show", "[9p]"]},
        {"path": str(src), "to": str(tmp_path / "copy")},
        {"path": str(tmp_path / "missing")}]})
    assert out[str(src)] == {"to": str(tmp_path / "copy"), "lines": 3}  # the later entry of one path wins
    assert (tmp_path / "copy").read_text() == src.read_text()
    assert out[str(tmp_path / "missing")] == {"error": "ENOENT"}
    out = agent.Scenario.read(None, {"files": [{"path": str(src), "words": ["cmdline_proc_show", "[9p]"]}]})  # type: ignore[arg-type]
    assert out[str(src)] == "ffffffff81000000 T cmdline_proc_show\nffffffff81000080 T x [9p]\n"


def test_groundtruth_counts_and_symbol_table() -> None:
    from ftlab.oracle import groundtruth

    assert groundtruth.catalogue_counts(["a", "b", "a", "__ftrace_invalid_address___12"]) == \
        {"lines": 4, "unique": 3, "duplicated_names": 1, "invalid": 1}
    addrs, syms = groundtruth.kallsyms_table("ffffffff81000040 T b\nffffffff81000000 t a\n"
                                             "ffffffff81000080 D data\nffffffffc0000000 t m [9p]\n")
    assert syms == [(0xFFFFFFFF81000000, "a", None), (0xFFFFFFFF81000040, "b", None),
                    (0xFFFFFFFFC0000000, "m", "9p")] and addrs == [a for a, _, _ in syms]
    # every fact scenario is one the oracle can replay
    from ftlab.scenario import load_scenario_text
    for name, steps in groundtruth.FACT_SCENARIOS:
        load_scenario_text(groundtruth.scenario_text(name, steps), f"{name}.yaml")


def test_a_sticky_m_left_by_an_earlier_scenario_is_not_compared() -> None:
    from ftlab.oracle.observe import sticky_m

    before = ["cmdline_proc_show (0)         M  ->ftrace_stub+0x0/0x20", "version_proc_show (0)            ->x"]
    assert sticky_m(before) == {"cmdline_proc_show"} and sticky_m(None) == frozenset()
    kernel = {"result": "ok", "enabled": ["cmdline_proc_show (1)         M \ttramp: 0xffffffffc042a000 "
                                          "(function_trace_call+0x0/0x110) ->function_trace_call+0x0/0x110"]}
    model = dict(kernel, enabled=[kernel["enabled"][0].replace("         M \t", "           \t")])
    assert not compare_steps([model], [kernel])[0]["agree"]
    assert compare_steps([model], [kernel], sticky=sticky_m(before))[0]["agree"]
    assert not compare_steps([model], [kernel], sticky=frozenset({"version_proc_show"}))[0]["agree"]


# -- ensure: what it would run ---------------------------------------------------------------------------
def _fake_host(monkeypatch, tmp_path, boot: list[str], headers: set[str]):
    """install's view of a host with these /boot images and headers; apt commands are recorded."""
    calls: list[list[str]] = []
    monkeypatch.setattr(install, "_tool_missing", lambda: [])
    monkeypatch.setattr(install.os, "geteuid", lambda: 0)
    monkeypatch.setattr(install, "installed_kernels",
                        lambda boot_dir="/boot", series="6.1": sorted(v for v in boot if kernels.get(series).matches(v)))
    monkeypatch.setattr(install, "_headers_ok", lambda v: v in headers)
    monkeypatch.setattr(install.KernelInfo, "guest_modules", lambda self: [])
    monkeypatch.setattr(kernels, "SOURCES_DIR", str(tmp_path))
    monkeypatch.setattr(install, "suite_enabled",
                        lambda suite, apt_dir="/etc/apt": (tmp_path / f"ftlab-{suite}.sources").exists())

    def run_apt(args, what, log):
        calls.append(args)
        log.append("+ apt-get " + " ".join(args))
        if args[0] == "install":
            pkg = args[-1].split("=")[0]
            if pkg.startswith("linux-image-"):
                boot.append(pkg[len("linux-image-"):])
            else:
                headers.add(pkg[len("linux-headers-"):])

    monkeypatch.setattr(install, "_run_apt", run_apt)
    search = ("linux-image-6.12.95+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)\n"
              "linux-image-6.12.118+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)\n"
              "linux-image-6.12.95+deb12-rt-amd64 - Linux 6.12 for 64-bit PCs, PREEMPT_RT\n")
    madison = ("linux-image-6.12.118+deb12-amd64 | 6.12.118-1~deb12u1 | http://deb.debian.org/debian-security "
               "bookworm-security/main amd64 Packages\n"
               "linux-image-6.12.95+deb12-amd64 | 6.12.95-1~bpo12+1 | http://deb.debian.org/debian "
               "bookworm-backports/main amd64 Packages\n")
    monkeypatch.setattr(install, "_apt_query", lambda cmd: search if cmd[1] == "search" else madison)
    return calls


def test_ensure_runs_nothing_when_all_is_present(monkeypatch, tmp_path) -> None:
    calls = _fake_host(monkeypatch, tmp_path, ["6.1.0-57-amd64", "6.12.95+deb12-amd64"],
                       {"6.1.0-57-amd64", "6.12.95+deb12-amd64"})
    log: list[str] = []
    infos = install.ensure_all(log)
    assert [(i.series, i.version) for i in infos] == [("6.1", "6.1.0-57-amd64"), ("6.12", "6.12.95+deb12-amd64")]
    assert calls == [] and log == [] and not list(tmp_path.iterdir())


def test_ensure_6_12_enables_backports_and_pins_its_build(monkeypatch, tmp_path) -> None:
    calls = _fake_host(monkeypatch, tmp_path, ["6.1.0-57-amd64"], {"6.1.0-57-amd64"})
    log: list[str] = []
    info = install.ensure(log, series="6.12")
    assert info.version == "6.12.95+deb12-amd64"     # backports' newest, not the security suite's 6.12.118
    assert calls == [["update"], ["install", "--no-install-recommends", "linux-image-6.12.95+deb12-amd64=6.12.95-1~bpo12+1"],
                     ["install", "--no-install-recommends", "linux-headers-6.12.95+deb12-amd64=6.12.95-1~bpo12+1"]]
    src = tmp_path / "ftlab-bookworm-backports.sources"
    assert src.read_text() == install.sources_text("bookworm-backports")
    assert log[0] == f"enabled the bookworm-backports suite in {src}"
