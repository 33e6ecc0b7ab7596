"""The Sparkplug B 3.0 Primary Host Application against the real Mosquitto.

Births create signals (bound, inferred, mapped, unassigned), DATA by alias and by name with the
right timestamps, qualities and datatypes, the sequence number (wrap, reorder, gap → rebirth),
deaths and Wills, the host's STATE, a broker restart, bad input, and writes (NCMD/DCMD).
Edge nodes are ours (``EdgeNode``) or hand-driven (``RawEdge``) when they must misbehave.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from contextlib import AsyncExitStack
from typing import Any

import numpy as np
import pytest

from factory5g.connect.base import UnknownTargetError, WriteRejectedError
from factory5g.connect.mqtt import Message, MqttClient
from factory5g.connect.sparkplug import EdgeNode, MetricSpec
from factory5g.connect.sparkplug.payload import (
    DataSet,
    DataType,
    Metric,
    Parameter,
    Template,
    decode_payload,
)
from factory5g.connect.sparkplug.topic import MessageType
from factory5g.model import DataType as SignalType
from factory5g.stream import Batch, Quality
from tests.connect.conftest import Mosquitto
from tests.connect.mqtt.conftest import TcpProxy
from tests.connect.sparkplug.harness import (
    HOST_ID,
    NS_PER_MS,
    STATE_TOPIC,
    T0_MS,
    WITHIN_S,
    Harness,
    Listener,
    RawEdge,
    is_rebirth_request,
    m,
    mqtt_options,
    ns,
    rebirth_requests,
    running_host,
    state,
    unit,
)
from tests.helpers import wait_until

HOST_LOG = "factory5g.connect.sparkplug.host"

# -- births ---------------------------------------------------------------------------------


async def test_births_create_bound_inferred_mapped_and_unassigned_signals(
    mosquitto: Mosquitto,
) -> None:
    async with (
        running_host(mosquitto) as h,
        RawEdge(mosquitto, "e1") as e1,
        RawEdge(mosquitto, "e2") as e2,
        RawEdge(mosquitto, "e3") as e3,
        RawEdge(mosquitto, "e4") as e4,
        RawEdge(mosquitto, "e5") as e5,
    ):
        # e1/press: Force is bound to press.force; the device's other metrics follow it.
        await e1.nbirth(ts=T0_MS)
        await e1.dbirth(
            "press",
            m("Force", DataType.Double, 12.5, alias=1, properties=unit("kN")),
            m("Temp", DataType.Float, 80.25, alias=2, properties=unit("°C")),
            m("Running", DataType.Boolean, True, alias=3),
            m("Count", DataType.Int32, -7, alias=4, timestamp=T0_MS + 5),
            m("Recipe", DataType.String, "R-12", alias=5),
            ts=T0_MS + 1,
        )
        # e2: a [[sparkplug.map]] entry puts the node's metrics under the oven.
        await e2.nbirth(m("Zone 1/Temp (C)", DataType.Double, 200.0, properties=unit("C")))
        # e3: nothing in the site file → sp_g1_e3 and sp_g1_e3_d1.
        await e3.nbirth(m("Uptime", DataType.UInt32, 5, alias=1))
        await e3.dbirth("d1", m("Level", DataType.Double, 0.5, alias=2))
        # e4: a node metric is bound to mill.speed; the node's other metrics follow it.
        await e4.nbirth(
            m("Speed", DataType.Double, 1450.0, alias=1), m("Load", DataType.Float, 0.75, alias=2)
        )
        # e5/split: its bound metrics are on two equipment → its unbound one is unassigned.
        await e5.nbirth()
        await e5.dbirth(
            "split",
            m("Door", DataType.Boolean, False, alias=1),
            m("Torque", DataType.Double, 3.5, alias=2),
            m("Vibration", DataType.Double, 0.01, alias=3),
        )
        paths = (
            "press.temp",
            "press.running",
            "press.count",
            "press.recipe",
            "oven.zone_1_temp_c",
            "sp_g1_e3.uptime",
            "sp_g1_e3_d1.level",
            "mill.load",
            "sp_g1_e5_split.vibration",
        )
        await wait_until(lambda: all(h.has(p) for p in paths), WITHIN_S, "every birth learned")
        await wait_until(
            lambda: len(h.rec.values(h.sid("sp_g1_e5_split.vibration"))) == 1,
            WITHIN_S,
            "the last birth values",
        )

        sig = h.site.signals
        force, temp = sig.get("press.force"), sig.get("press.temp")
        assert force.id == 0  # the site file's signal, not a new one
        assert (temp.unit, temp.type, temp.binding) == ("°C", SignalType.FLOAT, "sparkplug")
        assert "g1/e1/press" in temp.description and "'Temp'" in temp.description
        assert sig.get("press.running").type is SignalType.BOOL
        assert sig.get("press.count").type is SignalType.INT
        assert sig.get("press.recipe").type is SignalType.STRING
        assert sig.get("oven.zone_1_temp_c").unit == "C"
        assert sig.get("sp_g1_e3.uptime").type is SignalType.INT
        assert sig.get("mill.speed").id == 2
        assert sig.get("oven.door").id == 1
        assert sig.get("mill.torque").id == 3
        # bdSeq and Node Control/* are Sparkplug machinery, not signals.
        assert not [s.path for s in sig if "bdseq" in s.path or "rebirth" in s.path]

        # Birth values are published: the metric's timestamp, else the payload's.
        r = h.rec
        birth_ts = ns(T0_MS + 1)
        assert r.samples(force.id) == [(birth_ts, 12.5, Quality.GOOD, False)]
        assert r.samples(temp.id) == [(birth_ts, 80.25, Quality.GOOD, False)]
        assert r.samples(h.sid("press.running")) == [(birth_ts, 1.0, Quality.GOOD, False)]
        assert r.samples(h.sid("press.count")) == [(ns(T0_MS + 5), -7.0, Quality.GOOD, False)]
        assert [(e.ts, e.data) for e in r.events(h.sid("press.recipe"))] == [(birth_ts, "R-12")]
        assert r.values(h.sid("oven.zone_1_temp_c")) == [200.0]
        assert r.values(h.sid("sp_g1_e3.uptime")) == [5.0]
        assert r.values(h.sid("sp_g1_e3_d1.level")) == [0.5]
        assert r.values(h.sid("mill.speed")) == [1450.0]
        assert r.values(h.sid("mill.load")) == [0.75]
        assert r.values(h.sid("oven.door")) == [0.0]
        assert r.values(h.sid("mill.torque")) == [3.5]
        assert r.values(h.sid("sp_g1_e5_split.vibration")) == [0.01]

        n1, n2, n3, n4, n5 = (h.node(e) for e in ("e1", "e2", "e3", "e4", "e5"))
        assert (n1["mapped"], n1["births"], n1["signals"], n1["online"]) == (True, 2, 5, True)
        assert n1["devices"] == [{"device": "press", "online": True, "signals": 5}]
        assert (n1["bd_seq"], n1["seq"]) == (0, 1)
        assert (n2["mapped"], n2["equipment"], n2["signals"]) == (True, "oven", 1)
        assert (n3["mapped"], n3["births"], n3["signals"]) == (False, 2, 2)
        assert (n4["mapped"], n4["equipment"], n4["signals"]) == (True, "mill", 2)
        assert (n5["mapped"], n5["signals"]) == (False, 3)
        for n in (n1, n2, n3, n4, n5):
            assert (n["gaps"], n["rebirths"], n["decode_errors"], n["deaths"]) == (0, 0, 0, 0)


async def test_a_new_nbirth_replaces_the_aliases(mosquitto: Mosquitto) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth()
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        await wait_until(lambda: h.rec.values(0) == [1.0], WITHIN_S, "first birth")
        # The edge restarts with other aliases: alias 1 is now Temp, Force is 7.
        await e1.nbirth(bd_seq=1)
        await e1.dbirth(
            "press",
            m("Force", DataType.Double, 2.0, alias=7),
            m("Temp", DataType.Double, 20.0, alias=1),
        )
        await e1.ddata("press", m(1, DataType.Double, 21.0), m(7, DataType.Double, 3.0))
        await wait_until(lambda: h.rec.values(0) == [1.0, 2.0, 3.0], WITHIN_S, "data by alias 7")
        assert h.rec.values(h.sid("press.temp")) == [20.0, 21.0]
        assert h.node("e1")["bd_seq"] == 1
        assert h.node("e1")["births"] == 4


# -- data -----------------------------------------------------------------------------------


async def test_data_by_alias_and_by_name_with_metric_or_payload_timestamp(
    mosquitto: Mosquitto,
) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth(m("Mode", DataType.Int32, 1, alias=10))
        await e1.dbirth(
            "press",
            m("Force", DataType.Double, 1.0, alias=1),
            m("Temp", DataType.Float, 20.0, alias=2),
            m("No Alias", DataType.Double, 0.0),
        )
        await wait_until(lambda: h.has("press.no_alias"), WITHIN_S, "births")
        temp, no_alias, mode = h.sid("press.temp"), h.sid("press.no_alias"), h.sid("sp_g1_e1.mode")
        await e1.ddata(
            "press",
            m(1, DataType.Double, 10.5, timestamp=T0_MS + 100),  # by alias, metric timestamp
            m("Temp", DataType.Float, 21.5),  # by name, payload timestamp
            m("No Alias", DataType.Double, 7.0, timestamp=T0_MS + 101),
            ts=T0_MS + 200,
        )
        await e1.ndata(m(10, DataType.Int32, 2), ts=T0_MS + 300)  # NDATA by alias
        await wait_until(lambda: len(h.rec.samples(mode)) == 2, WITHIN_S, "the NDATA")
        assert h.rec.samples(0)[1:] == [(ns(T0_MS + 100), 10.5, Quality.GOOD, False)]
        assert h.rec.samples(temp)[1:] == [(ns(T0_MS + 200), 21.5, Quality.GOOD, False)]
        assert h.rec.samples(no_alias)[1:] == [(ns(T0_MS + 101), 7.0, Quality.GOOD, False)]
        assert h.rec.samples(mode)[1:] == [(ns(T0_MS + 300), 2.0, Quality.GOOD, False)]
        n = h.node("e1")
        assert (n["messages"], n["metrics"], n["seq"], n["gaps"], n["rebirths"]) == (
            4,
            3 + 3 + 3 + 1,  # NBIRTH (bdSeq, Rebirth, Mode), DBIRTH, DDATA, NDATA
            3,
            0,
            0,
        )


async def test_data_without_any_timestamp_is_stamped_on_arrival(mosquitto: Mosquitto) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth()
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        before = time.time_ns()
        await e1.ddata("press", m(1, DataType.Double, 2.0), ts=None)
        await wait_until(lambda: len(h.rec.samples(0)) == 2, WITHIN_S, "the DDATA")
        assert before <= h.rec.samples(0)[1].ts <= time.time_ns()


async def test_null_metric_is_nan_with_bad_quality(mosquitto: Mosquitto) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth()
        await e1.dbirth(
            "press",
            m("Force", DataType.Double, None, alias=1),  # null in the birth too
            m("Count", DataType.Int64, 5, alias=2),
        )
        await e1.ddata("press", m(2, DataType.Int64, None, timestamp=T0_MS + 9))
        await wait_until(lambda: h.has("press.count"), WITHIN_S, "the DBIRTH")
        count = h.sid("press.count")
        await wait_until(lambda: len(h.rec.samples(count)) == 2, WITHIN_S, "the null DDATA")
        [birth] = h.rec.samples(0)
        assert math.isnan(birth.value) and birth.quality == Quality.BAD
        last = h.rec.samples(count)[1]
        assert math.isnan(last.value)
        assert (last.ts, last.quality) == (ns(T0_MS + 9), Quality.BAD)


async def test_historical_data_is_flagged_and_does_not_move_latest(mosquitto: Mosquitto) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth()
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1), ts=T0_MS + 1000)
        await e1.ddata(
            "press",
            m(1, DataType.Double, 99.0, timestamp=T0_MS + 500, is_historical=True),
            m(1, DataType.Double, 98.0, timestamp=T0_MS + 600, is_historical=True),
            ts=T0_MS + 2000,
        )
        await e1.ddata("press", m(1, DataType.Double, 5.0, timestamp=T0_MS + 1500))
        # Store-and-forward data may come later than live data: it still must not move latest.
        await e1.ddata(
            "press", m(1, DataType.Double, 97.0, timestamp=T0_MS + 3000, is_historical=True)
        )
        await wait_until(lambda: len(h.rec.samples(0)) == 5, WITHIN_S, "every sample")
        # Live and historical samples travel in separate Batches (the flag is per Batch).
        samples = h.rec.samples(0)
        assert [s for s in samples if not s.historical] == [
            (ns(T0_MS + 1000), 1.0, Quality.GOOD, False),
            (ns(T0_MS + 1500), 5.0, Quality.GOOD, False),
        ]
        assert [s for s in samples if s.historical] == [
            (ns(T0_MS + 500), 99.0, Quality.GOOD, True),
            (ns(T0_MS + 600), 98.0, Quality.GOOD, True),
            (ns(T0_MS + 3000), 97.0, Quality.GOOD, True),
        ]
        historical = [b for b in h.rec.batches if b.historical]
        assert sum(len(b) for b in historical) == 3
        assert not any(b.events for b in historical)
        latest = await h.rec.store.latest([0])
        assert (latest.ts.tolist(), latest.value.tolist()) == ([ns(T0_MS + 1500)], [5.0])
        stored = await h.rec.store.query(0, ns(T0_MS), ns(T0_MS + 4000))
        assert stored.value.tolist() == [99.0, 98.0, 1.0, 5.0, 97.0]  # by time, all kept


async def test_data_without_datatype_is_read_with_the_births_datatype(
    mosquitto: Mosquitto,
) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth()
        await e1.dbirth(
            "press",
            m("Small", DataType.Int8, -1, alias=1),
            m("Big", DataType.Int64, -1, alias=2),
            m("Word", DataType.UInt16, 1, alias=3),
            m("Ratio", DataType.Float, 0.5, alias=4),
            m("On", DataType.Boolean, False, alias=5),
        )
        await wait_until(lambda: h.has("press.on"), WITHIN_S, "births")
        small, big, word = h.sid("press.small"), h.sid("press.big"), h.sid("press.word")
        ratio, on = h.sid("press.ratio"), h.sid("press.on")
        # Datatype left out (allowed in DATA, tck-id-payloads-metric-datatype-not-req): the
        # signed values travel two's complement, as Tahu's Python (Int8 -5 → 251) or Java
        # (sign-extended to 32 bits) encoders write them.
        await e1.ddata(
            "press",
            Metric(alias=1, value=251),
            Metric(alias=2, value=2**64 - 2),
            Metric(alias=3, value=65535),
            Metric(alias=4, value=0.25),
            Metric(alias=5, value=True),
        )
        await e1.ddata("press", Metric(alias=1, value=0xFFFFFFFB))
        await wait_until(lambda: len(h.rec.samples(small)) == 3, WITHIN_S, "the DDATA")
        assert h.rec.values(small) == [-1.0, -5.0, -5.0]
        assert h.rec.values(big) == [-1.0, -2.0]
        assert h.rec.values(word) == [1.0, 65535.0]
        assert h.rec.values(ratio) == [0.5, 0.25]
        assert h.rec.values(on) == [0.0, 1.0]
        assert h.node("e1")["decode_errors"] == 0


# -- datatypes ------------------------------------------------------------------------------

# (name, datatype, birth value, data value): the extremes of every scalar type.
SCALARS: list[tuple[str, DataType, Any, Any]] = [
    ("i8", DataType.Int8, -128, 127),
    ("i16", DataType.Int16, -32768, 32767),
    ("i32", DataType.Int32, -(2**31), 2**31 - 1),
    ("i64", DataType.Int64, -(2**63), 2**53 + 1),
    ("u8", DataType.UInt8, 255, 0),
    ("u16", DataType.UInt16, 65535, 1),
    ("u32", DataType.UInt32, 2**32 - 1, 7),
    ("u64", DataType.UInt64, 2**64 - 1, 2**53),
    ("f32", DataType.Float, 1.5, -3.4028234663852886e38),
    ("f64", DataType.Double, 1e300, -5e-324),
    ("flag", DataType.Boolean, True, False),
    ("when", DataType.DateTime, T0_MS, 0),
]


async def test_every_scalar_datatype_round_trips(mosquitto: Mosquitto) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth()
        await e1.dbirth(
            "all", *(m(n, dt, b, alias=i) for i, (n, dt, b, _) in enumerate(SCALARS, 1))
        )
        await e1.ddata("all", *(m(i, dt, d) for i, (_, dt, _, d) in enumerate(SCALARS, 1)))
        # And once more by name, without datatypes: the birth's datatype decodes them.
        await e1.ddata("all", *(Metric(name=n, value=_wire(dt, d)) for n, dt, _, d in SCALARS))
        await wait_until(lambda: h.has("sp_g1_e1_all.when"), WITHIN_S, "the DBIRTH")
        ids = {name: h.sid(f"sp_g1_e1_all.{name}") for name, *_ in SCALARS}
        await wait_until(
            lambda: len(h.rec.samples(ids["when"])) == 3, WITHIN_S, "both DDATA messages"
        )
        kinds = {DataType.Float: SignalType.FLOAT, DataType.Double: SignalType.FLOAT}
        kinds[DataType.Boolean] = SignalType.BOOL
        for name, dt, birth, data in SCALARS:
            assert h.rec.values(ids[name]) == [float(birth), float(data), float(data)], name
            assert h.site.signals.get(ids[name]).type is kinds.get(dt, SignalType.INT), name
        assert h.node("e1")["decode_errors"] == 0


def _wire(dt: DataType, value: Any) -> Any:
    """``value`` as it travels without a datatype: two's complement in the unsigned field."""
    if dt in (DataType.Int8, DataType.Int16, DataType.Int32):
        return value & 0xFFFFFFFF
    if dt == DataType.Int64:
        return value & (2**64 - 1)
    if dt == DataType.Float:
        return float(value)
    return value


