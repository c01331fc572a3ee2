"""Filter tokens as the kernel reads them: trace_events_filter.c: filter_parse_regex, lib/glob.c:
glob_match, ftrace.c: match_records / ftrace_match / add_rec_by_index, trace.c: trace_get_user."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftlab import catalogues
from ftlab.errors import InputError
from ftlab.model.catalogue import Catalogue
from ftlab.model.glob import (
    FTRACE_BUFF_MAX,
    FtraceGlob,
    RegexType,
    Selection,
    filter_parse_regex,
    ftrace_match,
    ftrace_match_record,
    glob_match,
    glob_to_regex,
    match_records,
    simple_strtoul,
    trace_get_user_tokens,
)

R = RegexType


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return catalogues.embedded()


def names(cat: Catalogue, token: str) -> list[str]:
    return [cat.names[i] for i in match_records(cat, token).indices]


# -- filter_parse_regex ------------------------------------------------------------------------
@pytest.mark.parametrize("token,expected", [
    ("vfs_read", (R.MATCH_FULL, "vfs_read", False)),
    ("vfs_*", (R.MATCH_FRONT_ONLY, "vfs_", False)),
    ("*_proc_show", (R.MATCH_END_ONLY, "_proc_show", False)),
    ("*proc*", (R.MATCH_MIDDLE_ONLY, "proc", False)),
    ("*", (R.MATCH_END_ONLY, "", False)),
    ("**", (R.MATCH_MIDDLE_ONLY, "", False)),
    ("***", (R.MATCH_GLOB, "***", False)),
    ("vfs_*_iter", (R.MATCH_GLOB, "vfs_*_iter", False)),
    ("*vfs*iter", (R.MATCH_GLOB, "*vfs*iter", False)),
    ("vfs**", (R.MATCH_GLOB, "vfs**", False)),
    ("vfs_rea?", (R.MATCH_GLOB, "vfs_rea?", False)),
    ("vfs_[rw]*", (R.MATCH_GLOB, "vfs_[rw]*", False)),
    ("*?", (R.MATCH_GLOB, "*?", False)),
    ("vfs\\_read", (R.MATCH_GLOB, "vfs\\_read", False)),
    ("12", (R.MATCH_INDEX, "12", False)),
    ("1*", (R.MATCH_INDEX, "1*", False)),
    ("!vfs_*", (R.MATCH_FRONT_ONLY, "vfs_", True)),
    ("!*_show", (R.MATCH_END_ONLY, "_show", True)),
    ("!12", (R.MATCH_INDEX, "12", True)),
    ("!", (R.MATCH_FULL, "", True)),
    ("", (R.MATCH_FULL, "", False)),
], ids=lambda v: repr(v) if isinstance(v, str) else None)
def test_filter_parse_regex_classifies_token_like_trace_events_filter_c(token: str, expected: tuple) -> None:
    assert filter_parse_regex(token) == expected


def test_filter_parse_regex_only_a_leading_bang_negates() -> None:
    assert filter_parse_regex("vfs!") == (R.MATCH_FULL, "vfs!", False)
    assert filter_parse_regex("!!x") == (R.MATCH_FULL, "!x", True)


def test_regex_type_values_are_the_kernels() -> None:
    assert [t.value for t in (R.MATCH_FULL, R.MATCH_FRONT_ONLY, R.MATCH_MIDDLE_ONLY, R.MATCH_END_ONLY,
                              R.MATCH_GLOB, R.MATCH_INDEX)] == [0, 1, 2, 3, 4, 5]


# -- glob_match (lib/glob.c) -------------------------------------------------------------------
@pytest.mark.parametrize("pat,s,ok", [
    ("vfs_rea?", "vfs_read", True),
    ("vfs_rea?", "vfs_rea", False),          # '?' needs a character
    ("?", "", False),
    ("*", "", True),
    ("a*b*c", "aXbYbZc", True),
    ("*aaaaa", "aaaaaaaaaa", True),          # backtracking to the last '*'
    ("*ab", "aab", True),
    ("[rw]x", "rx", True),
    ("[rw]x", "ax", False),
    ("[a-c]", "b", True),
    ("[a-c]", "d", False),
    ("[!a-c]", "d", True),                   # '!' inverts a class (glob(7), not '^')
    ("[!a-c]", "b", False),
    ("[^a]", "^", True),                     # '^' is an ordinary class member
    ("[]]", "]", True),                      # ']' first is a member
    ("[!]]", "a", True),
    ("[!]]", "]", False),
    ("[a-]", "-", True),                     # '-' before ']' is a member
    ("[--/]", ".", True),                    # range starting at '-'
    ("[c-a]", "b", False),                   # reversed range is empty
    ("[c-ab]", "b", True),
    ("[!c-a]", "b", True),
    ("[\\]]", "\\]", True),                  # no escapes inside a class
    ("fo[o", "fo[o", True),                  # unclosed class: '[' is literal
    ("[", "[", True),
    ("[]", "[]", True),
    ("[!", "[!", True),
    ("[a-", "[a-", True),                    # range running into the end: literal
    ("\\*", "*", True),                      # '\' escapes the next character
    ("\\*", "a", False),
    ("a\\?c", "a?c", True),
    ("a\\?c", "abc", False),
    ("ab\\", "ab", True),                    # trailing '\' matches only the end
    ("ab\\", "abc", False),
    ("*\\", "anything", True),
])
def test_glob_match_follows_lib_glob_c(pat: str, s: str, ok: bool) -> None:
    assert glob_match(pat, s) is ok
    assert bool(re.fullmatch(glob_to_regex(pat), s, re.DOTALL)) is ok


def test_glob_match_question_mark_matches_one_byte_not_one_character() -> None:
    assert glob_match("??", "é")                 # U+00E9 is two bytes in UTF-8
    assert not glob_match("?", "é")


def test_glob_inverted_class_never_matches_past_the_end_of_the_name() -> None:
    # lib/glob.c would let [!a] take the terminating NUL and read beyond it; the model does not.
    assert not glob_match("xy[!a]", "xy")
    assert not glob_match("*[!a]", "xya")


_GLOB_ALPHABET = "ab[]!-*?\\"


@settings(max_examples=3000, deadline=None)
@given(st.text(_GLOB_ALPHABET, max_size=8), st.text(_GLOB_ALPHABET, max_size=8))
def test_fast_glob_regex_equals_glob_match_port(pat: str, s: str) -> None:
    assert glob_match(pat, s) == bool(re.fullmatch(glob_to_regex(pat), s, re.DOTALL))


# -- ftrace_match / match_records: fast path equals the literal port ----------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.text("ab_", min_size=1, max_size=4), min_size=1, max_size=8),
       st.text("ab_*?[]!\\", max_size=6))
def test_match_records_equals_ftrace_match_record_over_every_record(record_names: list[str], token: str) -> None:
    c = Catalogue.synthetic(record_names)
    rtype, search, negate = filter_parse_regex(token)
    if rtype is R.MATCH_INDEX:
        return
    g = FtraceGlob(search, rtype)
    expected = [i for i in range(len(c)) if ftrace_match_record(c, i, g)]
    assert match_records(c, token) == Selection(negate, expected)


@pytest.mark.parametrize("token", ["vfs_*", "*_proc_show", "*lock*", "s?curity_*", "*_[a-c]*_show",
                                   "tcp_v[46]_*", "type_show"])
def test_match_records_equals_ftrace_match_on_real_catalogue(cat: Catalogue, token: str) -> None:
    rtype, search, _ = filter_parse_regex(token)
    g = FtraceGlob(search, rtype)
    slow = [i for i, n in enumerate(cat.names) if i not in cat.invalid and ftrace_match(n, g)]
    assert match_records(cat, token).indices == slow


# -- the real catalogue ------------------------------------------------------------------------
def test_end_only_token_selects_every_proc_show(cat: Catalogue) -> None:
    got = names(cat, "*_proc_show")
    assert "cmdline_proc_show" in got
    assert len(got) == 23
    assert all(n.endswith("_proc_show") for n in got)


def test_full_token_selects_exactly_one_function(cat: Catalogue) -> None:
    sel = match_records(cat, "security_task_getsid")
    assert sel == Selection(False, list(cat.indices("security_task_getsid")))
    assert len(sel.indices) == 1


def test_front_only_token_selects_by_prefix(cat: Catalogue) -> None:
    got = names(cat, "security_*")
    assert len(got) == 289
    assert all(n.startswith("security_") for n in got)


def test_name_of_duplicated_static_function_selects_every_record(cat: Catalogue) -> None:
    assert match_records(cat, "type_show").indices == list(cat.indices("type_show"))
    assert len(cat.indices("type_show")) == 17
    assert set(cat.indices("type_show")) <= set(match_records(cat, "*type_sho?").indices)


def test_star_selects_every_record_except_disabled_invalid_ones(cat: Catalogue) -> None:
    sel = match_records(cat, "*")
    assert len(sel.indices) == 38252 - 597
    assert not set(sel.indices) & cat.invalid
    assert sel.indices == sorted(sel.indices)
    assert match_records(cat, "**") == sel


def test_invalid_records_never_match_by_name_because_kallsyms_lookup_fails(cat: Catalogue) -> None:
    name = cat.names[min(cat.invalid)]
    assert match_records(cat, name).indices == []
    assert match_records(cat, "__ftrace_invalid_address*").indices == []


def test_bang_token_selects_the_same_records_for_removal(cat: Catalogue) -> None:
    plain, removal = match_records(cat, "vfs_*"), match_records(cat, "!vfs_*")
    assert removal.negate and not plain.negate
    assert removal.indices == plain.indices


@pytest.mark.parametrize("token", ["no_such_function", "", "!", "zz*", "*zz", "*zzq*", "z?zz"])
def test_token_selecting_nothing_gives_empty_list_meaning_einval(cat: Catalogue, token: str) -> None:
    assert match_records(cat, token).indices == []


def test_whitespace_is_part_of_the_token_for_in_kernel_callers(cat: Catalogue) -> None:
    # ftrace_set_filter passes its buffer straight to match_records: no splitting
    assert match_records(cat, "vfs_read vfs_write").indices == []


# -- index tokens (add_rec_by_index) ----------------------------------------------------------
@pytest.mark.parametrize("token,expected", [
    ("1", [0]),
    ("38252", [38251]),
    ("38253", []),          # past the last record
    ("0", []),              # indexes start at 1
    ("0x10", [15]),         # simple_strtoul base 0: hex
    ("010", [7]),           # ... and octal
    ("09", []),             # octal parsing stops at '9': index 0
    ("12abc", [11]),        # trailing junk ignored
    ("18446744073709551615", []),   # ULONG_MAX is -1 as a long
    ("18446744073709551617", [0]),  # wraps like the kernel's unsigned long long
])
def test_index_token_is_one_based_record_number(cat: Catalogue, token: str, expected: list[int]) -> None:
    assert match_records(cat, token) == Selection(False, expected)


def test_index_token_with_bang_removes_that_record(cat: Catalogue) -> None:
    assert match_records(cat, "!3") == Selection(True, [2])


def test_index_token_selects_an_invalid_record_because_6_1_does_not_check_disabled(cat: Catalogue) -> None:
    i = min(cat.invalid)
    assert match_records(cat, str(i + 1)).indices == [i]


@pytest.mark.parametrize("text,value", [("42", 42), ("0x2a", 42), ("0X2A", 42), ("052", 42), ("0x", 0),
                                        ("0xg", 0), ("7z", 7), ("", 0)])
def test_simple_strtoul_base_0(text: str, value: int) -> None:
    assert simple_strtoul(text) == value


# -- commands (ftrace_process_regex) ----------------------------------------------------------
@pytest.fixture(scope="module")
def modcat() -> Catalogue:
    return Catalogue.from_text("vfs_read\nfoo\next4_read [ext4]\nfoo [ext4]\nfoo [xfs]\nxfs_read [xfs]\n"
                               "__ftrace_invalid_address___1 [xfs]\n", "<test>")


@pytest.mark.parametrize("token,names", [
    ("*:mod:ext4", ["ext4:ext4_read", "ext4:foo"]),
    (":mod:ext4", ["ext4:ext4_read", "ext4:foo"]),           # blank function: all of the module
    ("foo:mod:*", ["ext4:foo", "xfs:foo"]),                   # module glob
    ("foo:mod:!ext4", ["foo", "xfs:foo"]),                    # every object but ext4, vmlinux too
    (":mod:", None),                                          # needs a module
    ("*_read:mod:x*", ["xfs:xfs_read"]),
    ("2:mod:ext4", ["foo"]),                                  # an index ignores the module
])
def test_mod_command_matches_module_records(modcat: Catalogue, token: str, names: list[str] | None) -> None:
    if names is None:
        with pytest.raises(InputError, match="needs a module"):
            match_records(modcat, token)
        return
    sel = match_records(modcat, token)
    assert not sel.negate
    assert [modcat.qualified_name_of_ip(modcat.ip(i)) for i in sel.indices] == names


def test_mod_command_without_a_match(modcat: Catalogue) -> None:
    # a loaded module with no such function: -EINVAL (empty selection)
    assert match_records(modcat, "bar:mod:ext4").indices == []
    # a negated token is never cached: -EINVAL
    sel = match_records(modcat, "!bar:mod:nfs")
    assert sel.negate and sel.indices == []
    # a module that is not loaded: the kernel would cache the filter (not modelled)
    with pytest.raises(InputError, match="not loaded"):
        match_records(modcat, "*:mod:nfs")


def test_plain_names_match_every_object(modcat: Catalogue) -> None:
    assert [modcat.qualified_name_of_ip(modcat.ip(i)) for i in match_records(modcat, "foo").indices] == [
        "foo", "ext4:foo", "xfs:foo"]
    assert len(match_records(modcat, "*_read").indices) == 3


@pytest.mark.parametrize("token", ["schedule:traceon", "vfs_read:stacktrace:5", "x:snapshot",
                                   "f:enable_event:sched:sched_switch"])
def test_function_probe_commands_are_refused_as_unsupported(cat: Catalogue, token: str) -> None:
    with pytest.raises(InputError, match="not supported"):
        match_records(cat, token)


@pytest.mark.parametrize("token", ["vfs_read:nosuchcmd", "vfs_read:", "!vfs_read:x"])
def test_unknown_command_selects_nothing_like_ftrace_process_regex_einval(cat: Catalogue, token: str) -> None:
    sel = match_records(cat, token)
    assert sel.indices == []
    assert sel.negate is token.startswith("!")


# -- trace_get_user ----------------------------------------------------------------------------
def test_trace_get_user_cuts_a_write_at_kernel_whitespace_and_nul() -> None:
    assert trace_get_user_tokens("  vfs_*\t!vfs_read\nfoo\x00bar \v\f\r") == ["vfs_*", "!vfs_read", "foo", "bar"]
    assert trace_get_user_tokens(" \n ") == []


def test_trace_get_user_treats_byte_0xa0_as_space_like_lib_ctype() -> None:
    # U+00A0 is C2 A0 in UTF-8; the kernel splits at the A0 byte and keeps C2
    assert trace_get_user_tokens("a\u00a0b") == ["a\udcc2", "b"]


def test_trace_get_user_refuses_a_token_longer_than_the_parser_buffer() -> None:
    assert trace_get_user_tokens("a" * (FTRACE_BUFF_MAX - 1)) == ["a" * (FTRACE_BUFF_MAX - 1)]
    with pytest.raises(InputError, match="limit"):
        trace_get_user_tokens("a" * FTRACE_BUFF_MAX)


# -- bounded work ------------------------------------------------------------------------------
# (timings are in ``ftlab bench``: match_records of each of these over the embedded catalogue)
def test_glob_regex_never_backtracks_into_an_earlier_star() -> None:
    """Each inner segment is an atomic group that takes its leftmost match and is never
    reconsidered, so a pattern with many stars does not try every split of the name (13 bytes of
    ``*?*?*?*?*?*?#`` used to run past a minute over the embedded catalogue)."""
    assert glob_to_regex("*?*?*?*?*?*?#") == "(?>.*?.)" * 5 + ".*.\\#"
    assert glob_to_regex("a*b?c*[xy]*d") == "a(?>.*?b.c)(?>.*?[\\x78\\x79]).*d"
    assert glob_to_regex("**a") == ".*a" and glob_to_regex("a?b") == "a.b"


def test_a_glob_with_many_stars_selects_what_the_literal_port_selects(cat: Catalogue) -> None:
    names = cat.names[:2000]
    for token in ("*?*?*?*?*?*?#", "*_*_*_*_*_*_*show", "*s*e*c*u*r*i*t*y*", "?*?*?*?*?*?*?"):
        got = {cat.names[i] for i in match_records(cat, token).indices if i < 2000}
        want = {n for i, n in enumerate(names) if i not in cat.invalid and glob_match(token, n)}
        assert got == want, token
