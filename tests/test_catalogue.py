"""The function catalogue: records of available_filter_functions (kernel/trace/ftrace.c: t_show order)."""

from __future__ import annotations

import copy
import gzip
from pathlib import Path

import pytest

from ftlab import catalogues
from ftlab.catalogues import EMBEDDED_NAME
from ftlab.errors import InputError, ModelError
from ftlab.model.catalogue import INVALID_PREFIX, IP_BASE, IP_STRIDE, Catalogue


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return catalogues.embedded()


# -- the embedded Debian 6.1.0-56-amd64 catalogue ---------------------------------------------
def test_embedded_has_one_record_per_vmlinux_call_site(cat: Catalogue) -> None:
    assert len(cat) == 38252
    assert cat.source == EMBEDDED_NAME


def test_embedded_static_functions_share_names_271_times(cat: Catalogue) -> None:
    assert cat.unique_names() == 37502
    assert cat.duplicate_names() == 271


def test_embedded_discarded_weak_functions_are_597_invalid_records(cat: Catalogue) -> None:
    assert len(cat.invalid) == 597
    assert all(cat.names[i].startswith(INVALID_PREFIX) for i in cat.invalid)
    assert sum(1 for n in cat.names if n.startswith(INVALID_PREFIX)) == 597


def test_embedded_keeps_record_order_of_available_filter_functions(cat: Catalogue) -> None:
    assert cat.names[:2] == ("__traceiter_initcall_level", "__traceiter_initcall_start")
    assert cat.names[-1] == "__do_softirq"


def test_embedded_is_parsed_once_but_parse_embedded_is_fresh(cat: Catalogue) -> None:
    assert catalogues.embedded() is cat
    fresh = catalogues.parse_embedded()
    assert fresh is not cat
    assert fresh.names == cat.names


# -- addresses ---------------------------------------------------------------------------------
def test_record_addresses_ascend_in_record_order_like_ftrace_pages(cat: Catalogue) -> None:
    ips = [cat.ip(i) for i in range(len(cat))]
    assert ips[0] == IP_BASE
    assert all(a < b for a, b in zip(ips, ips[1:]))


def test_ip_and_record_index_round_trip(cat: Catalogue) -> None:
    for i in (0, 1, 12345, len(cat) - 1):
        assert cat.index(cat.ip(i)) == i
        assert cat.name_of_ip(cat.ip(i)) == cat.names[i]


@pytest.mark.parametrize("ip", [IP_BASE - IP_STRIDE, IP_BASE + 1, IP_BASE + IP_STRIDE * 38252])
def test_address_that_is_not_a_call_site_has_no_record_like_ftrace_location(cat: Catalogue, ip: int) -> None:
    assert cat.index(ip) is None


# -- duplicate names and sympos ----------------------------------------------------------------
def test_duplicate_static_functions_stay_distinct_records(cat: Catalogue) -> None:
    idx = cat.indices("type_show")
    assert len(idx) == 17
    assert list(idx) == sorted(idx)
    assert len({cat.ip(i) for i in idx}) == 17


def test_lookup_unique_name_needs_no_sympos(cat: Catalogue) -> None:
    (i,) = cat.indices("security_task_getsid")
    assert cat.lookup("security_task_getsid") == cat.ip(i)


def test_lookup_duplicate_with_sympos_0_is_ambiguous_like_klp_find_object_symbol(cat: Catalogue) -> None:
    with pytest.raises(InputError, match="occurs 17 times"):
        cat.lookup("type_show")


def test_lookup_sympos_picks_the_nth_occurrence_in_record_order(cat: Catalogue) -> None:
    idx = cat.indices("type_show")
    assert cat.lookup("type_show", 1) == cat.ip(idx[0])
    assert cat.lookup("type_show", 17) == cat.ip(idx[16])


@pytest.mark.parametrize("name,sympos", [("type_show", 18), ("security_task_getsid", 2), ("no_such_fn", 0)])
def test_lookup_out_of_range_sympos_or_unknown_name_is_input_error(cat: Catalogue, name: str, sympos: int) -> None:
    with pytest.raises(InputError):
        cat.lookup(name, sympos, where="scenario.yaml:3")


# -- filter tokens through the catalogue -------------------------------------------------------
def test_catalogue_match_delegates_to_match_records(cat: Catalogue) -> None:
    assert cat.match("security_task_getsid") == list(cat.indices("security_task_getsid"))
    assert cat.match("nothing_is_called_this") == []


def test_catalogue_match_refuses_a_removal_token(cat: Catalogue) -> None:
    with pytest.raises(ModelError, match="match_records"):
        cat.match("!vfs_read")


def test_derived_data_is_built_once_per_catalogue() -> None:
    c = Catalogue.synthetic(["a", "b"])
    calls: list[Catalogue] = []

    def build(cc: Catalogue) -> int:
        calls.append(cc)
        return len(cc)

    assert c.derived("test.k", build) == 2
    assert c.derived("test.k", build) == 2
    assert calls == [c]


# -- loading other kernels' files --------------------------------------------------------------
def test_load_plain_file_strips_module_suffix_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "aff"
    p.write_text("foo\n\nbar\nbaz [ext4]\nfoo\n")
    c = catalogues.from_file(p)
    assert c.names == ("foo", "bar", "baz", "foo")
    assert c.source == str(p)
    assert c.indices("foo") == (0, 3)


def test_load_gzip_file(tmp_path: Path, cat: Catalogue) -> None:
    p = tmp_path / "aff.gz"
    p.write_bytes(gzip.compress("\n".join(cat.names).encode()))
    c = catalogues.from_file(p)
    assert c.names == cat.names
    assert len(c.invalid) == 597


def test_empty_file_is_input_error_naming_the_file(tmp_path: Path) -> None:
    p = tmp_path / "empty"
    p.write_text("\n \n")
    with pytest.raises(InputError, match="empty catalogue") as e:
        catalogues.from_file(p)
    assert e.value.where == str(p)


def test_directory_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory") as e:
        catalogues.from_file(tmp_path)
    assert e.value.where == str(tmp_path)


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        catalogues.from_file(tmp_path / "nope")


def test_malformed_line_is_input_error_with_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad"
    p.write_text("foo\nbar\nnot a symbol\n")
    with pytest.raises(InputError) as e:
        catalogues.from_file(p)
    assert e.value.where == f"{p}:3"
    assert str(e.value).startswith(f"{p}:3: ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("data", [
    b"\x1f\x8bgarbage-after-gzip-magic",
    gzip.compress(b"foo\nbar\n" * 50)[:-12],
    # damaged deflate stream: zlib.error, not OSError
    gzip.compress(b"foo\nbar\n" * 50)[:20] + b"\xff" * 8 + gzip.compress(b"foo\nbar\n" * 50)[28:],
], ids=["bad-header", "truncated", "bad-deflate"])
def test_corrupt_gzip_is_input_error(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "bad.gz"
    p.write_bytes(data)
    with pytest.raises(InputError):
        catalogues.from_file(p)


def test_binary_file_is_input_error(tmp_path: Path) -> None:
    p = tmp_path / "bin"
    p.write_bytes(b"foo\n\xff\xfe\n")
    with pytest.raises(InputError, match="UTF-8"):
        catalogues.from_file(p)


def test_copies_share_the_immutable_catalogue(cat: Catalogue) -> None:
    assert copy.copy(cat) is cat
    assert copy.deepcopy({"k": cat})["k"] is cat