async def test_strings_datasets_templates_and_bytes_become_events(mosquitto: Mosquitto) -> None:
    table = DataSet(
        columns=("step", "label", "reading"),
        types=(DataType.Int32, DataType.String, DataType.Double),
        rows=((1, "load", 2.5), (-2, None, float("nan"))),
    )
    recipe = Template(
        version="1.0",
        template_ref="Recipe",
        metrics=(Metric(name="Speed", datatype=DataType.Double, value=3.0),),
        parameters=(Parameter(name="kind", type=DataType.String, value="A"),),
    )
    uuid = "123e4567-e89b-12d3-a456-426614174000"
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth()
        await e1.dbirth(
            "cell",
            m("Name", DataType.String, "café", alias=1),
            m("Note", DataType.Text, "", alias=2),
            m("Id", DataType.UUID, uuid, alias=3),
            m("Table", DataType.DataSet, table, alias=4),
            m("Recipe", DataType.Template, recipe, alias=5),
            m("Blob", DataType.Bytes, b"\x00\xff", alias=6),
            m("Level", DataType.Double, 1.0, alias=7),
        )
        await e1.ddata(
            "cell",
            m(1, DataType.String, "thé", timestamp=T0_MS + 1),
            m(2, DataType.Text, "a\nlong\ntext"),
            m(4, DataType.DataSet, DataSet(columns=(), types=(), rows=())),
            m(5, DataType.Template, recipe),
            m(6, DataType.Bytes, b""),
            m(3, DataType.UUID, None),  # null: nothing to say, no event
            m(7, DataType.Double, 2.0),
            ts=T0_MS + 2,
        )
        await wait_until(
            lambda: (
                h.has("sp_g1_e1_cell.level")
                and len(h.rec.samples(h.sid("sp_g1_e1_cell.level"))) == 2
            ),
            WITHIN_S,
            "the DDATA",
        )

        def events(name: str) -> list[tuple[int, Any]]:
            return [(e.ts, e.data) for e in h.rec.events(h.sid(f"sp_g1_e1_cell.{name}"))]

        t0, t1, t2 = ns(T0_MS), ns(T0_MS + 1), ns(T0_MS + 2)
        assert events("name") == [(t0, "café"), (t1, "thé")]
        assert events("note") == [(t0, ""), (t2, "a\nlong\ntext")]
        assert events("id") == [(t0, uuid)]
        assert events("blob") == [(t0, {"bytes": "00ff"}), (t2, {"bytes": ""})]
        [(ts, data), (ts2, empty)] = events("table")
        assert ts == t0 and ts2 == t2
        assert data == {
            "kind": "DataSet",
            "columns": ["step", "label", "reading"],
            "types": [3, 12, 10],
            "rows": [[1, "load", 2.5], [-2, None, "nan"]],
        }
        assert empty == {"kind": "DataSet", "columns": [], "types": [], "rows": []}
        [(_, tpl), (_, tpl2)] = events("recipe")
        assert tpl == tpl2
        assert (tpl["kind"], tpl["template_ref"], tpl["version"]) == ("Template", "Recipe", "1.0")
        assert tpl["metrics"][0]["name"] == "Speed" and tpl["metrics"][0]["value"] == 3.0
        assert tpl["parameters"][0] == {
            "kind": "Parameter",
            "name": "kind",
            "type": 12,
            "value": "A",
        }
        for b in h.rec.batches:  # JSON-ready: every batch survives the wire format
            json.dumps([e.data for e in b.events], allow_nan=False)
            assert Batch.from_bytes(b.to_bytes()).equals(b)
        types = {s.name: s.type for s in h.site.signals.for_equipment("sp_g1_e1_cell")}
        assert set(types.values()) == {SignalType.STRING, SignalType.FLOAT}
        assert types["level"] == SignalType.FLOAT
        # Not numbers: no samples for them, the numeric metric beside them is still there.
        assert h.rec.values(h.sid("sp_g1_e1_cell.level")) == [1.0, 2.0]
        assert all(len(h.rec.samples(h.sid(f"sp_g1_e1_cell.{n}"))) == 0 for n in ("name", "table"))
        assert h.node("e1")["decode_errors"] == 0


