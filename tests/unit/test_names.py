"""Names that become paths or keys: one segment, portable to every file system."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.errors import InvalidInputError
from loopml.names import MAX_NAME, RESERVED, check_name, is_version, parse_ref
from loopml.stores.fs import check_sha256

GOOD = ["cancer", "Cancer", "a", "x1", "fraud-v2", "my_model.2024", "a.b-c_d", "1", "0a", "C"]

BAD = {
    "trailing newline": "cancer\n",
    "newline inside": "can\ncer",
    "carriage return": "cancer\r",
    "NUL": "cancer\x00",
    "a control character": "can\x1bcer",
    "tab": "can\tcer",
    "slash": "a/b",
    "backslash": "a\\b",
    "dot dot": "..",
    "dot dot inside": "a..b",
    "leading dot": ".hidden",
    "trailing dot": "cancer.",
    "trailing space": "cancer ",
    "space": "my model",
    "percent-encoded dot": "%2e%2e",
    "percent": "a%20b",
    "hash": "a#b",
    "drive letter": "C:",
    "drive path": "C:x",
    "colon": "a:b",
    "question mark": "a?b",
    "star": "a*",
    "empty": "",
    "too long": "x" * (MAX_NAME + 1),
    "non-ASCII letter": "cáncer",
    "non-ASCII digit": "model٣",
    "full-width": "ｃａｎｃｅｒ",
    "Windows device": "con",
    "Windows device, upper": "NUL",
    "Windows device with an extension": "con.txt",
    "Windows device with two extensions": "Aux.tar.gz",
    "Windows COM port": "COM1",
    "Windows LPT port": "lpt9.log",
}


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name: str) -> None:
    assert check_name(name, "model") == name


@pytest.mark.parametrize("name", list(BAD.values()), ids=list(BAD))
def test_bad_names_are_refused_saying_why(name: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_name(name, "dataset")
    err = info.value
    assert err.message.startswith("invalid dataset ")
    assert ":" in err.message  # the reason follows the name
    assert err.where == {"dataset": name[:200]}


def test_reasons_name_the_offending_part() -> None:
    reasons = {
        "cancer\n": "line break",
        "a%2e": "percent",
        "C:": "drive",
        "con.txt": "reserved",
        "a.": "ends with",
        "a\x00": "control character",
        "a/b": "separator",
    }
    for name, word in reasons.items():
        with pytest.raises(InvalidInputError, match=word):
            check_name(name, "model")


@pytest.mark.parametrize("name", [None, 3, b"cancer", ["a"]])
def test_non_strings_are_refused(name: object) -> None:
    with pytest.raises(InvalidInputError):
        check_name(name, "model")


def test_lookalikes_of_device_names_pass() -> None:
    for name in ("console", "con1", "com10", "lpt", "nul-model", "auxiliary", "x.con", "com"):
        assert check_name(name) == name


def test_reserved_names_are_the_windows_devices() -> None:
    assert {"CON", "PRN", "AUX", "NUL", "COM1", "COM9", "LPT1", "LPT9"} <= RESERVED


SEPARATORS = "/\\\n\r\x00:%#"


@given(st.text(min_size=0, max_size=140))
def test_a_checked_name_is_always_one_plain_portable_segment(text: str) -> None:
    try:
        name = check_name(text, "model")
    except InvalidInputError:
        return
    assert name == text
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name)
    assert 1 <= len(name) <= MAX_NAME
    assert not any(c in name for c in SEPARATORS)
    assert all(c.isprintable() and c.isascii() for c in name)
    assert ".." not in name and not name.endswith(".") and not name.startswith(".")
    assert name.split(".")[0].upper() not in RESERVED


@given(st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1, max_size=20))
def test_names_of_the_allowed_letters_pass_unless_a_rule_says_otherwise(text: str) -> None:
    refused = (
        not text[0].isalnum()
        or ".." in text
        or text.endswith(".")
        or text.split(".")[0].upper() in RESERVED
    )
    if refused:
        with pytest.raises(InvalidInputError):
            check_name(text)
    else:
        assert check_name(text) == text


@given(st.sampled_from(GOOD), st.sampled_from(["\n", "\r\n", "\x00", " ", ".", "/", "%2e"]))
def test_a_good_name_with_a_bad_ending_is_refused(name: str, ending: str) -> None:
    with pytest.raises(InvalidInputError):
        check_name(name + ending)


def test_parse_ref_checks_both_sides() -> None:
    assert parse_ref("cancer@3") == ("cancer", "3")
    assert parse_ref("cancer@champion") == ("cancer", "champion")
    assert parse_ref("cancer") == ("cancer", None)
    for ref in ["cancer\n@3", "cancer\r@champion", "con@1", "@3", "a@"]:
        with pytest.raises(InvalidInputError):
            parse_ref(ref)
    with pytest.raises(InvalidInputError):
        parse_ref(None)  # type: ignore[arg-type]


def test_a_version_is_ascii_digits_only() -> None:
    assert is_version("3") and is_version("012")
    for tag in ("²", "３", "٣", "3\n", " 3", "-1", "3.0", "", "1" * 19):
        assert not is_version(tag)


def test_sha256_is_a_full_match() -> None:
    digest = "ab" * 32
    assert check_sha256(digest) == digest
    assert check_sha256(digest.upper()) == digest
    for bad in (digest + "\n", digest[:-1], digest + "0", f" {digest}", "g" * 64, None):
        with pytest.raises(InvalidInputError):
            check_sha256(bad)
