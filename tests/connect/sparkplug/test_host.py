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
from factory5g.connect.mqtt import Message, MqttClient, MqttClosedError
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
    STATE_TOPIC,
    T0_MS,
    WITHIN_S,
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

        def published(path: str) -> bool:
            return h.has(path) and bool(h.rec.samples(h.sid(path)) or h.rec.events(h.sid(path)))

        await wait_until(
            lambda: all(published(p) for p in (*paths, "mill.speed", "oven.door", "mill.torque")),
            WITHIN_S,
            "every birth learned and its values published",
        )

        sig = h.site.signals
        force, temp = sig.get("press.force"), sig.get("press.temp")
        assert force.id == 0  # the site file's signal, not a new one
        assert (temp.unit, temp.type, temp.binding) == ("°C", SignalType.FLOAT, "sparkplug")
        assert "g1/e1/press" in temp.description
        assert "'Temp'" in temp.description
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
        assert math.isnan(birth.value)
        assert birth.quality == Quality.BAD
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
        assert ts == t0
        assert ts2 == t2
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
        assert tpl["metrics"][0]["name"] == "Speed"
        assert tpl["metrics"][0]["value"] == 3.0
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
        assert node.pending == {}
        assert node.gap_since is None
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
        assert math.isnan(f[3].value)
        assert f[3].quality == Quality.BAD_STALE
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
    specs = [MetricSpec("Force", DataType.Double, alias=1), MetricSpec("Temp", alias=2)]
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
        assert bad.ts >= before
        assert math.isnan(bad.value)
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
            assert will.retain
            assert state(will) == {"online": False, "timestamp": t}
            assert not h.host.client.connected


async def test_an_old_offline_state_is_answered_with_online(mosquitto: Mosquitto) -> None:
    """A Will left by a previous run of the host (Sparkplug 3.0: it must say online again)."""
    async with MqttClient(mqtt_options(mosquitto, "old")) as old:
        await old.publish(STATE_TOPIC, b'{"online": false, "timestamp": 1000}', qos=1, retain=True)
    async with Listener(mosquitto, [STATE_TOPIC], "watch") as watch, running_host(mosquitto):
        await wait_until(lambda: _states(watch)[-1][0] is True, WITHIN_S, "online again")
        now = await _retained_state(mosquitto, "late")
        assert state(now)["online"] is True
        assert state(now)["timestamp"] != 1000


# -- bad input ------------------------------------------------------------------------------


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)


