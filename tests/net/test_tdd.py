"""TDD pattern strings: the reference's shares, clear errors, and properties of any pattern."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory5g.net.errors import TddPatternError
from factory5g.net.tdd import SYMBOLS_PER_SLOT, parse_pattern, parse_special

# ../shared/reference/5g-nr.md, TDD table
SHARES = [
    ("DDDSU", "10:2:2", 0.7429, 0.2286),
    ("DDSUU", "10:2:2", 0.5429, 0.4286),
    ("DSUUU", "10:2:2", 0.3429, 0.6286),
    ("DSUUU", "6:4:4", 0.2857, 0.6571),
    ("DDDDDDDSUU", "6:4:4", 0.7429, 0.2286),
]


@pytest.mark.parametrize(("pattern", "special", "dl", "ul"), SHARES)
def test_reference_shares(pattern: str, special: str, dl: float, ul: float) -> None:
    p = parse_pattern(pattern, special)
    assert p.dl_share == pytest.approx(dl, abs=5e-5)
    assert p.ul_share == pytest.approx(ul, abs=5e-5)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("DDDD", "has no uplink slot (U)"),
        ("DDDS", "has no uplink slot (U)"),
        ("DDXU", "'X': use only D, S, U"),
        ("", "empty"),
        ("DDUU", "switches from D to U at slot 2 without a special slot"),
        ("UUUD", "switches from D to U at slot 4"),
        ("UUU", "no downlink symbol"),
    ],
)
def test_bad_patterns_are_clear_errors(pattern: str, message: str) -> None:
    with pytest.raises(TddPatternError) as e:
        parse_pattern(pattern)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ("10:2:3", "has 15 symbols; a slot has 14"),
        ("12:0:2", "needs at least 1 guard symbol"),
        ("10-2-2", "is not DL:GP:UL symbols"),
    ],
)
def test_bad_special_slots(split: str, message: str) -> None:
    with pytest.raises(TddPatternError, match=message):
        parse_special(split)


@st.composite
def patterns(draw: st.DrawFn) -> tuple[str, str]:
    d = draw(st.integers(0, 13))
    g = draw(st.integers(1, 14 - d))
    u = 14 - d - g
    body = draw(st.text(alphabet="DSU", min_size=1, max_size=40))
    return "D" + "S" + body + "U", f"{d}:{g}:{u}"


@given(patterns())
def test_any_valid_pattern_has_consistent_shares(case: tuple[str, str]) -> None:
    text, split = case
    if any(text[i] == "D" and text[(i + 1) % len(text)] == "U" for i in range(len(text))):
        # the only rule these can break: a D→U switch needs the guard period of an S slot
        with pytest.raises(TddPatternError, match="switches from D to U"):
            parse_pattern(text, split)
        return
    p = parse_pattern(text, split)
    total = p.dl_share + p.ul_share + p.guard_share
    assert total == pytest.approx(1.0)
    symbols = p.symbols()
    assert len(symbols) == SYMBOLS_PER_SLOT * len(text)
    assert symbols.count("U") / len(symbols) == pytest.approx(p.ul_share)
    assert symbols.count("D") / len(symbols) == pytest.approx(p.dl_share)


@given(st.text(max_size=30))
def test_the_parser_never_fails_with_anything_but_its_own_error(text: str) -> None:
    try:
        p = parse_pattern(text)
    except TddPatternError:
        return
    assert set(p.slots) <= set("DSU")
    assert "U" in p.slots
