"""TS 38.306 §4.1.2 peak rates and TS 38.101 N_PRB against the reference's test vectors."""

from __future__ import annotations

import pytest

from factory5g.net.errors import BandwidthError, CapacityError
from factory5g.net.nr import Carrier, frequency_range, n_prb, peak_rate_mbps
from factory5g.net.tdd import parse_pattern

# ../shared/reference/5g-nr.md, "Test vectors (f = 1)": bandwidth, SCS, N_PRB, layers, modulation,
# FR, direction, Mbit/s (one decimal).
VECTORS = [
    (100, 30, 273, 4, "256QAM", "FR1", "DL", 2337.0),
    (100, 30, 273, 2, "256QAM", "FR1", "UL", 1250.0),
    (100, 30, 273, 1, "64QAM", "FR1", "UL", 468.8),
    (20, 15, 106, 2, "64QAM", "FR1", "DL", 170.1),
    (50, 30, 133, 2, "256QAM", "FR1", "DL", 569.3),
    (400, 120, 264, 2, "64QAM", "FR2", "DL", 3232.3),
    (40, 30, 106, 4, "256QAM", "FR1", "DL", 907.4),
    (40, 30, 106, 1, "64QAM", "FR1", "UL", 182.0),
]


@pytest.mark.parametrize(("bw", "scs", "prb", "layers", "mod", "fr", "direction", "mbps"), VECTORS)
def test_reference_vectors(
    bw: int, scs: int, prb: int, layers: int, mod: str, fr: str, direction: str, mbps: float
) -> None:
    assert n_prb(bw, scs, fr) == prb  # type: ignore[arg-type]
    c = Carrier(bandwidth_mhz=bw, scs_khz=scs, fr=fr, layers=layers, modulation=mod)  # type: ignore[arg-type]
    assert c.rate_mbps(direction) == pytest.approx(mbps, abs=0.05)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "mbps"), [("DDDSU", 285.7), ("DDSUU", 535.7), ("DSUUU", 785.7)]
)
def test_tdd_capacity_on_the_100_mhz_carrier(pattern: str, mbps: float) -> None:
    ul = Carrier(bandwidth_mhz=100, scs_khz=30, layers=2, modulation="256QAM").rate_mbps("UL")
    assert ul * parse_pattern(pattern, "10:2:2").ul_share == pytest.approx(mbps, abs=0.05)


# TS 38.101-1 Table 5.3.2-1 and TS 38.101-2, as the reference tabulates them.
PRB_TABLE = {
    ("FR1", 15): [25, 52, 79, 106, 133, 160, 216, 270],
    ("FR1", 30): [11, 24, 38, 51, 65, 78, 106, 133, 162, 189, 217, 245, 273],
    ("FR1", 60): [None, 11, 18, 24, 31, 38, 51, 65, 79, 93, 107, 121, 135],
}
FR1_BW = [5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100]


def test_prb_table_fr1() -> None:
    for (fr, scs), values in PRB_TABLE.items():
        for bw, prb in zip(FR1_BW, values, strict=False):
            if prb is None:
                with pytest.raises(BandwidthError):
                    n_prb(bw, scs, fr)  # type: ignore[arg-type]
            else:
                assert n_prb(bw, scs, fr) == prb, (fr, scs, bw)  # type: ignore[arg-type]


def test_prb_table_fr2() -> None:
    assert [n_prb(b, 60, "FR2") for b in (50, 100, 200)] == [66, 132, 264]
    assert [n_prb(b, 120, "FR2") for b in (50, 100, 200, 400)] == [32, 66, 132, 264]


def test_bandwidth_not_defined_for_the_scs_is_a_clear_error() -> None:
    with pytest.raises(BandwidthError) as e:
        n_prb(100, 15, "FR1")
    msg = str(e.value)
    assert "100 MHz is not a channel bandwidth defined for 15 kHz SCS in FR1" in msg
    assert "TS 38.101-1" in msg
    assert "use 5, 10, 15, 20, 25, 30, 40, 50 MHz" in msg
    with pytest.raises(BandwidthError, match="120 kHz is not an SCS of FR1"):
        Carrier(bandwidth_mhz=100, scs_khz=120, fr="FR1")


def test_scaling_factor_layers_modulation() -> None:
    base = Carrier(bandwidth_mhz=100, scs_khz=30, layers=4, modulation="256QAM")
    half = Carrier(bandwidth_mhz=100, scs_khz=30, layers=2, modulation="256QAM")
    scaled = Carrier(
        bandwidth_mhz=100, scs_khz=30, layers=4, modulation="256QAM", scaling_factor=0.75
    )
    qpsk = Carrier(bandwidth_mhz=100, scs_khz=30, layers=4, modulation="QPSK")
    assert half.rate_mbps("DL") == pytest.approx(base.rate_mbps("DL") / 2)
    assert scaled.rate_mbps("DL") == pytest.approx(base.rate_mbps("DL") * 0.75)
    assert qpsk.rate_mbps("DL") == pytest.approx(base.rate_mbps("DL") / 4)
    with pytest.raises(CapacityError, match=r"scaling factor 0\.9"):
        Carrier(bandwidth_mhz=100, scs_khz=30, scaling_factor=0.9)
    with pytest.raises(CapacityError, match="unknown modulation"):
        Carrier(bandwidth_mhz=100, scs_khz=30, modulation="512QAM")
    with pytest.raises(CapacityError, match="layers"):
        Carrier(bandwidth_mhz=100, scs_khz=30, layers=0)


def test_carrier_aggregation_sums_and_sul_takes_the_higher() -> None:
    a = Carrier(bandwidth_mhz=100, scs_khz=30, layers=4, modulation="256QAM")
    b = Carrier(bandwidth_mhz=40, scs_khz=30, layers=4, modulation="256QAM")
    # 2337.0 + 907.4 from the reference vectors
    assert peak_rate_mbps([a, b], "DL") == pytest.approx(2337.0 + 907.4, abs=0.1)
    ul = Carrier(bandwidth_mhz=40, scs_khz=30, layers=1, modulation="64QAM")  # 182.0
    sul_small = Carrier(bandwidth_mhz=20, scs_khz=15, layers=1, modulation="QPSK")
    sul_big = Carrier(bandwidth_mhz=100, scs_khz=30, layers=1, modulation="64QAM")  # 468.8
    assert peak_rate_mbps([ul], "UL", sul=sul_small) == pytest.approx(182.0, abs=0.05)
    assert peak_rate_mbps([ul], "UL", sul=sul_big) == pytest.approx(468.8, abs=0.05)
    with pytest.raises(CapacityError, match="no carrier"):
        peak_rate_mbps([], "DL")


def test_fr2_overhead_and_bands() -> None:
    assert frequency_range("n78") == "FR1"
    assert frequency_range("n258") == "FR2"
    with pytest.raises(CapacityError, match="not an NR band"):
        frequency_range("78")
    fr2 = Carrier(bandwidth_mhz=400, scs_khz=120, fr="FR2", layers=2, modulation="64QAM")
    # UL overhead 0.10 vs DL 0.18 in FR2
    assert fr2.rate_mbps("UL") / fr2.rate_mbps("DL") == pytest.approx(0.90 / 0.82)