async def test_bad_input_is_counted_logged_and_survived(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=HOST_LOG)
    async with (
        running_host(mosquitto, max_payload_bytes=300) as h,
        Listener(mosquitto, ["spBv1.0/g1/NCMD/#"]) as ncmd,
        RawEdge(mosquitto, "e1") as e1,
        RawEdge(mosquitto, "e3") as e3,
    ):
        await e1.nbirth()
        await e1.dbirth(
            "press",
            m("Force", DataType.Double, 1.0, alias=1),
            m("Note", DataType.String, "", alias=2),
        )
        await wait_until(lambda: h.rec.values(0) == [1.0], WITHIN_S, "the births")
        ddata = e1.topic(MessageType.DDATA, "press")
        # Malformed protobuf: a truncated metric, a varint that never ends, wire type 7. They
        # are not e1's messages (no seq of its own): injected garbage, not a gap.
        for junk in (b"\x12\x05\x10", b"\x18" + b"\xff" * 11, b"\x0f"):
            await e1.raw(ddata, junk)
        # A well-formed DDATA whose string is not UTF-8: that metric is lost, not its neighbour.
        bad_text = b"\x10\x02\x20\x0c\x7a\x02\xff\xfe"  # alias 2, String, string_value ff fe
        good = b"\x10\x01\x20\x0a\x69" + np.float64(2.0).tobytes()  # alias 1, Double, 2.0
        await e1.raw(
            ddata,
            b"\x08"
            + _varint(T0_MS)
            + b"\x12"
            + bytes([len(bad_text)])
            + bad_text
            + b"\x12"
            + bytes([len(good)])
            + good
            + b"\x18"
            + bytes([e1.next_seq()]),
        )
        # Topics: no edge node, an unknown type, a D* without device, an N* with one, too deep,
        # and not Sparkplug at all (still under our spBv1.0/+/# subscription).
        bad_topics = [
            "spBv1.0/g1/NDATA",
            "spBv1.0/g1/BOGUS/e1",
            "spBv1.0/g1/DDATA/e1",
            "spBv1.0/g1/NDATA/e1/press",
            "spBv1.0/g1/DDATA/e1/press/x",
            "spBv1.0/g1",
        ]
        for topic in bad_topics:
            await e1.raw(topic, b"")
        # Bigger than max_payload_bytes: dropped before decoding (seq not e1's either).
        await e1.ddata("press", m(2, DataType.String, "x" * 400), seq=200)
        # A broken NBIRTH: counted, and the node is asked to try again.
        await e3.raw(e3.topic(MessageType.NBIRTH), b"\x08")
        # The host is still there: a valid DDATA afterwards is taken at once, in sequence.
        await e1.ddata("press", m(1, DataType.Double, 3.0), m(2, DataType.String, "ok"))
        await wait_until(lambda: h.rec.values(0) == [1.0, 2.0, 3.0], WITHIN_S, "the valid DDATA")
        await wait_until(lambda: rebirth_requests(ncmd, "e3"), WITHIN_S, "a rebirth request to e3")

        stats = h.host.stats()
        assert (stats["unknown_topics"], stats["oversized"], stats["connected"]) == (6, 1, True)
        n1, n3 = h.node("e1"), h.node("e3")
        assert (n1["decode_errors"], n1["gaps"], n1["rebirths"], n1["seq"]) == (4, 0, 0, 3)
        assert (n3["decode_errors"], n3["rebirths"], n3["born"]) == (1, 1, False)
        note = h.sid("press.note")
        assert [e.data for e in h.rec.events(note)] == ["", "ok"]
        assert rebirth_requests(ncmd, "e1") == []
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("undecodable payload" in w and ddata in w for w in warnings)
        assert any("ignored message on 'spBv1.0/g1/NDATA'" in w for w in warnings)
        assert any(w.startswith("payload of ") and ddata in w for w in warnings)
        assert all(r.name == HOST_LOG for r in caplog.records if r.levelno >= logging.WARNING)


# -- writes ---------------------------------------------------------------------------------

PRESS = [
    MetricSpec("Force", DataType.Double, alias=1, unit="kN"),
    MetricSpec("Small", DataType.Int8, alias=2),
    MetricSpec("Count", DataType.UInt16, alias=3),
    MetricSpec("Flag", DataType.Boolean, alias=4),
    MetricSpec("Label", DataType.String, alias=5),
    MetricSpec("Blob", DataType.Bytes, alias=6),
    MetricSpec("Total", DataType.UInt64, alias=7),
    MetricSpec("Ratio", DataType.Float),  # no alias: written by name
]
PRESS_INITIAL: dict[tuple[str | None, str], Any] = {
    ("press", "Force"): 1.0,
    ("press", "Small"): 0,
    ("press", "Count"): 0,
    ("press", "Flag"): False,
    ("press", "Label"): "",
    ("press", "Blob"): b"",
    ("press", "Total"): 0,
    ("press", "Ratio"): 0.5,
    (None, "Mode"): 1,
}


