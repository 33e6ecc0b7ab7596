"""The link emulator: measured delays follow the model (two-sample Kolmogorov–Smirnov), rate
limits, outages and live changes from the NEF emulator."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from factory5g.model import Site
from factory5g.net.errors import LinkEmulatorError
from factory5g.net.latency import LatencyParams, one_way_delay
from factory5g.net.linkemu import ConstantDelay, LinkEmulator, LinkProfile, LinkProxy
from factory5g.net.nef import NefEmulator
from tests.helpers import wait_until

# 15 kHz, 10-slot pattern: delays spread over ~5-30 ms, far above the event loop's timer jitter
WIDE = one_way_delay("DDDDDDDSUU", "UL", LatencyParams(scs_khz=15, bler=0.1), special="6:4:4")


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The two-sample KS statistic D and its critical value at α = 0.001."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    d = float(
        np.max(
            np.abs(
                np.searchsorted(a, grid, "right") / len(a)
                - np.searchsorted(b, grid, "right") / len(b)
            )
        )
    )
    c_alpha = math.sqrt(-math.log(0.001 / 2) / 2)
    return d, c_alpha * math.sqrt((len(a) + len(b)) / (len(a) * len(b)))


class UdpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.arrivals.append((asyncio.get_running_loop().time(), data))
        assert self.transport is not None
        self.transport.sendto(b"ack" + data, addr)


@pytest.fixture
async def udp_target() -> AsyncIterator[tuple[UdpSink, int]]:
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(UdpSink, local_addr=("127.0.0.1", 0))
    try:
        yield sink, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def test_udp_delays_follow_the_model(udp_target: tuple[UdpSink, int]) -> None:
    sink, port = udp_target
    loop = asyncio.get_running_loop()
    profile = LinkProfile(dl=WIDE, ul=ConstantDelay(0))
    async with LinkProxy("127.0.0.1", 0, "127.0.0.1", port, profile, protocol="udp", seed=7) as p:
        client, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", p.port)
        )
        n = 300
        try:
            for i in range(n):
                client.sendto(struct.pack("!dI", loop.time(), i))
                await asyncio.sleep(0.002)  # the traffic's own pacing, not a wait for state
            await wait_until(
                lambda: len(sink.arrivals) + p.stats["dl"].dropped >= n, 10, "datagrams"
            )
        finally:
            client.close()
    measured = np.array([(t - struct.unpack("!dI", d)[0]) * 1000 for t, d in sink.arrivals])
    model = WIDE.sample(5000, np.random.default_rng(1))
    model = model[~np.isnan(model)]
    d, critical = ks_2samp(measured, model)
    assert d < critical, f"KS D={d:.3f} >= {critical:.3f}"
    assert abs(np.median(measured) - WIDE.quantile(0.5)) < 2.0


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def tcp_echo() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_tcp_delays_follow_the_model() -> None:
    """One way, network to UE: the target stamps each message's arrival. A stream is delivered in
    order, so the model's prediction is ``arrival_i = max(sent_i + delay_i, arrival_(i-1))`` with
    the delays drawn from the distribution; measured and predicted delays must agree."""
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, float]] = []

    async def target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.readexactly(8)
                arrivals.append((struct.unpack("!d", data)[0], loop.time()))
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(target, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    profile = LinkProfile(dl=WIDE, ul=ConstantDelay(0), tcp_loss_penalty_ms=0)
    n = 400
    try:
        async with LinkProxy("127.0.0.1", 0, "127.0.0.1", port, profile, seed=3) as p:
            _reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            try:
                for _ in range(n):
                    writer.write(struct.pack("!d", loop.time()))
                    await writer.drain()
                    await asyncio.sleep(0.005)  # the traffic's own pacing
                await wait_until(lambda: len(arrivals) >= n, 10, "messages")
            finally:
                writer.close()
                await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    sent = np.array([a[0] for a in arrivals])
    measured = (np.array([a[1] for a in arrivals]) - sent) * 1000
    rng = np.random.default_rng(2)
    predicted = []
    for _ in range(10):  # ten streams with the same send times, delays from the model
        d = WIDE.sample(n, rng)
        d = np.where(np.isnan(d), 0.0, d)
        due = np.maximum.accumulate(sent * 1000 + d)
        predicted.append(due - sent * 1000)
    d_stat, critical = ks_2samp(measured, np.concatenate(predicted))
    assert d_stat < critical, f"KS D={d_stat:.3f} >= {critical:.3f}"
    assert p.stats["dl"].packets >= n


async def test_rate_limit_and_outage(tcp_echo: int) -> None:
    loop = asyncio.get_running_loop()
    profile = LinkProfile(rate_dl_mbps=8.0)  # 250 kB take 0.25 s
    async with LinkProxy("127.0.0.1", 0, "127.0.0.1", tcp_echo, profile) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        try:
            start = loop.time()
            writer.write(b"y" * 250_000)
            await reader.readexactly(250_000)
            assert loop.time() - start >= 0.24
            # offline: the link holds the data...
            p.set_profile(LinkProfile(online=False))
            writer.write(b"held")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 0.3)
            # ...and delivers it when the UE is back
            p.set_profile(LinkProfile(online=True))
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
        finally:
            writer.close()
            await writer.wait_closed()


async def test_udp_offline_drops(udp_target: tuple[UdpSink, int]) -> None:
    sink, port = udp_target
    loop = asyncio.get_running_loop()
    async with LinkProxy("127.0.0.1", 0, "127.0.0.1", port, LinkProfile(), protocol="udp") as p:
        client, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", p.port)
        )
        try:
            client.sendto(b"one")
            await wait_until(lambda: len(sink.arrivals) == 1, 5, "first datagram")
            p.set_profile(LinkProfile(online=False))
            client.sendto(b"two")
            await wait_until(lambda: p.stats["dl"].dropped == 1, 5, "the drop")
            assert len(sink.arrivals) == 1
        finally:
            client.close()


def test_bad_profiles() -> None:
    with pytest.raises(LinkEmulatorError, match="loss"):
        LinkProfile(loss=1.5)
    with pytest.raises(LinkEmulatorError, match="rate limit"):
        LinkProfile(rate_ul_mbps=0)


async def test_emulator_follows_the_nef(steel: Site, tcp_echo: int) -> None:
    async with NefEmulator(steel) as nef, LinkEmulator(steel, seed=1) as emu:
        nef.listeners.append(emu.on_event)
        host, port = await emu.front("ue-f1-plc", "127.0.0.1", tcp_echo)
        assert (host, port) == await emu.front("ue-f1-plc", "127.0.0.1", tcp_echo)  # reused
        with pytest.raises(LinkEmulatorError, match="no device 'nope'"):
            await emu.front("nope", "127.0.0.1", tcp_echo)
        before = emu.kpis()["ue-f1-plc"]
        assert before["cell"] == "cell-mill"
        assert before["rate_ul_mbps"] is None
        # the mill cell loses almost all its capacity: the PLC's share of it shrinks
        nef.set_capacity("cell-mill", 0.0005)
        after = emu.kpis()["ue-f1-plc"]
        assert after["rate_ul_mbps"] is not None
        assert after["rate_ul_mbps"] < 0.208
        # configured grants keep the uplink delay; the downlink queues behind the load
        assert after["model_dl_ms"]["p99"] > before["model_dl_ms"]["p99"]
        nef.set_capacity("cell-mill", 1.0)
        nef.move("ue-f1-plc", "cell-runout")
        assert emu.kpis()["ue-f1-plc"]["cell"] == "cell-runout"
        nef.set_online("ue-f1-plc", False)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"ping")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 0.3)
            nef.set_online("ue-f1-plc", True)
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        finally:
            writer.close()
            await writer.wait_closed()
        # an edge node dialling out through its UE: the client sends uplink
        _, out_port = await emu.front("ue-f1-plc", "127.0.0.1", tcp_echo, ue_is_client=True)
        assert out_port != port
        out = emu.links["ue-f1-plc"].proxies[("127.0.0.1", tcp_echo, "tcp", True)].profile
        assert out.dl is emu.profile("ue-f1-plc").ul
        k = emu.kpis()["ue-f1-plc"]
        assert k["online"] is True
        assert k["proxies"][0]["connections"] == 1
        assert k["proxies"][0]["dl"]["packets"] >= 1
