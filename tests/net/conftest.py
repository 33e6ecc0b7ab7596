"""Sites for the network tests: the steel template and small hand-written ones."""

from __future__ import annotations

import pytest

from factory5g.model import Site, load_text, template_text

HEAD = """
[site]
name = "Vision line"
prefix = "88.118.8"

[[network.cell]]
id = "cell-a"
band = "n78"
bandwidth_mhz = 100
scs_khz = 30
tdd_pattern = "DDDSU"
layers_ul = 2
max_modulation_ul = "256QAM"

[[network.cell]]
id = "cell-b"
band = "n78"
bandwidth_mhz = 100
scs_khz = 30
tdd_pattern = "DSUUU"
layers_ul = 2
max_modulation_ul = "256QAM"

[[network.slice]]
name = "video"
sst = 1
sd = "000001"
dnn = "video"

[[network.slice]]
name = "control"
sst = 2
sd = "000002"
dnn = "control"

[[network.qos]]
name = "vision"
five_qi = 4
arp_priority = 5
gbr_ul_mbps = 100
mbr_ul_mbps = 150

[[network.qos]]
name = "plc"
five_qi = 82
arp_priority = 1
gbr_ul_mbps = 1
gbr_dl_mbps = 1
"""


def vision_site(stations_a: int, stations_b: int = 0, extra: str = "") -> Site:
    """``stations_a`` 100 Mbit/s GBR vision stations on cell-a, ``stations_b`` on cell-b."""
    text = HEAD
    n = 0
    for cell, count in (("cell-a", stations_a), ("cell-b", stations_b)):
        for _ in range(count):
            n += 1
            text += f"""
[[device]]
id = "vision-{n}"
imsi = "0010100000{n:05d}"
slice = "video"
qos = "vision"
cell = "{cell}"
ipv4 = "10.45.1.{n}"
carries = [{{ kind = "vision", ul_mbps = 100 }}]
"""
    return load_text(text + extra)


@pytest.fixture
def steel() -> Site:
    return load_text(template_text("steel"))