async def test_write_sends_a_command_by_alias_with_the_births_datatype(
    mosquitto: Mosquitto,
) -> None:
    commands: list[tuple[str | None, Metric]] = []

    async def on_command(device: str | None, metric: Metric) -> None:
        commands.append((device, metric))

    async with (
        running_host(mosquitto) as h,
        Listener(mosquitto, ["spBv1.0/g1/DCMD/#", "spBv1.0/g1/NCMD/#"]) as cmds,
        EdgeNode(
            mqtt_options(mosquitto, "e1"),
            "g1",
            "e1",
            node_metrics=[MetricSpec("Mode", DataType.Int32, alias=20)],
            devices={"press": PRESS},
            primary_host=HOST_ID,
            on_command=on_command,
            initial=PRESS_INITIAL,
        ),
    ):
        await wait_until(lambda: h.has("press.ratio"), WITHIN_S, "the births")
        sid = {s.name: s.id for s in h.site.signals.for_equipment("press")}
        mode = h.sid("sp_g1_e1.mode")
        writes: list[tuple[int, Any, str | None, Metric]] = [
            (sid["force"], 42.5, "press", Metric(alias=1, datatype=DataType.Double, value=42.5)),
            (sid["small"], -5, "press", Metric(alias=2, datatype=DataType.Int8, value=-5)),
            (sid["small"], 127.0, "press", Metric(alias=2, datatype=DataType.Int8, value=127)),
            (sid["count"], 65535, "press", Metric(alias=3, datatype=DataType.UInt16, value=65535)),
            (sid["flag"], True, "press", Metric(alias=4, datatype=DataType.Boolean, value=True)),
            (sid["flag"], 0, "press", Metric(alias=4, datatype=DataType.Boolean, value=False)),
            (
                sid["label"],
                "lot 7",
                "press",
                Metric(alias=5, datatype=DataType.String, value="lot 7"),
            ),
            (
                sid["total"],
                2**64 - 1,
                "press",
                Metric(alias=7, datatype=DataType.UInt64, value=2**64 - 1),
            ),
            (
                sid["ratio"],
                0.25,
                "press",
                Metric(name="Ratio", datatype=DataType.Float, value=0.25),
            ),
            (mode, -3, None, Metric(alias=20, datatype=DataType.Int32, value=-3)),
        ]
        before_ms = int(time.time() * 1000)
        for signal, value, device, _ in writes:
            result = await h.host.write(signal, value)
            kind = "NCMD" if device is None else "DCMD"
            assert (result.signal, result.ok, result.status) == (signal, True, f"{kind} sent")
        await wait_until(lambda: len(cmds.messages) == len(writes), WITHIN_S, "every command")
        await wait_until(lambda: len(commands) == len(writes), WITHIN_S, "the edge node got them")
        after_ms = int(time.time() * 1000)
        for msg, (_, _, device, metric) in zip(cmds.messages, writes, strict=True):
            topic = "spBv1.0/g1/NCMD/e1" if device is None else f"spBv1.0/g1/DCMD/e1/{device}"
            assert (msg.topic, msg.qos, msg.retain) == (topic, 0, False)
            payload = decode_payload(msg.payload)
            assert payload.metrics == (metric,)  # by alias only, with the birth's datatype
            assert payload.timestamp is not None
            assert before_ms <= payload.timestamp <= after_ms
            assert payload.seq is None  # commands carry no seq
        # Ours fills in the name from the alias before its callback sees the command.
        spec_names = {s.alias: s.name for s in PRESS} | {20: "Mode"}
        assert [(d, c.name, c.value, c.datatype) for d, c in commands] == [
            (d, spec_names.get(x.alias, x.name), x.value, x.datatype) for _, _, d, x in writes
        ]


