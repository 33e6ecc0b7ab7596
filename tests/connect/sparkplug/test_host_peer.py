"""Our host with an independent edge node: pysparkplug (on paho-mqtt, in its own thread) on the
same Mosquitto. Another team's reading of Sparkplug B: its births, DATA and command decoding
must agree with ours."""

from __future__ import annotations

import asyncio
import datetime as dt
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pysparkplug as psp

from factory5g.connect.sparkplug.payload import DataType, Metric, decode_payload
from factory5g.model import DataType as SignalType
from tests.connect.conftest import Mosquitto
from tests.connect.sparkplug.harness import (
    T0_MS,
    WITHIN_S,
    Listener,
    ns,
    rebirth_requests,
    running_host,
)
from tests.helpers import wait_until

# The cell's temperature is bound to the foreign device's metric; its other metrics follow it.
SITE = """
[site]
name = "peer"
prefix = "88.1"

[[equipment]]
id = "cell"
area = "assembly"
line = "l2"
  [[equipment.signal]]
  name = "temperature"
  unit = "°C"
  binding = { kind = "sparkplug", group = "g1", edge = "psp", device = "dev", metric = "Temp" }

[sparkplug]
host_id = "h1"
reorder_timeout_s = 0.3
"""

SINCE = dt.datetime(2026, 1, 1, 8, 30, tzinfo=dt.UTC)


def metric(
    name: str, datatype: psp.DataType, value: object, alias: int | None, ts: int
) -> psp.Metric:
    return psp.Metric(timestamp=ts, name=name, datatype=datatype, value=value, alias=alias)


def device_metrics(ts: int, k: int) -> list[psp.Metric]:
    """The device's metrics at step ``k`` (0: the birth)."""
    return [
        metric("Temp", psp.DataType.DOUBLE, 21.5 + k, 1, ts),
        metric("Count", psp.DataType.INT16, -300 - k, 2, ts),
        metric("Total", psp.DataType.UINT64, 2**40 + k, 3, ts),
        metric("Running", psp.DataType.BOOLEAN, k == 0, None, ts),  # no alias: by name
        metric("Ratio", psp.DataType.FLOAT, 0.5 / (k + 1), 5, ts),
        metric("Since", psp.DataType.DATETIME, SINCE + dt.timedelta(seconds=k), 6, ts),
        metric("Label", psp.DataType.STRING, f"batch {7 + k}", 7, ts),
        metric("Profile", psp.DataType.DOUBLE_ARRAY, (1.0, 2.0 + k), 8, ts),
    ]


@contextmanager
def connected(node: psp.EdgeNode, where: Mosquitto) -> Iterator[psp.EdgeNode]:
    """pysparkplug's network loop runs in a paho thread: always stop it (and say NDEATH)."""
    node.connect(where.host, port=where.port, blocking=False)
    try:
        yield node
    finally:
        node.disconnect()  # publishes NDEATH, disconnects, joins the paho thread


