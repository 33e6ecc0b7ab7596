"""SignalRegistry, and random valid site documents that load into a dense, unique registry."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import tomli_w
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from factory5g.model import (
    DataType,
    SignalInfo,
    SignalRegistry,
    UnknownSignalError,
    check_text,
    load_text,
)
from factory5g.model.units import UNITS, close_units


@pytest.fixture
def registry() -> SignalRegistry:
    reg = SignalRegistry()
    reg.add("f1", "speed", unit="m/s", min=0, max=12, binding="sim")
    reg.add("f1", "roll_force", unit="MN")
    reg.add("f2", "speed", unit="m/s")
    reg.add("guard", "door_closed", type=DataType.BOOL)
    return reg


def test_ids_are_dense_in_order_of_addition(registry: SignalRegistry) -> None:
    assert len(registry) == 4
    assert [(s.id, s.path) for s in registry] == [
        (0, "f1.speed"),
        (1, "f1.roll_force"),
        (2, "f2.speed"),
        (3, "guard.door_closed"),
    ]
    assert registry.get(0) == SignalInfo(
        0, "f1.speed", "f1", "speed", "m/s", DataType.FLOAT, "", 0, 12, "sim"
    )


def test_add_is_idempotent_and_the_first_definition_wins(registry: SignalRegistry) -> None:
    first = registry.get("f1.roll_force")
    again = registry.add("f1", "roll_force", unit="kN", type=DataType.INT)
    assert again is first
    assert again.unit == "MN"
    assert len(registry) == 4
    new = registry.add("f3", "speed")
    assert new.id == 4  # never reuses an id


def test_get_by_id_path_and_numeric_string(registry: SignalRegistry) -> None:
    assert registry.get(2).path == "f2.speed"
    assert registry.get("f2.speed").id == 2
    assert registry.get("2").path == "f2.speed"
    assert registry.get("0003").path == "guard.door_closed"


@pytest.mark.parametrize("ref", [-1, 4, 10**9, "4", "f1.sped", "", "-1", "f9.speed"])
def test_get_unknown_raises(registry: SignalRegistry, ref: str | int) -> None:
    with pytest.raises(UnknownSignalError) as info:
        registry.get(ref)
    assert info.value.ref == (int(ref) if isinstance(ref, str) and ref.isdecimal() else ref)
    assert isinstance(info.value, KeyError)  # callers may catch KeyError


def test_unknown_path_suggests_close_paths(registry: SignalRegistry) -> None:
    with pytest.raises(UnknownSignalError) as info:
        registry.get("f1.sped")
    assert info.value.suggestions[0] == "f1.speed"
    assert set(info.value.suggestions) <= {"f1.speed", "f2.speed"}
    assert str(info.value).startswith("unknown signal 'f1.sped'; did you mean 'f1.speed'")
    with pytest.raises(UnknownSignalError) as info:
        registry.get(99)
    assert str(info.value) == "unknown signal 99"


@given(ref=st.one_of(st.text(), st.integers()))
@example(ref="²")  # a digit (str.isdigit) that int() does not read
@example(ref="١")  # ARABIC-INDIC DIGIT ONE: a decimal digit int() reads
@settings(max_examples=200)
def test_get_raises_nothing_but_unknown_signal(ref: str | int) -> None:
    reg = SignalRegistry()
    reg.add("a", "b")
    reg.add("a", "c")
    try:
        info = reg.get(ref)
    except UnknownSignalError:
        return
    assert info in list(reg)


def test_membership(registry: SignalRegistry) -> None:
    assert 0 in registry
    assert 3 in registry
    assert 4 not in registry
    assert -1 not in registry
    assert "f1.speed" in registry
    assert "f1" not in registry
    assert 1.5 not in registry


def test_for_equipment_keeps_order(registry: SignalRegistry) -> None:
    assert [s.name for s in registry.for_equipment("f1")] == ["speed", "roll_force"]
    assert registry.for_equipment("nobody") == []


def test_iteration_is_a_snapshot(registry: SignalRegistry) -> None:
    seen = []
    for info in registry:
        seen.append(info.path)
        registry.add("late", f"s{info.id}")
    assert len(seen) == 4
    assert len(registry) == 8


def test_concurrent_adds_give_one_dense_id_per_path() -> None:
    reg = SignalRegistry()
    paths = [(f"eq{i % 7}", f"sig{i % 23}") for i in range(400)]
    start = threading.Barrier(4)
    results: list[list[SignalInfo]] = [[] for _ in range(4)]

    def worker(k: int) -> None:
        start.wait()
        for eq, name in paths[k::2] + paths[::-1]:
            results[k].append(reg.add(eq, name))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    distinct = {f"{eq}.{name}" for eq, name in paths}
    assert len(reg) == len(distinct)
    assert sorted(s.id for s in reg) == list(range(len(distinct)))
    assert {s.path for s in reg} == distinct
    for infos in results:  # every thread got the registry's one object for each path
        assert all(reg.get(i.path) is i for i in infos)


# -- random valid site documents ----------------------------------------------------------------

ID_START = "abcdxyz0189"
ID_REST = "abcdxyz0189_-"
SIG_START = "abcdxyz"
SIG_REST = "abcdxyz019_"


def _name(first: str, rest: str, max_rest: int = 6) -> st.SearchStrategy[str]:
    return st.builds(
        str.__add__, st.sampled_from(first), st.text(st.sampled_from(rest), max_size=max_rest)
    )


equipment_ids = _name(ID_START, ID_REST)
signal_names = _name(SIG_START, SIG_REST)
units = st.sampled_from(sorted(UNITS))
types = st.sampled_from(list(DataType))


@st.composite
def signals(draw: st.DrawFn, address: list[int]) -> dict[str, Any]:
    sig: dict[str, Any] = {"name": draw(signal_names), "unit": draw(units)}
    kind = draw(types)
    if kind is not DataType.FLOAT or draw(st.booleans()):
        sig["type"] = kind.value
    if kind in (DataType.FLOAT, DataType.INT) and draw(st.booleans()):
        lo = draw(st.integers(-1000, 1000))
        sig["min"], sig["max"] = lo, lo + draw(st.integers(1, 1000))
    binding = draw(st.sampled_from(["none", "sim", "modbus", "opcua", "sparkplug"]))
    address[0] += 1  # every bound signal gets its own source
    n = address[0]
    if binding == "sim":
        sig["binding"] = {"kind": "sim", "model": "m", "output": draw(signal_names)}
    elif binding == "modbus":
        sig["binding"] = {"kind": "modbus", "host": "10.0.0.7", "address": n}
    elif binding == "opcua":
        sig["binding"] = {"kind": "opcua", "endpoint": "opc.tcp://plc:4840", "node": f"ns=2;i={n}"}
    elif binding == "sparkplug":
        sig["binding"] = {"kind": "sparkplug", "group": "g", "edge": "e", "metric": f"m{n}"}
    return sig


@st.composite
def site_documents(draw: st.DrawFn) -> dict[str, Any]:
    address = [0]
    ids = draw(st.lists(equipment_ids, max_size=6, unique=True))
    equipment = []
    for eq_id in ids:
        sigs = draw(st.lists(signals(address), max_size=6, unique_by=lambda s: s["name"]))
        eq: dict[str, Any] = {"id": eq_id, "area": "a", "line": draw(st.sampled_from(["l1", "l2"]))}
        if draw(st.booleans()):
            eq["device"] = "ue-1"
        if sigs or draw(st.booleans()):
            eq["signal"] = sigs
        equipment.append(eq)
    doc: dict[str, Any] = {
        "site": {"name": "Random plant", "prefix": "88.118.8"},
        "network": {
            "slice": [{"name": "control", "sst": 2, "sd": "000001"}],
            "cell": [{"id": "c1", "band": "n78", "bandwidth_mhz": 100}],
        },
        "device": [{"id": "ue-1", "imsi": "001010000000001", "slice": "control", "cell": "c1"}],
        "equipment": equipment,
    }
    paths = [
        (f"{e['id']}.{s['name']}", s.get("type", "float"))
        for e in equipment
        for s in e.get("signal", [])
    ]
    if paths:
        alarms = []
        for path, kind in draw(st.lists(st.sampled_from(paths), max_size=3)):
            if kind == "string" or draw(st.booleans()):
                alarms.append({"signal": path, "kind": "stale", "after_s": 5})
            else:
                alarms.append({"signal": path, "kind": "high", "limit": 1.5})
        doc["alarm"] = alarms
        numeric = [p for p, kind in paths if kind != "string"]
        if numeric:
            target = draw(st.sampled_from(numeric))
            lock = draw(st.sampled_from(numeric))
            doc["control"] = {"writable": [{"signal": target, "interlocks": [f"{lock} < 3.5"]}]}
    return doc


def _signal_paths(doc: dict[str, Any]) -> list[str]:
    return [f"{e['id']}.{s['name']}" for e in doc["equipment"] for s in e.get("signal", [])]


@settings(max_examples=60, deadline=None)
@given(site_documents())
def test_random_valid_site_loads_into_a_dense_unique_registry(doc: dict[str, Any]) -> None:
    text = tomli_w.dumps(doc)
    site = load_text(text)
    reg = site.signals
    expected = _signal_paths(doc)
    infos = list(reg)
    assert len(reg) == len(expected)
    assert [s.id for s in infos] == list(range(len(expected)))  # dense
    assert [s.path for s in infos] == expected  # in file order, hence unique
    assert len({s.path for s in infos}) == len(infos)
    declared = [s for e in doc["equipment"] for s in e.get("signal", [])]
    for info, sig in zip(infos, declared, strict=True):
        assert reg.get(info.path) is info
        assert reg.get(info.id) is info
        assert info.unit == sig["unit"]
        assert info.type == DataType(sig.get("type", "float"))
        assert info.binding == (sig["binding"]["kind"] if "binding" in sig else None)
        assert (info.min, info.max) == (sig.get("min"), sig.get("max"))
    assert f"{len(expected)} signals" in site.summary()


@settings(max_examples=40, deadline=None)
@given(site_documents(), st.data())
def test_a_unit_typo_in_a_random_site_is_found_on_its_line(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    signals_ = [
        (i, j) for i, e in enumerate(doc["equipment"]) for j in range(len(e.get("signal", [])))
    ]
    assume(signals_)
    i, j = data.draw(st.sampled_from(signals_))
    bad = data.draw(st.sampled_from(["degc", "Mn", "m/sec", "KWH", "furlong"]))
    doc["equipment"][i]["signal"][j]["unit"] = bad
    text = tomli_w.dumps(doc)
    (problem,) = check_text(text)
    assert problem.path == f"equipment[{i}].signal[{j}].unit"
    assert problem.line is not None
    assert f'unit = "{bad}"' in text.splitlines()[problem.line - 1]
    assert problem.hint is not None
    assert all(repr(u) in problem.hint for u in close_units(bad))