# -- sequence numbers -----------------------------------------------------------------------


async def test_seq_wraps_from_255_to_0_without_a_gap(mosquitto: Mosquitto) -> None:
    async with (
        running_host(mosquitto) as h,
        Listener(mosquitto, ["spBv1.0/g1/NCMD/#"]) as ncmd,
        RawEdge(mosquitto) as e1,
    ):
        await e1.nbirth()  # seq 0
        await e1.dbirth("press", m("Force", DataType.Double, -1.0, alias=1))  # seq 1
        sent = [await e1.ddata("press", m(1, DataType.Double, float(k))) for k in range(300)]
        assert sent[252:256] == [254, 255, 0, 1]  # the wrap, twice over 300 messages
        await wait_until(lambda: len(h.rec.samples(0)) == 301, WITHIN_S, "all 300 DDATA")
        assert h.rec.values(0) == [-1.0, *map(float, range(300))]  # all, in order
        n = h.node("e1")
        assert (n["seq"], n["gaps"], n["rebirths"], n["messages"]) == (sent[-1], 0, 0, 302)
        assert ncmd.messages == []


async def test_reordering_inside_the_timeout_is_accepted(mosquitto: Mosquitto) -> None:
    async with (
        running_host(mosquitto) as h,
        Listener(mosquitto, ["spBv1.0/g1/NCMD/#"]) as ncmd,
        RawEdge(mosquitto) as e1,
    ):
        await e1.nbirth()
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        await e1.ddata("press", m(1, DataType.Double, 2.0), seq=2)
        await e1.ddata("press", m(1, DataType.Double, 3.0), seq=3)
        await e1.ddata("press", m(1, DataType.Double, 5.0), seq=5)  # early: held back
        await e1.ddata("press", m(1, DataType.Double, 4.0), seq=4)  # the missing one
        await e1.ddata("press", m(1, DataType.Double, 6.0), seq=6)
        await wait_until(lambda: len(h.rec.samples(0)) == 6, WITHIN_S, "every DDATA")
        assert h.rec.values(0) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # in seq order
        n = h.node("e1")
        assert (n["seq"], n["gaps"], n["rebirths"]) == (6, 0, 0)
        node = h.host.nodes[("g1", "e1")]
        assert node.pending == {} and node.gap_since is None  # nothing left to time out
        assert ncmd.messages == []
        assert h.rec.with_quality(0, Quality.BAD_STALE) == []


