"""The demo factory: a hot strip finishing mill and its utilities, physically coupled.

``Plant`` steps the physics deterministically in plant time; ``Simulator`` runs it in real time
and publishes one Batch per tick of every ``kind = "sim"`` signal of the site to a Bus.
"""

from factory5g.sim.errors import BindingProblem, SimBindingError, SimError, SimWriteError
from factory5g.sim.models import MODELS, Bar, Mill, Model, Output, PlantState
from factory5g.sim.plant import Pacer, Plant, SimPeer, Simulator

__all__ = [
    "MODELS",
    "Bar",
    "BindingProblem",
    "Mill",
    "Model",
    "Output",
    "Pacer",
    "Plant",
    "PlantState",
    "SimBindingError",
    "SimError",
    "SimPeer",
    "SimWriteError",
    "Simulator",
]