async def test_writes_that_cannot_be_sent_are_rejected(mosquitto: Mosquitto) -> None:
    async with (
        running_host(mosquitto) as h,
        Listener(mosquitto, ["spBv1.0/g1/DCMD/#", "spBv1.0/g1/NCMD/#"]) as cmds,
    ):
        async with EdgeNode(
            mqtt_options(mosquitto, "e1"),
            "g1",
            "e1",
            devices={"press": PRESS},
            primary_host=HOST_ID,
            initial=PRESS_INITIAL,
        ):
            await wait_until(lambda: h.has("press.ratio"), WITHIN_S, "the births")
            sid = {s.name: s.id for s in h.site.signals.for_equipment("press")}
            rejected: list[tuple[str, Any, str]] = [
                ("small", 128, "128 is outside Int8 [-128, 127]"),
                ("small", -129, "-129 is outside Int8 [-128, 127]"),
                ("count", -1, "-1 is outside UInt16 [0, 65535]"),
                ("count", 65536, "65536 is outside UInt16 [0, 65535]"),
                ("total", 2**64, f"{2**64} is outside UInt64 [0, {2**64 - 1}]"),
                ("small", 1.5, "1.5 is not an integer"),
                ("small", "7", "a number is needed"),
                ("force", "high", "a number is needed"),
                ("flag", "true", "true or false is needed"),
                ("blob", 1, "writing Bytes metrics is not supported"),
            ]
            for name, value, why in rejected:
                with pytest.raises(WriteRejectedError) as exc:
                    await h.host.write(sid[name], value)
                assert (exc.value.signal, exc.value.why) == (sid[name], why)
            for signal in (9999, h.sid("mill.speed")):  # unknown; bound but never born
                with pytest.raises(UnknownTargetError) as unknown:
                    await h.host.write(signal, 1.0)
                assert unknown.value.signal == signal
            await h.host.write(sid["force"], 5.0)  # the only command that went out
            await wait_until(lambda: cmds.messages, WITHIN_S, "the command")
        # The edge node said NDEATH on its way out: writes to it are refused now.
        await wait_until(lambda: not h.node("e1")["online"], WITHIN_S, "the NDEATH")
        with pytest.raises(WriteRejectedError) as exc:
            await h.host.write(sid["force"], 6.0)
        assert exc.value.why == "edge node g1/e1 is offline"
        assert [decode_payload(msg.payload).metrics[0].value for msg in cmds.messages] == [5.0]


async def test_a_write_to_a_dead_device_is_rejected(mosquitto: Mosquitto) -> None:
    async with (
        running_host(mosquitto) as h,
        Listener(mosquitto, ["spBv1.0/g1/DCMD/#"]) as cmds,
        RawEdge(mosquitto) as e1,
    ):
        await e1.nbirth()
        await e1.dbirth("press", m("Force", DataType.Double, 1.0, alias=1))
        await e1.dbirth("aux", m("Level", DataType.Double, 1.0, alias=2))
        await e1.ddeath("press")
        await wait_until(lambda: h.has("sp_g1_e1_aux.level"), WITHIN_S, "the births")
        await wait_until(lambda: h.node("e1")["deaths"] == 1, WITHIN_S, "the DDEATH")
        with pytest.raises(WriteRejectedError) as exc:
            await h.host.write(0, 2.0)
        assert exc.value.why == "device press of edge node g1/e1 is offline"
        await h.host.write(h.sid("sp_g1_e1_aux.level"), 2.0)  # its sibling is still there
        await wait_until(lambda: cmds.messages, WITHIN_S, "the DCMD")
        assert [msg.topic for msg in cmds.messages] == ["spBv1.0/g1/DCMD/e1/aux"]


# -- a broker restart -----------------------------------------------------------------------


