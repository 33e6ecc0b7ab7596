"""Handle syntax: prefixes, suffixes, UTF-8, case, limits (property-based and examples)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory5g.ids.errors import InvalidHandle, ResponseCode
from factory5g.ids.syntax import (
    MAX_HANDLE_BYTES,
    fold_ascii,
    handle_from_path,
    parse_handle,
    prefix_parents,
)

segment = st.text(alphabet="0123456789abcdefXYZ-_", min_size=1, max_size=6)
prefixes = st.lists(segment, min_size=1, max_size=4).map(".".join)
suffix_chars = st.characters(blacklist_categories=("Cc", "Cs"))
suffixes = st.text(suffix_chars, min_size=1, max_size=40)


@given(prefixes, suffixes)
def test_parse_round_trips_and_splits_at_the_first_slash(prefix: str, suffix: str) -> None:
    h = parse_handle(f"{prefix}/{suffix}")
    assert (h.prefix, h.suffix) == (prefix, suffix)
    assert h.text == f"{prefix}/{suffix}"
    assert parse_handle(h.text) == h


@given(prefixes, suffixes)
def test_percent_encoded_path_decodes_to_the_same_handle(prefix: str, suffix: str) -> None:
    from urllib.parse import quote

    raw = quote(f"{prefix}/{suffix}", safe="/").encode("ascii")
    assert handle_from_path(raw) == parse_handle(f"{prefix}/{suffix}")


@given(prefixes, suffixes)
def test_prefix_compares_case_insensitively_suffix_only_when_folding(
    prefix: str, suffix: str
) -> None:
    a, b = parse_handle(f"{prefix.lower()}/{suffix}"), parse_handle(f"{prefix.upper()}/{suffix}")
    assert a.key() == b.key()
    lower, upper = parse_handle(f"{prefix}/{suffix.lower()}"), parse_handle(f"{prefix}/{suffix}")
    assert lower.key(fold_case=True) == parse_handle(f"{prefix}/{fold_ascii(suffix.lower())}").key(
        fold_case=True
    )
    if suffix.lower() != suffix and suffix.isascii():
        assert lower.key() != upper.key()


def test_fold_is_ascii_only() -> None:
    assert fold_ascii("abcß") == "ABCß"  # ß is not folded to SS: RFC 3650 folds ASCII only
    assert fold_ascii("straße-ä") == "STRAßE-ä"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("88.118.8/", "empty suffix"),
        ("88.118.8", "no '/'"),
        ("/abc", "empty prefix"),
        ("88..8/x", "dot-separated"),
        (".88/x", "dot-separated"),
        ("88 8/x", "dot-separated"),
        ("88.118.8/a\x00b", r"control character U\+0000"),
        ("88.118.8/a\nb", r"control character U\+000A"),
        ("88.118.8/a\x7fb", r"control character U\+007F"),
        ("88.118.8/a\x85b", r"control character U\+0085"),
        ("88.118.8/" + "x" * 10_000, "bytes long"),
        ("88.118.8/\ud800", "lone surrogate"),
    ],
)
def test_bad_handles_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidHandle, match=reason) as info:
        parse_handle(text)
    assert info.value.code == ResponseCode.INVALID_HANDLE


def test_limit_is_in_utf8_bytes() -> None:
    fits = "88.1/" + "é" * ((MAX_HANDLE_BYTES - 5) // 2)
    assert parse_handle(fits).suffix
    with pytest.raises(InvalidHandle):
        parse_handle(fits + "éé")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"88.118.8/%FF%FE", "not valid UTF-8"),
        (b"88.118.8/a%C3", "not valid UTF-8"),
        (b"88.118.8/%00", "control"),
        (b"88.118.8/" + b"x" * 10_000, "longer than"),
    ],
)
def test_paths_are_decoded_strictly(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidHandle, match=reason):
        handle_from_path(raw)


def test_empty_suffix_only_when_minting() -> None:
    assert parse_handle("88.118.8/", allow_empty_suffix=True).suffix == ""
    assert parse_handle("0.NA/88.118.8").is_prefix_handle
    assert not parse_handle("88.118.8/0.NA").is_prefix_handle


@given(prefixes)
def test_prefix_parents_longest_first(prefix: str) -> None:
    parents = prefix_parents(prefix)
    assert parents[0] == prefix
    assert len(parents) == prefix.count(".") + 1
    assert all(p.startswith(q) for p, q in itertools.pairwise(parents))
