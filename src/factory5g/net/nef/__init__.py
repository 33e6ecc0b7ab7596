"""NEF northbound APIs (TS 29.122 AsSessionWithQoS and MonitoringEvent, TS 29.522
TrafficInfluence): a client for apps, and an emulator backed by the planner."""

from factory5g.net.nef.client import NefClient
from factory5g.net.nef.emulator import NefEmulator, NetEvent, create_nef_app

__all__ = ["NefClient", "NefEmulator", "NetEvent", "create_nef_app"]