async def test_a_pysparkplug_edge_node_is_ingested_and_obeys_our_writes(
    mosquitto: Mosquitto,
) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[psp.Message] = asyncio.Queue()

    def on_command(_node: psp.EdgeNode, message: psp.Message) -> None:  # in paho's thread
        loop.call_soon_threadsafe(commands.put_nowait, message)

    node = psp.EdgeNode(
        "g1",
        "psp",
        metrics=[metric("Mode", psp.DataType.INT32, 1, 10, T0_MS)],
        client=psp.Client(client_id="psp-e1"),
        cmd_callback=on_command,
    )
    node.register(psp.Device("dev", device_metrics(T0_MS, 0), cmd_callback=on_command))
    async with (
        running_host(mosquitto, SITE) as h,
        Listener(mosquitto, ["spBv1.0/g1/NCMD/#"]) as ncmd,
    ):
        with connected(node, mosquitto):
            names = ("temperature", "count", "total", "running", "ratio", "since", "label")
            await wait_until(
                lambda: all(h.has(f"cell.{n}") for n in (*names, "profile")),
                WITHIN_S,
                "the DBIRTH",
            )
            await wait_until(lambda: h.has("sp_g1_psp.mode"), WITHIN_S, "the NBIRTH")
            sid = {n: h.sid(f"cell.{n}") for n in (*names, "profile")}
            assert sid["temperature"] == 0  # the site file's signal
            node.update_device("dev", device_metrics(T0_MS + 1000, 1))
            node.update([metric("Mode", psp.DataType.INT32, -2, 10, T0_MS + 1000)])
            await wait_until(
                lambda: len(h.rec.samples(h.sid("sp_g1_psp.mode"))) == 2,
                WITHIN_S,
                "the NDATA",
            )
            await wait_until(lambda: len(h.rec.samples(sid["ratio"])) == 2, WITHIN_S, "the DDATA")

            r = h.rec
            assert r.values(sid["temperature"]) == [21.5, 22.5]
            assert r.values(sid["count"]) == [-300.0, -301.0]
            assert r.values(sid["total"]) == [2.0**40, 2.0**40 + 1]
            assert r.values(sid["running"]) == [1.0, 0.0]
            assert r.values(sid["ratio"]) == [0.5, 0.25]
            since_ms = int(SINCE.timestamp() * 1000)
            assert r.values(sid["since"]) == [float(since_ms), float(since_ms + 1000)]
            assert r.values(h.sid("sp_g1_psp.mode")) == [1.0, -2.0]
            assert [s.ts for s in r.samples(sid["temperature"])] == [ns(T0_MS), ns(T0_MS + 1000)]
            assert [e.data for e in r.events(sid["label"])] == ["batch 7", "batch 8"]
            profile = [struct.pack("<2d", 1.0, 2.0).hex(), struct.pack("<2d", 1.0, 3.0).hex()]
            assert [e.data for e in r.events(sid["profile"])] == [{"bytes": p} for p in profile]
            types = {n: h.site.signals.get(i).type for n, i in sid.items()}
            assert types == {
                "temperature": SignalType.FLOAT,
                "count": SignalType.INT,
                "total": SignalType.INT,
                "running": SignalType.BOOL,
                "ratio": SignalType.FLOAT,
                "since": SignalType.INT,
                "label": SignalType.STRING,
                "profile": SignalType.STRING,
            }
            n = h.node("psp")
            assert (n["mapped"], n["births"], n["gaps"], n["decode_errors"]) == (False, 2, 0, 0)
            assert (n["rebirths"], n["online"], n["seq"]) == (0, True, 3)
            assert isinstance(n["bd_seq"], int)  # pysparkplug's counter is per process

            # Our writes, as it decodes them: by alias (with the datatype) or by name.
            await h.host.write(sid["count"], -5)
            await h.host.write(sid["running"], True)
            await h.host.write(sid["temperature"], 80.5)
            await h.host.write(h.sid("sp_g1_psp.mode"), 3)
            got = []
            async with asyncio.timeout(WITHIN_S):
                while len(got) < 4:
                    got.append(await commands.get())
            assert [str(msg.topic) for msg in got] == [
                "spBv1.0/g1/DCMD/psp/dev",
                "spBv1.0/g1/DCMD/psp/dev",
                "spBv1.0/g1/DCMD/psp/dev",
                "spBv1.0/g1/NCMD/psp",
            ]
            decoded = [
                (x.name, x.alias, x.datatype, x.value)
                for msg in got
                for x in msg.payload.metrics  # type: ignore[attr-defined]
            ]
            assert decoded == [
                (None, 2, psp.DataType.INT16, -5),
                ("Running", None, psp.DataType.BOOLEAN, True),
                (None, 1, psp.DataType.DOUBLE, 80.5),
                (None, 10, psp.DataType.INT32, 3),
            ]
            # The NCMD on the wire, as our codec reads it.
            await wait_until(lambda: ncmd.messages, WITHIN_S, "the NCMD")
            [wire] = ncmd.messages
            assert decode_payload(wire.payload).metrics == (
                Metric(alias=10, datatype=DataType.Int32, value=3),
            )
            assert rebirth_requests(ncmd, "psp") == []
        # It says NDEATH on its way out. pysparkplug 0.6.1 puts the bdSeq of its *next* session
        # in it (it re-arms its Will right after NBIRTH), so our host may rightly call it stale.
        await wait_until(
            lambda: h.node("psp")["deaths"] + h.node("psp")["stale_deaths"] == 1,
            WITHIN_S,
            "the NDEATH",
        )
        n = h.node("psp")
        assert n["online"] is (n["deaths"] == 0)