async def test_a_gap_times_out_into_stale_signals_and_a_rebirth(mosquitto: Mosquitto) -> None:
    force = MetricSpec("Force", DataType.Double, alias=1, unit="kN")
    temp = MetricSpec("Temp", DataType.Float, alias=2)
    async with (
        running_host(mosquitto) as h,
        Listener(mosquitto, ["spBv1.0/g1/NCMD/#"]) as ncmd,
        EdgeNode(
            mqtt_options(mosquitto, "e1"),
            "g1",
            "e1",
            devices={"press": [force, temp]},
            primary_host=HOST_ID,
            initial={("press", "Force"): 1.0, ("press", "Temp"): 20.0},
        ) as edge,
    ):
        await edge.wait_born()
        await wait_until(lambda: h.has("press.temp"), WITHIN_S, "the DBIRTH")
        temp_id = h.sid("press.temp")
        await edge.publish("press", {"Force": 2.0}, timestamp_ms=T0_MS + 1)  # seq 2
        edge.next_seq()  # seq 3 is lost on the way
        sent_at = time.time_ns()
        await edge.publish("press", {"Force": 4.0, "Temp": 21.0}, timestamp_ms=T0_MS + 2)
        await wait_until(lambda: edge.births == 2, WITHIN_S, "the rebirth")
        await wait_until(lambda: len(h.rec.samples(temp_id)) == 4, WITHIN_S, "the new DBIRTH")

        # What came after the gap is kept, then the node's signals go stale, then the rebirth.
        f = h.rec.samples(0)
        assert [(s.value, s.quality) for s in f[:3]] == [
            (1.0, Quality.GOOD),
            (2.0, Quality.GOOD),
            (4.0, Quality.GOOD),
        ]
        assert math.isnan(f[3].value) and f[3].quality == Quality.BAD_STALE
        assert f[4][1:3] == (4.0, Quality.GOOD)  # the rebirth carries the last value
        stale = f[3].ts
        assert stale - sent_at >= 0.3 * 1e9  # only after reorder_timeout_s
        t = h.rec.samples(temp_id)
        assert [s.quality for s in t] == [
            Quality.GOOD,
            Quality.GOOD,
            Quality.BAD_STALE,
            Quality.GOOD,
        ]
        assert t[2].ts == stale
        [request] = rebirth_requests(ncmd, "e1")
        assert decode_payload(request.payload).timestamp is not None
        assert edge.rebirth_requests == 1
        n = h.node("e1")
        assert (n["gaps"], n["rebirths"], n["births"], n["seq"]) == (1, 1, 4, 1)


