"""Helpers of the sim tests: the steel template as text, and a recording of a plant run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from factory5g.model import Site
from factory5g.sim import Bar, Plant
from tests.helpers import steel_sim_text

RUN_HOURS = 3.0
RUN_DT_S = 0.5


@dataclass
class Run:
    """Every simulated signal sampled each step, and which bar was in which stand."""

    plant: Plant
    dt_s: float
    t_s: NDArray[np.float64]
    values: dict[str, NDArray[np.float64]]  # by "equipment.signal"
    bar_in: list[NDArray[np.int64]]  # per stand: number of the bar in it, 0 when empty
    admitted: NDArray[np.int64]  # bars admitted so far, after each step
    bars: dict[int, Bar]  # every admitted bar, by number

    def __getitem__(self, path: str) -> NDArray[np.float64]:
        return self.values[path]


def steel_site_text(extra_f1_signals: str = "") -> str:
    """The steel template, optionally with more signals appended to stand F1."""
    text = steel_sim_text()
    if extra_f1_signals:
        marker = '[[equipment]]\nid = "f2"'
        assert marker in text
        text = text.replace(marker, extra_f1_signals + "\n" + marker)
    return text


def record(site: Site, *, hours: float, dt_s: float, seed: int) -> Run:
    plant = Plant(site, seed=seed)
    paths = {s.id: s.path for s in plant.signals}
    n = round(hours * 3600.0 / dt_s)
    n_stands = len(plant.mill.stands)
    t = np.empty(n)
    rows = np.empty((n, len(paths)))
    bar_in = [np.zeros(n, dtype=np.int64) for _ in range(n_stands)]
    admitted = np.empty(n, dtype=np.int64)
    bars: dict[int, Bar] = {}
    for i in range(n):
        values = plant.step(dt_s)
        t[i] = plant.t_s
        rows[i] = [values[k] for k in paths]
        admitted[i] = plant.mill.admitted
        for bar in plant.mill.bars:
            bars[bar.number] = bar
        for j in range(n_stands):
            here = plant.mill.in_stand(j, plant.t_s)
            if here is not None:
                bar_in[j][i] = here[0].number
    columns = {path: rows[:, c] for c, path in enumerate(paths.values())}
    return Run(plant, dt_s, t, columns, bar_in, admitted, bars)
