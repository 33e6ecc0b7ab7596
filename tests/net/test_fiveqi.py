"""The 5QI catalogue against TS 23.501 Table 5.7.4-1 as the reference lists it."""

from __future__ import annotations

import pytest

from factory5g.net.errors import FiveQIError
from factory5g.net.fiveqi import CATALOGUE, ResourceType, five_qi

# ../shared/reference/5g-nr.md: value -> (priority, PDB ms, PER, MDBV bytes or None)
GBR = {1: (20, 100, 1e-2), 2: (40, 150, 1e-3), 3: (30, 50, 1e-3), 4: (50, 300, 1e-6),
       65: (7, 75, 1e-2), 66: (20, 100, 1e-2), 67: (15, 100, 1e-3), 71: (56, 150, 1e-6),
       72: (56, 300, 1e-4), 73: (56, 300, 1e-8), 74: (56, 500, 1e-8),
       76: (56, 500, 1e-4)}  # fmt: skip
NON_GBR = {5: (10, 100, 1e-6), 6: (60, 300, 1e-6), 7: (70, 100, 1e-3), 8: (80, 300, 1e-6),
           9: (90, 300, 1e-6), 69: (5, 60, 1e-6), 70: (55, 200, 1e-6), 79: (65, 50, 1e-2),
           80: (68, 10, 1e-6)}  # fmt: skip
DC_GBR = {82: (19, 10, 1e-4, 255), 83: (22, 10, 1e-4, 1354), 84: (24, 30, 1e-5, 1354),
          85: (21, 5, 1e-5, 255)}  # fmt: skip


@pytest.mark.parametrize("value", sorted(GBR))
def test_gbr_rows(value: int) -> None:
    q = five_qi(value)
    assert (q.priority, q.pdb_ms, q.per) == GBR[value]
    assert q.resource_type is ResourceType.GBR
    assert q.guaranteed


@pytest.mark.parametrize("value", sorted(NON_GBR))
def test_non_gbr_rows(value: int) -> None:
    q = five_qi(value)
    assert (q.priority, q.pdb_ms, q.per) == NON_GBR[value]
    assert q.resource_type is ResourceType.NON_GBR
    assert not q.guaranteed


@pytest.mark.parametrize("value", sorted(DC_GBR))
def test_delay_critical_rows(value: int) -> None:
    q = five_qi(value)
    assert (q.priority, q.pdb_ms, q.per, q.mdbv_bytes) == DC_GBR[value]
    assert q.averaging_window_ms == 2000
    assert q.resource_type is ResourceType.DELAY_CRITICAL_GBR


def test_catalogue_is_exactly_the_reference_rows() -> None:
    assert set(CATALOGUE) == set(GBR) | set(NON_GBR) | set(DC_GBR)


@pytest.mark.parametrize("value", [0, 11, 86, 128, 255])
def test_unknown_5qi_is_a_clear_error(value: int) -> None:
    with pytest.raises(FiveQIError) as e:
        five_qi(value)
    assert f"5QI {value} is not a standardized 5QI (TS 23.501 Table 5.7.4-1)" in str(e.value)
    assert "82" in str(e.value)  # the known values are listed


def test_non_integer_5qi() -> None:
    with pytest.raises(FiveQIError, match="integer"):
        five_qi("9")  # type: ignore[arg-type]