# -- rebirth requests -----------------------------------------------------------------------


async def test_data_before_birth_asks_for_a_rebirth(mosquitto: Mosquitto) -> None:
    async with (
        running_host(mosquitto) as h,
        Listener(mosquitto, ["spBv1.0/g1/NCMD/#"]) as ncmd,
        RawEdge(mosquitto, "e1") as e1,
        RawEdge(mosquitto, "e2") as e2,
    ):
        await e1.ddata("press", m(1, DataType.Double, 5.0), seq=7)  # we joined late
        await e2.dbirth("d", m("Level", DataType.Double, 1.0, alias=1), ts=T0_MS)  # no NBIRTH
        await wait_until(
            lambda: len(rebirth_requests(ncmd, "e1")) == 1 == len(rebirth_requests(ncmd, "e2")),
            WITHIN_S,
            "a rebirth request to e1 and to e2",
        )
        for edge in ("e1", "e2"):
            n = h.node(edge)
            assert (n["born"], n["online"], n["messages"], n["rebirths"]) == (False, False, 1, 1)
            assert (n["metrics"], n["births"], n["signals"]) == (0, 0, 0)
        assert h.rec.batches == []  # nothing is invented from data we cannot place
        assert len(h.site.signals) == 4  # the site file's own, nothing learned
        # The edge node does as asked: its data is taken from then on.
        await e1.nbirth()
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        await e1.ddata("press", m(1, DataType.Double, 2.0))
        await wait_until(lambda: h.rec.values(0) == [1.0, 2.0], WITHIN_S, "the data after birth")
        n = h.node("e1")
        assert (n["born"], n["online"], n["rebirths"], n["messages"]) == (True, True, 1, 4)
        assert len(rebirth_requests(ncmd, "e1")) == 1
        assert all(is_rebirth_request(msg) for msg in ncmd.messages)


