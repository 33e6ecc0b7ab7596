"""Writes and method calls through the adapter, read back with a bare asyncua client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from asyncua import ua
from asyncua.client import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from factory5g.connect.base import UnknownTargetError, WriteRejectedError
from factory5g.connect.opcua import (
    OpcUaAdapter,
    OpcUaStatusError,
    OpcUaUnknownEndpointError,
    OpcUaValueError,
)
from factory5g.model import Site
from factory5g.stream import MemoryBus
from tests.connect.opcua.conftest import (
    WITHIN_S,
    LoopThread,
    SharedServer,
    device_site,
    node,
)
from tests.helpers import wait_until

# (signal, type, node) of the device; "ghost" is a node the server does not have.
SIGNALS = [
    ("int16", "int", node("int16")),
    ("uint32", "int", node("uint32")),
    ("float", "float", node("float")),
    ("bool", "bool", node("bool")),
    ("text", "string", node("text")),
    ("double", "float", node("double")),
    ("readonly", "float", node("readonly")),
    ("ghost", "float", node("ghost")),
]


def plc_site(url: str) -> Site:
    return device_site("plc", SIGNALS, opcua=f'[[opcua]]\nid = "plc"\nurl = "{url}"\n')


def sid(site: Site, name: str) -> int:
    return site.signals.get(f"dev.{name}").id


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[tuple[Site, OpcUaAdapter, Client]]:
    """The adapter in session with the shared server, and a bare client to read back with."""
    site = plc_site(url)
    async with MemoryBus() as bus, OpcUaAdapter(site, bus) as adapter, Client(url) as client:
        await wait_until(lambda: adapter.stats()["connected"], WITHIN_S, "a session")
        yield site, adapter, client


async def read(client: Client, name: str) -> Any:
    return await client.get_node(node(name)).read_value()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("int16", -32768, -32768),
        ("int16", 32767.0, 32767),  # an integral float is an integer
        ("uint32", 4_000_000_000, 4_000_000_000),
        ("float", 0.1, float(np.float32(0.1))),  # the Float the node holds
        ("bool", True, True),
        ("bool", 0, False),
        ("text", "rolling", "rolling"),
        ("double", -2.5e-7, -2.5e-7),
    ],
)
async def test_a_write_lands_in_the_server(
    shared_server: SharedServer, name: str, value: Any, expected: Any
) -> None:
    async with connected(shared_server.url) as (site, adapter, client):
        result = await adapter.write(sid(site, name), value)
        assert result.ok is True
        assert result.status == "Good"
        assert result.signal == sid(site, name)
        got = await read(client, name)
        assert got == expected
        assert type(got) is type(expected)
        assert adapter.stats()["endpoints"][0]["writes"] == 1


def test_written_values_read_back_exactly(shared_server: SharedServer) -> None:
    """Hypothesis over the values of each type, through the adapter and back (the adapter and
    the reading client run on a loop of their own: hypothesis calls the test synchronously)."""
    with LoopThread("opcua-test-client") as lt:
        stack = contextlib.AsyncExitStack()
        site, adapter, client = lt.run(stack.enter_async_context(connected(shared_server.url)))
        try:

            def roundtrip(name: str, value: Any) -> Any:
                result = lt.run(adapter.write(sid(site, name), value))
                assert result.status == "Good"
                return lt.run(read(client, name))

            @settings(max_examples=30, deadline=None)
            @given(st.integers(-(2**15), 2**15 - 1))
            def int16(v: int) -> None:
                assert roundtrip("int16", v) == v

            @settings(max_examples=30, deadline=None)
            @given(st.integers(0, 2**32 - 1))
            def uint32(v: int) -> None:
                assert roundtrip("uint32", v) == v

            @settings(max_examples=30, deadline=None)
            @given(st.floats(width=32, allow_nan=False))
            def float32(v: float) -> None:
                assert roundtrip("float", v) == v

            @settings(max_examples=10, deadline=None)
            @given(st.booleans())
            def boolean(v: bool) -> None:
                assert roundtrip("bool", v) is v

            @settings(max_examples=30, deadline=None)
            @given(st.text())
            def text(v: str) -> None:
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    with pytest.raises(OpcUaValueError, match="not valid Unicode"):
                        lt.run(adapter.write(sid(site, "text"), v))
                    return
                assert roundtrip("text", v) == v

            for check in (int16, uint32, float32, boolean, text):
                check()
        finally:
            lt.run(stack.aclose())


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("int16", 40000, r"40000 is outside Int16 \[-32768, 32767\]"),
        ("int16", 1.5, "1.5 is not an integer"),
        ("uint32", -1, r"outside UInt32 \[0, 4294967295\]"),
        ("uint32", "12", "a number is needed"),
        ("float", 1e39, "outside Float"),
        ("bool", 2, "not a Boolean"),
        ("text", 12, "text is needed"),
    ],
)
async def test_values_that_do_not_fit_are_refused(
    shared_server: SharedServer, name: str, value: Any, why: str
) -> None:
    async with connected(shared_server.url) as (site, adapter, client):
        before = await read(client, name)
        with pytest.raises(OpcUaValueError, match=why) as caught:
            await adapter.write(sid(site, name), value)
        err = caught.value
        assert isinstance(err, WriteRejectedError)
        assert err.endpoint == "plc"
        assert err.node == node(name)
        assert err.signal == sid(site, name)
        assert "'plc'" in str(err)
        assert shared_server.url in str(err)
        assert await read(client, name) == before  # nothing went on the wire
        (ep,) = adapter.stats()["endpoints"]
        assert ep["writes"] == 0
        assert ep["errors"] >= 1


async def test_bad_status_codes_are_errors_naming_endpoint_node_and_status(
    shared_server: SharedServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with connected(shared_server.url) as (site, adapter, client):
        with pytest.raises(OpcUaStatusError) as unknown:
            await adapter.write(sid(site, "ghost"), 1.0)
        assert unknown.value.status_name == "BadNodeIdUnknown"
        assert unknown.value.node == node("ghost")
        assert "BadNodeIdUnknown" in str(unknown.value)
        assert node("ghost") in str(unknown.value)
        assert "'plc'" in str(unknown.value)

        with pytest.raises(OpcUaStatusError) as denied:
            await adapter.write(sid(site, "readonly"), 1.0)
        assert denied.value.status_name == "BadUserAccessDenied"
        assert denied.value.code == ua.StatusCodes.BadUserAccessDenied
        assert isinstance(denied.value, WriteRejectedError)
        assert await read(client, "readonly") == 3.0

        with pytest.raises(UnknownTargetError):
            await adapter.write(10_000, 1.0)
        logged = [r.getMessage() for r in caplog.records if r.name.startswith("factory5g")]
        assert any("BadUserAccessDenied" in m and node("readonly") in m for m in logged)


async def test_method_calls(shared_server: SharedServer) -> None:
    async with connected(shared_server.url) as (_, adapter, _client):
        # integers become the Doubles the method's InputArguments ask for
        assert await adapter.call("plc", "ns=2;s=dev", "ns=2;s=dev.Add", [2, 3.5]) == [5.5]
        assert adapter.stats()["endpoints"][0]["calls"] == 1

        with pytest.raises(OpcUaStatusError) as failed:
            await adapter.call("plc", "ns=2;s=dev", "ns=2;s=dev.Fail")
        assert failed.value.status_name == "BadInvalidState"
        assert "call on node ns=2;s=dev.Fail" in str(failed.value)

        with pytest.raises(OpcUaStatusError) as missing:
            await adapter.call("plc", "ns=2;s=dev", "ns=2;s=dev.Nope", [1.0])
        assert missing.value.status_name.startswith("Bad")
        assert missing.value.node == "ns=2;s=dev.Nope"

        with pytest.raises(OpcUaStatusError, match="BadNodeIdInvalid"):
            await adapter.call("plc", "ns=2;s=dev", "not a node id")

        with pytest.raises(OpcUaValueError, match="argument 1: a number is needed"):
            await adapter.call("plc", "ns=2;s=dev", "ns=2;s=dev.Add", ["two", 1.0])

        with pytest.raises(OpcUaUnknownEndpointError, match="known: plc"):
            await adapter.call("nope", "ns=2;s=dev", "ns=2;s=dev.Add", [1, 2])
        assert adapter.stats()["endpoints"][0]["calls"] == 1