async def test_a_broker_restart_mid_stream_loses_nothing_inside_the_host(
    mosquitto: Mosquitto,
) -> None:
    taken: list[Message] = []  # every message the host's MQTT client handed the host
    session_of: dict[int, int] = {}  # number → the edge's MQTT session it was written on
    stop = asyncio.Event()
    specs = [
        MetricSpec("Force", DataType.Double, alias=1),
        MetricSpec("N", DataType.Int64, alias=2),
    ]
    # Ours, without a primary host: it births as soon as it is connected, every time.
    edge = EdgeNode(
        mqtt_options(mosquitto, "e1"),
        "g1",
        "e1",
        devices={"press": specs},
        initial={("press", "Force"): 1.0, ("press", "N"): -1},
    )

    async def publish_numbers() -> None:
        k = 0
        while not stop.is_set():
            try:  # DATA is QoS 0 (Sparkplug 3.0): what the broker never got is simply gone
                await edge.publish("press", {"N": k}, timestamp_ms=T0_MS + k)
                session_of[k] = edge.client.stats()["connects"]
            except MqttClosedError:
                pass
            k += 1
            await asyncio.sleep(0.002)  # the edge's publishing rate, not a wait for state

    def numbers(msgs: list[Message]) -> list[int]:
        return [
            int(x.value)
            for msg in msgs
            if msg.topic == "spBv1.0/g1/DDATA/e1/press"
            for x in decode_payload(msg.payload).metrics
        ]

    async with running_host(mosquitto, spy=taken) as h, edge:
        await wait_until(lambda: h.has("press.n"), WITHIN_S, "the DBIRTH")
        n_id = h.sid("press.n")

        def on_bus() -> list[int]:
            """The DATA samples of N on the bus (a birth's sample has the birth's timestamp)."""
            return [
                int(s.value)
                for s in h.rec.samples(n_id)
                if s.quality == Quality.GOOD and s.ts == ns(T0_MS + int(s.value))
            ]

        publisher = asyncio.create_task(publish_numbers(), name="test-publisher")
        try:
            await wait_until(lambda: len(on_bus()) >= 50, WITHIN_S, "data before the restart")
            lost_at = time.time_ns()
            await mosquitto.restart()
            await wait_until(
                lambda: h.host.client.connected and edge.births >= 2,
                WITHIN_S,
                "the host and the edge node back",
            )
            back_at = time.time_ns()
            await wait_until(
                lambda: sum(session_of.get(k) == 2 for k in on_bus()) >= 50,
                WITHIN_S,
                "data after the restart",
            )
        finally:
            stop.set()
            await asyncio.gather(publisher, return_exceptions=True)
        assert publisher.exception() is None
        await wait_until(
            lambda: h.host.client.stats()["queued"] == 0, WITHIN_S, "the host to take everything"
        )

        # What the broker delivered to the host: the numbers written in the edge's first MQTT
        # session, then those of the second. Of the second, the host must drop what came before
        # it saw the new NBIRTH (it missed the edge's own: the host was not subscribed yet).
        got = numbers(taken)
        old = [k for k in got if session_of[k] == 1]
        new = [k for k in got if session_of[k] == 2]
        assert got == old + new  # one TCP stream each: in order
        ddata = [i for i, msg in enumerate(taken) if msg.topic == "spBv1.0/g1/DDATA/e1/press"]
        last_old = max(i for i in ddata if session_of[numbers([taken[i]])[0]] == 1)
        nbirth = next(
            i for i, msg in enumerate(taken) if i > last_old and msg.topic == "spBv1.0/g1/NBIRTH/e1"
        )
        reborn = numbers(taken[nbirth:])
        # No loss inside the host: everything it took while the node was born is on the bus,
        # once, in order.
        await wait_until(lambda: on_bus() == old + reborn, WITHIN_S, "every number on the bus")
        assert len(old) >= 50
        assert len(reborn) >= 50
        assert set(reborn) <= set(new)
        assert len(taken) == h.host.client.stats()["messages_in"]  # the client held nothing back

        # The session loss made every signal of the node bad, at that instant.
        for signal in (0, n_id):
            [bad] = h.rec.with_quality(signal, Quality.BAD_COMM_FAILURE)
            assert lost_at <= bad.ts <= back_at
            assert math.isnan(bad.value)
        stats = h.host.stats()
        assert (stats["session_losses"], stats["mqtt"]["connects"]) == (1, 2)
        n = h.node("e1")
        assert (n["online"], n["born"], n["gaps"]) == (True, True, 0)
        assert n["births"] >= 4  # NBIRTH + DBIRTH, twice at least
        # After the reconnect the host said online again and asked the known node for a birth.
        log = mosquitto.log_text()
        restarted = log.rindex("mosquitto version")
        assert f"Received PUBLISH from f5g-host-{HOST_ID} (d0, q1, r1" in log[restarted:]
        ncmd = f"Received PUBLISH from f5g-host-{HOST_ID} (d0, q0, r0, m0, 'spBv1.0/g1/NCMD/e1'"
        assert ncmd in log[restarted:]