async def test_an_unknown_alias_or_name_asks_for_a_rebirth(mosquitto: Mosquitto) -> None:
    async with (
        running_host(mosquitto) as h,
        Listener(mosquitto, ["spBv1.0/g1/NCMD/#"]) as ncmd,
        RawEdge(mosquitto, "e1") as e1,
        RawEdge(mosquitto, "e3") as e3,
    ):
        await e1.nbirth()
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        await e3.nbirth(m("Level", DataType.Double, 1.0))
        await wait_until(lambda: h.has("sp_g1_e3.level"), WITHIN_S, "the births")
        await e1.ddata("press", m(1, DataType.Double, 2.0), m(99, DataType.Double, 3.0))
        await e3.ndata(m("Level", DataType.Double, 2.0), m("Volume", DataType.Double, 9.0))
        await wait_until(
            lambda: len(rebirth_requests(ncmd, "e1")) == 1 == len(rebirth_requests(ncmd, "e3")),
            WITHIN_S,
            "a rebirth request to e1 and to e3",
        )
        await wait_until(lambda: h.rec.values(0) == [1.0, 2.0], WITHIN_S, "the known metric")
        assert h.rec.values(h.sid("sp_g1_e3.level")) == [1.0, 2.0]
        assert not h.has("sp_g1_e3.volume")  # only births create signals
        for edge in ("e1", "e3"):
            n = h.node(edge)
            assert (n["rebirths"], n["gaps"], n["decode_errors"], n["born"]) == (1, 0, 0, True)
        assert len(ncmd.messages) == 2


# -- deaths ---------------------------------------------------------------------------------


