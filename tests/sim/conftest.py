"""A few simulated hours of the steel template, recorded once and shared by the physics tests."""

from __future__ import annotations

import pytest

from factory5g.model import Site, load_text
from tests.sim.recording import RUN_DT_S, RUN_HOURS, Run, record, steel_site_text


@pytest.fixture(scope="session")
def steel() -> Site:
    return load_text(steel_site_text(), "steel.toml")


@pytest.fixture(scope="session")
def run(steel: Site) -> Run:
    """Three hours of the steel plant, seed 7."""
    return record(steel, hours=RUN_HOURS, dt_s=RUN_DT_S, seed=7)