async def test_ndeath_with_the_current_bdseq_marks_node_and_devices_not_connected(
    mosquitto: Mosquitto,
) -> None:
    async with (
        running_host(mosquitto) as h,
        RawEdge(mosquitto) as e1,
        RawEdge(mosquitto, "e3") as e3,
    ):
        await e1.nbirth(m("Uptime", DataType.UInt32, 1, alias=10), bd_seq=3)
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        await e1.dbirth("aux", m("Level", DataType.Double, 2.0, alias=2))
        await e3.nbirth(m("Other", DataType.Double, 3.0))
        await wait_until(lambda: h.has("sp_g1_e3.other"), WITHIN_S, "the births")
        ids = [h.sid("sp_g1_e1.uptime"), 0, h.sid("sp_g1_e1_aux.level")]
        before = time.time_ns()
        await e1.ndeath(3, ts=T0_MS)
        await wait_until(
            lambda: all(h.rec.with_quality(i, Quality.BAD_NOT_CONNECTED) for i in ids),
            WITHIN_S,
            "every signal of e1 bad",
        )
        after = time.time_ns()
        bad = [h.rec.with_quality(i, Quality.BAD_NOT_CONNECTED) for i in ids]
        assert all(len(b) == 1 and math.isnan(b[0].value) for b in bad)
        assert len({b[0].ts for b in bad}) == 1  # one instant: the death's
        assert before <= bad[0][0].ts <= after
        assert h.rec.values(h.sid("sp_g1_e3.other")) == [3.0]  # another node: untouched
        assert h.rec.samples(h.sid("sp_g1_e3.other"))[0].quality == Quality.GOOD
        n = h.node("e1")
        assert (n["online"], n["born"], n["deaths"], n["stale_deaths"]) == (False, False, 1, 0)
        assert [d["online"] for d in n["devices"]] == [False, False]
        assert h.node("e3")["online"] is True


async def test_an_ndeath_with_an_older_bdseq_is_stale_and_ignored(mosquitto: Mosquitto) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth(bd_seq=3)
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        await wait_until(lambda: h.rec.values(0) == [1.0], WITHIN_S, "the birth")
        # The Will of a previous session, delivered late (Sparkplug 3.0 §: bdSeq must match).
        await e1.ndeath(2)
        await wait_until(lambda: h.node("e1")["stale_deaths"] == 1, WITHIN_S, "the stale NDEATH")
        await e1.ddata("press", m(1, DataType.Double, 2.0))
        await wait_until(lambda: h.rec.values(0) == [1.0, 2.0], WITHIN_S, "data, still taken")
        assert [s.quality for s in h.rec.samples(0)] == [Quality.GOOD, Quality.GOOD]
        n = h.node("e1")
        assert (n["online"], n["deaths"], n["stale_deaths"], n["bd_seq"]) == (True, 0, 1, 3)


async def test_ddeath_marks_only_that_devices_signals(mosquitto: Mosquitto) -> None:
    async with running_host(mosquitto) as h, RawEdge(mosquitto) as e1:
        await e1.nbirth(m("Uptime", DataType.UInt32, 1, alias=10))
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        await e1.dbirth(
            "aux",
            m("Level", DataType.Double, 2.0, alias=2),
            m("Flow", DataType.Double, 0.0, alias=3),
        )
        await wait_until(lambda: h.has("sp_g1_e1_aux.flow"), WITHIN_S, "the births")
        level, flow, uptime = (
            h.sid("sp_g1_e1_aux.level"),
            h.sid("sp_g1_e1_aux.flow"),
            h.sid("sp_g1_e1.uptime"),
        )
        await e1.ddeath("aux", ts=T0_MS + 50)
        await e1.ddata("press", m(1, DataType.Double, 3.0))
        await wait_until(
            lambda: h.rec.values(0) == [1.0, 3.0], WITHIN_S, "data of the other device"
        )
        for i in (level, flow):
            [good, bad] = h.rec.samples(i)
            assert good.quality == Quality.GOOD
            assert (bad.ts, bad.quality) == (ns(T0_MS + 50), Quality.BAD_NOT_CONNECTED)
            assert math.isnan(bad.value)
        assert [s.quality for s in h.rec.samples(uptime)] == [Quality.GOOD]
        n = h.node("e1")
        assert (n["online"], n["deaths"], n["gaps"], n["seq"]) == (True, 1, 0, 4)
        assert n["devices"] == [
            {"device": "aux", "online": False, "signals": 2},
            {"device": "press", "online": True, "signals": 1},
        ]


async def test_the_will_of_an_edge_node_that_vanishes_marks_its_signals_bad(
    mosquitto: Mosquitto,
) -> None:
    specs = [MetricSpec("Force", DataType.Double, alias=1), MetricSpec("Temp", DataType.Float, 2)]
    specs[1] = MetricSpec("Temp", DataType.Float, alias=2)
    async with (
        running_host(mosquitto) as h,
        TcpProxy(mosquitto.host, mosquitto.port) as proxy,
        EdgeNode(
            mqtt_options(proxy, "e1"),
            "g1",
            "e1",
            devices={"press": specs},
            initial={("press", "Force"): 1.0, ("press", "Temp"): 20.0},
        ) as edge,
    ):
        await edge.wait_born()
        await wait_until(lambda: h.has("press.temp"), WITHIN_S, "the DBIRTH")
        temp = h.sid("press.temp")
        await edge.publish("press", {"Force": 2.0})
        await wait_until(lambda: h.rec.values(0) == [1.0, 2.0], WITHIN_S, "the DDATA")
        before = time.time_ns()
        proxy.cut()  # no DISCONNECT reaches the broker: it publishes the NDEATH Will
        await wait_until(
            lambda: (
                h.rec.with_quality(0, Quality.BAD_NOT_CONNECTED)
                and h.rec.with_quality(temp, Quality.BAD_NOT_CONNECTED)
            ),
            WITHIN_S,
            "the Will's NDEATH",
        )
        [bad] = h.rec.with_quality(0, Quality.BAD_NOT_CONNECTED)
        assert bad.ts >= before and math.isnan(bad.value)
        # Ours reconnects and births again: good values again.
        await wait_until(lambda: edge.births == 2, WITHIN_S, "the new birth")
        await wait_until(lambda: len(h.rec.samples(temp)) == 3, WITHIN_S, "the new DBIRTH")
        assert [s.quality for s in h.rec.samples(0)] == [
            Quality.GOOD,
            Quality.GOOD,
            Quality.BAD_NOT_CONNECTED,
            Quality.GOOD,
        ]
        assert h.rec.values(0) == [1.0, 2.0, 2.0]
        n = h.node("e1")
        assert (n["deaths"], n["stale_deaths"], n["online"], n["births"]) == (1, 0, True, 4)


# -- the host's STATE -----------------------------------------------------------------------


def _states(listener: Listener) -> list[tuple[bool, int]]:
    return [(state(msg)["online"], state(msg)["timestamp"]) for msg in listener.on(STATE_TOPIC)]


async def _retained_state(where: Mosquitto, client_id: str) -> Message:
    """What a new subscriber to the host's STATE topic gets: the retained message."""
    async with Listener(where, [STATE_TOPIC], client_id) as late:
        await wait_until(lambda: late.messages, WITHIN_S, "the retained STATE")
        msg = late.messages[0]
        assert msg.retain
        return msg


async def test_state_online_is_retained_and_a_clean_exit_says_offline(
    mosquitto: Mosquitto,
) -> None:
    started_ms = int(time.time() * 1000)
    async with running_host(mosquitto) as h:
        online = await _retained_state(mosquitto, "late-1")
        assert h.host.stats()["state_topic"] == STATE_TOPIC
    offline = await _retained_state(mosquitto, "late-2")
    assert (online.retain, online.qos, offline.retain, offline.qos) == (True, 1, True, 1)
    t = state(online)["timestamp"]
    assert state(online) == {"online": True, "timestamp": t}
    assert state(offline) == {"online": False, "timestamp": t}  # Sparkplug 3.0: the same T
    assert started_ms - 5_000 <= t <= int(time.time() * 1000)
    # The host published online, then offline on the way out, and nothing after: not an online
    # in answer to the echo of its own offline (it is subscribed to its STATE topic).
    log = mosquitto.log_text()
    published = f"Received PUBLISH from f5g-host-{HOST_ID} (d0, q1, r1, m"
    assert log.count(published) == 2
    online_at, offline_at = (i for i in range(len(log)) if log.startswith(published, i))
    assert f"'{STATE_TOPIC}', ... ({len(online.payload)} bytes)" in log[online_at:offline_at]
    assert f"'{STATE_TOPIC}', ... ({len(offline.payload)} bytes)" in log[offline_at:]


async def test_the_will_says_offline_when_the_hosts_connection_dies(mosquitto: Mosquitto) -> None:
    async with AsyncExitStack() as line:
        proxy = await line.enter_async_context(TcpProxy(mosquitto.host, mosquitto.port))
        async with (
            Listener(mosquitto, [STATE_TOPIC], "watch") as watch,
            running_host(proxy) as h,
        ):
            await wait_until(lambda: watch.messages, WITHIN_S, "STATE online")
            [(online, t)] = _states(watch)
            assert online is True
            proxy.cut()  # a pulled cable: the broker publishes the host's Will
            await wait_until(
                lambda: len(_states(watch)) >= 3 and h.host.client.connected,
                WITHIN_S,
                "the Will, then online again after the reconnect",
            )
            states = _states(watch)
            assert states[:2] == [(True, t), (False, t)]
            assert set(states[2:]) == {(True, t)}  # online again, with the same timestamp
            assert h.host.stats()["session_losses"] == 1
            await line.aclose()  # the line stays down: the host cannot come back
            await wait_until(lambda: _states(watch)[-1] == (False, t), WITHIN_S, "the Will")
            will = await _retained_state(mosquitto, "late")
            assert will.retain and state(will) == {"online": False, "timestamp": t}
            assert not h.host.client.connected


async def test_an_old_offline_state_is_answered_with_online(mosquitto: Mosquitto) -> None:
    """A Will left by a previous run of the host (Sparkplug 3.0: it must say online again)."""
    async with MqttClient(mqtt_options(mosquitto, "old")) as old:
        await old.publish(
            STATE_TOPIC, b'{"online": false, "timestamp": 1000}', qos=1, retain=True
        )
    async with Listener(mosquitto, [STATE_TOPIC], "watch") as watch, running_host(mosquitto):
        await wait_until(lambda: _states(watch)[-1][0] is True, WITHIN_S, "online again")
        now = await _retained_state(mosquitto, "late")
        assert state(now)["online"] is True and state(now)["timestamp"] != 1000
