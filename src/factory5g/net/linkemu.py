"""User-space link emulator: a TCP or UDP proxy per emulated device that applies the device's
one-way delay distribution, loss and rate limit from the model, changeable live.

Direction: the proxy sits between the *network side* (the client that connects to the proxy: the
factory5g adapter, at the core) and the *UE side* (the target: the equipment behind the 5G
terminal). Client → target is downlink, target → client is uplink.

TCP carries a byte stream in order, as RLC acknowledged mode does: a chunk is delivered at
``max(arrival + serialisation + delay, previous delivery)`` (head-of-line blocking), and a "lost"
chunk is delivered ``tcp_loss_penalty_ms`` late (the retransmission) instead of dropped. UDP
datagrams are delayed independently and dropped with the loss probability. Offline, TCP holds
its data (the connection stalls, as over a radio link that is gone) and UDP drops it.

:class:`LinkEmulator` owns one proxy per (device, target) and recomputes the profiles from the
plan when the NEF emulator reports a move, a device going offline or a cell losing capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from factory5g.model.load import Site
from factory5g.net.errors import LinkEmulatorError
from factory5g.net.latency import DelayDistribution, LatencyParams, one_way_delay
from factory5g.net.plan import Plan, PlanOptions, plan_site
from factory5g.net.tdd import parse_pattern

__all__ = [
    "ConstantDelay",
    "DelaySampler",
    "LinkEmulator",
    "LinkProfile",
    "LinkProxy",
]

F64 = npt.NDArray[np.float64]
_HIGH_WATER = 4 * 1024 * 1024  # bytes queued per direction before reading pauses
_BATCH = 256  # delays sampled at once
# The event loop wakes timers up to ~1 ms late (epoll rounds its timeout up to a millisecond):
# fire half a millisecond early and send what is due within that, so the error centres on 0.
_EARLY_S = 0.0005


class DelaySampler(Protocol):
    def sample(self, n: int, rng: np.random.Generator) -> F64:
        """``n`` one-way delays in ms; NaN for a lost packet."""
        ...


@dataclass(frozen=True, slots=True)
class ConstantDelay:
    delay_ms: float = 0.0

    def sample(self, n: int, rng: np.random.Generator) -> F64:
        return np.full(n, self.delay_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkProfile:
    dl: DelaySampler = field(default_factory=ConstantDelay)  # client -> target
    ul: DelaySampler = field(default_factory=ConstantDelay)  # target -> client
    loss: float = 0.0  # extra loss on top of the samplers' own (NaN) losses
    rate_dl_mbps: float | None = None
    rate_ul_mbps: float | None = None
    online: bool = True
    tcp_loss_penalty_ms: float = 200.0

    def __post_init__(self) -> None:
        if not 0 <= self.loss <= 1:
            raise LinkEmulatorError(f"loss must be within [0, 1], not {self.loss}")
        for r in (self.rate_dl_mbps, self.rate_ul_mbps):
            if r is not None and r <= 0:
                raise LinkEmulatorError(f"a rate limit must be positive, not {r}")


@dataclass(slots=True)
class PipeStats:
    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    delay_sum_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        mean = self.delay_sum_ms / self.packets if self.packets else None
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "dropped": self.dropped,
            "mean_delay_ms": mean,
        }


class _Pipe:
    """One direction: schedules each chunk's delivery on the event loop's clock."""

    def __init__(
        self,
        proxy: LinkProxy,
        direction: Literal["dl", "ul"],
        send: Callable[[bytes], None],
        *,
        ordered: bool,
    ) -> None:
        self.proxy = proxy
        self.direction = direction
        self.send = send
        self.ordered = ordered
        self.loop = asyncio.get_running_loop()
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued_bytes = 0
        self.link_free_at = 0.0
        self.last_delivery = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.drained = asyncio.Event()
        self.drained.set()
        self._delays: F64 = np.empty(0)
        self._next = 0
        self.closed = False

    def _delay_ms(self) -> float:
        if self._next >= len(self._delays):
            p = self.proxy.profile
            sampler = p.dl if self.direction == "dl" else p.ul
            self._delays = sampler.sample(_BATCH, self.proxy.rng)
            if p.loss > 0:
                lost = self.proxy.rng.random(_BATCH) < p.loss
                self._delays[lost] = np.nan
            self._next = 0
        d = float(self._delays[self._next])
        self._next += 1
        return d

    def resample(self) -> None:
        self._next = len(self._delays)  # the next chunk draws from the new profile

    def push(self, data: bytes) -> None:
        p = self.proxy.profile
        stats = self.proxy.stats[self.direction]
        now = self.loop.time()
        if not p.online and not self.ordered:
            stats.dropped += 1
            return
        d = self._delay_ms()
        if math.isnan(d):
            if not self.ordered:
                stats.dropped += 1
                return
            d = self._delay_ms()
            d = (0.0 if math.isnan(d) else d) + p.tcp_loss_penalty_ms
        rate = p.rate_dl_mbps if self.direction == "dl" else p.rate_ul_mbps
        start = now
        if rate is not None:
            start = max(now, self.link_free_at)
            self.link_free_at = start + len(data) * 8 / (rate * 1e6)
            start = self.link_free_at
        at = start + d / 1000.0
        if self.ordered:
            at = max(at, self.last_delivery)
            self.last_delivery = at
        stats.delay_sum_ms += (at - now) * 1000.0
        self.queue.append((at, data))
        self.queued_bytes += len(data)
        if self.queued_bytes > _HIGH_WATER:
            self.drained.clear()
        if not self.ordered:
            # datagrams are independent: each on its own timer
            self.queue.pop()
            self.queued_bytes -= len(data)
            self.loop.call_at(at - _EARLY_S, self._deliver_one, data)
            return
        self._schedule()

    def _deliver_one(self, data: bytes) -> None:
        if self.closed:
            return
        stats = self.proxy.stats[self.direction]
        stats.packets += 1
        stats.bytes += len(data)
        self.send(data)

    def _schedule(self) -> None:
        if self.timer is not None or not self.queue or not self.proxy.profile.online:
            return
        self.timer = self.loop.call_at(self.queue[0][0] - _EARLY_S, self._flush)

    def _flush(self) -> None:
        self.timer = None
        if self.closed or not self.proxy.profile.online:
            return
        now = self.loop.time()
        stats = self.proxy.stats[self.direction]
        while self.queue and self.queue[0][0] <= now + _EARLY_S:
            _, data = self.queue.popleft()
            self.queued_bytes -= len(data)
            stats.packets += 1
            stats.bytes += len(data)
            self.send(data)
        if self.queued_bytes <= _HIGH_WATER:
            self.drained.set()
        self._schedule()

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.drained.set()


class _UdpUpstream(asyncio.DatagramProtocol):
    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self.on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_data(data)


class _UdpFront(asyncio.DatagramProtocol):
    def __init__(self, proxy: LinkProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.proxy._udp_from_client(data, addr)


class LinkProxy:
    """``async with LinkProxy(host, 0, target_host, target_port, profile) as p: p.port``."""

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        target_host: str,
        target_port: int,
        profile: LinkProfile | None = None,
        *,
        protocol: Literal["tcp", "udp"] = "tcp",
        seed: int | None = None,
    ) -> None:
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.target = (target_host, target_port)
        self.profile = profile or LinkProfile()
        self.protocol = protocol
        self.rng = np.random.default_rng(seed)
        self.stats = {"dl": PipeStats(), "ul": PipeStats()}
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._udp_front: asyncio.DatagramTransport | None = None
        self._udp_peers: dict[Any, tuple[asyncio.DatagramTransport, _Pipe, _Pipe]] = {}
        self._pipes: set[_Pipe] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle
    async def __aenter__(self) -> LinkProxy:
        loop = asyncio.get_running_loop()
        try:
            if self.protocol == "tcp":
                self._server = await asyncio.start_server(
                    self._on_client, self.listen_host, self.listen_port
                )
                self.port = self._server.sockets[0].getsockname()[1]
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpFront(self), local_addr=(self.listen_host, self.listen_port)
                )
                self._udp_front = transport
                self.port = transport.get_extra_info("sockname")[1]
        except OSError as exc:
            raise LinkEmulatorError(
                f"cannot listen on {self.listen_host}:{self.listen_port}: {exc.strerror}"
            ) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.close()
        for w in list(self._writers):
            w.close()  # the pumps see end of file and end their connections
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                    await t
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        for transport, _, _ in self._udp_peers.values():
            transport.close()
        self._udp_peers.clear()
        if self._udp_front is not None:
            self._udp_front.close()
            self._udp_front = None

    def set_profile(self, profile: LinkProfile) -> None:
        """Apply a new profile now: new delays for the next chunks, held data released online."""
        was_online = self.profile.online
        self.profile = profile
        for pipe in self._pipes:
            pipe.resample()
            if profile.online and not was_online:
                pipe._schedule()

    # -- TCP
    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return  # the target refuses: the client sees the connection close
            self._writers.add(up_writer)
            for sw in (writer, up_writer):
                _nodelay(sw)  # the emulated delay, not Nagle's, decides when bytes leave
            self.connections += 1
            dl = _Pipe(self, "dl", up_writer.write, ordered=True)
            ul = _Pipe(self, "ul", writer.write, ordered=True)
            self._pipes |= {dl, ul}
            other = asyncio.create_task(self._pump(up_reader, ul), name="linkemu-ul")
            self._tasks.add(other)
            try:
                await self._pump(reader, dl)
            finally:
                other.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                    await other
                self._tasks.discard(other)
                for p in (dl, ul):
                    p.close()
                    self._pipes.discard(p)
        finally:
            ends: list[asyncio.StreamWriter | None] = [writer, up_writer]
            for w in ends:
                if w is not None:
                    w.close()
                    self._writers.discard(w)
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, pipe: _Pipe) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                # deliver what is in flight before the half-close
                while pipe.queue and not pipe.closed:
                    pipe.drained.clear()
                    await asyncio.sleep(max(0.0, pipe.queue[-1][0] - pipe.loop.time()) + 0.001)
                return
            pipe.push(data)
            if not pipe.drained.is_set():
                await pipe.drained.wait()

    # -- UDP
    def _udp_from_client(self, data: bytes, addr: Any) -> None:
        peer = self._udp_peers.get(addr)
        if peer is None:
            task = asyncio.create_task(self._udp_open(addr, data), name="linkemu-udp-open")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        peer[1].push(data)

    async def _udp_open(self, addr: Any, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        front = self._udp_front
        if front is None:
            return
        holder: list[_Pipe] = []
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpUpstream(lambda d: holder[0].push(d)), remote_addr=self.target
        )
        dl = _Pipe(self, "dl", transport.sendto, ordered=False)
        ul = _Pipe(self, "ul", lambda d: front.sendto(d, addr), ordered=False)
        holder.append(ul)
        self._pipes |= {dl, ul}
        self._udp_peers[addr] = (transport, dl, ul)
        dl.push(first)


def _nodelay(w: asyncio.StreamWriter) -> None:
    import socket

    sock = w.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- the emulator of a whole site -------------------------------------------------------------


@dataclass(slots=True)
class _DeviceLink:
    device: str
    cell: str
    online: bool = True
    guaranteed: bool = True
    proxies: dict[tuple[str, int, str, bool], LinkProxy] = field(default_factory=dict)


class LinkEmulator:
    """One proxy per emulated device and target, with the device's profile from the plan.

    The runtime calls :meth:`front` with the address an adapter would connect to and gives the
    adapter the proxy's address instead; :meth:`on_event` (a NEF emulator listener) keeps every
    profile in step with moves, outages and capacity changes.
    """

    def __init__(
        self,
        site: Site,
        plan: Plan | None = None,
        *,
        latency: LatencyParams | None = None,
        listen_host: str = "127.0.0.1",
        seed: int | None = None,
    ) -> None:
        self.site = site
        self.plan = plan or plan_site(site, PlanOptions())
        self.latency = latency or self.plan.options.latency
        self.listen_host = listen_host
        self.seed = seed
        self.cells = {c.id: c for c in site.file.network.cell}
        self.factor = dict.fromkeys(self.cells, 1.0)
        flows_by_device: dict[str, list[Any]] = {}
        for f in self.plan.flows:
            flows_by_device.setdefault(f.device, []).append(f)
        self._flows = flows_by_device
        self.links = {
            d.id: _DeviceLink(
                d.id,
                next((f.moved_to or f.cell for f in flows_by_device.get(d.id, [])), None)
                or d.cell
                or self.plan.cells[0].id,
            )
            for d in site.file.device
        }
        self._closed = False

    async def __aenter__(self) -> LinkEmulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for link in self.links.values():
            for proxy in link.proxies.values():
                await proxy.aclose()
            link.proxies.clear()

    async def front(
        self,
        device_id: str,
        target_host: str,
        target_port: int,
        protocol: Literal["tcp", "udp"] = "tcp",
        *,
        ue_is_client: bool = False,
    ) -> tuple[str, int]:
        """The (host, port) a client should connect to instead of ``target``.

        By default the client is on the network side (an adapter reaching equipment behind the
        UE: client → target is downlink). ``ue_is_client`` turns it round, for equipment that
        connects out through its UE (a Sparkplug edge node to the broker: client → target is
        uplink)."""
        link = self.links.get(device_id)
        if link is None:
            raise LinkEmulatorError(
                f"no device {device_id!r} in the site; known: " + ", ".join(self.links)
            )
        key = (target_host, target_port, protocol, ue_is_client)
        proxy = link.proxies.get(key)
        if proxy is None:
            seed = None if self.seed is None else self.seed + len(link.proxies)
            proxy = LinkProxy(
                self.listen_host,
                0,
                target_host,
                target_port,
                self.profile(device_id, ue_is_client=ue_is_client),
                protocol=protocol,
                seed=seed,
            )
            await proxy.__aenter__()
            link.proxies[key] = proxy
        return self.listen_host, proxy.port

    # -- profiles from the model
    def _load(self, cell: str, direction: str, guaranteed: bool) -> float:
        cp = self.plan.cell(cell)
        if guaranteed:
            base = cp.load_gbr_ul if direction == "UL" else cp.load_gbr_dl
        else:
            base = cp.load_ul if direction == "UL" else cp.load_dl
        extra = sum(
            (f.ul_mbps if direction == "UL" else f.dl_mbps)
            for dev, link in self.links.items()
            if link.cell == cell
            for f in self._flows.get(dev, [])
            if (f.moved_to or f.cell) != cell
        )
        cap = cp.capacity_ul_mbps if direction == "UL" else cp.capacity_dl_mbps
        load = base + (extra / cap if cap else 0.0)
        f = self.factor.get(cell, 1.0)
        return load / f if f > 0 else math.inf

    def _dist(
        self, cell: str, direction: Literal["UL", "DL"], guaranteed: bool
    ) -> DelayDistribution:
        c = self.cells[cell]
        params = replace(
            self.latency,
            scs_khz=c.scs_khz,
            ul_grant=c.ul_grant,
            bler=c.bler,
            max_harq_tx=c.max_harq_tx,
            load=min(self._load(cell, direction, guaranteed), 0.98),
        )
        pattern = parse_pattern(c.tdd_pattern, c.special_slot) if c.duplex == "tdd" else None
        return one_way_delay(pattern, direction, params)

    def profile(self, device_id: str, *, ue_is_client: bool = False) -> LinkProfile:
        link = self.links[device_id]
        flows = self._flows.get(device_id, [])
        guaranteed = link.guaranteed and any(f.gbr and f.status != "rejected" for f in flows)
        demand_ul = sum(f.ul_mbps for f in flows)
        demand_dl = sum(f.dl_mbps for f in flows)
        rates: dict[str, float | None] = {}
        for direction, demand in (("UL", demand_ul), ("DL", demand_dl)):
            load = self._load(link.cell, direction, guaranteed=False)
            # Over capacity, the scheduler gives each device its share: the demand / load.
            rates[direction] = max(demand / load, 0.008) if load > 1 and demand > 0 else None
            if load > 1 and demand == 0:
                rates[direction] = 0.064
        dl, ul = self._dist(link.cell, "DL", guaranteed), self._dist(link.cell, "UL", guaranteed)
        if ue_is_client:  # the proxy's "dl" pipe carries client → target: here the uplink
            return LinkProfile(
                dl=ul, ul=dl, rate_dl_mbps=rates["UL"], rate_ul_mbps=rates["DL"], online=link.online
            )
        return LinkProfile(
            dl=dl, ul=ul, rate_dl_mbps=rates["DL"], rate_ul_mbps=rates["UL"], online=link.online
        )

    def _refresh(self, devices: list[str]) -> None:
        for d in devices:
            link = self.links[d]
            for key, proxy in link.proxies.items():
                proxy.set_profile(self.profile(d, ue_is_client=key[3]))

    def on_event(self, event: Any) -> None:
        """A :class:`~factory5g.net.nef.emulator.NetEvent` listener."""
        if self._closed:
            return
        kind = getattr(event, "kind", None)
        device = getattr(event, "device", None)
        cell = getattr(event, "cell", None)
        if device is not None and device not in self.links:
            return
        if kind == "moved" and device and cell in self.cells:
            old = self.links[device].cell
            self.links[device].cell = cell
            self._refresh([d for d, link in self.links.items() if link.cell in (old, cell)])
        elif kind in ("offline", "online") and device:
            self.links[device].online = kind == "online"
            self._refresh([device])
        elif kind == "qos" and device:
            self.links[device].guaranteed = bool(event.guaranteed)
            self._refresh([device])
        elif kind == "capacity" and cell in self.cells:
            self.factor[cell] = float(event.factor)
            self._refresh([d for d, link in self.links.items() if link.cell == cell])

    def kpis(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for d, link in self.links.items():
            p = self.profile(d)
            out[d] = {
                "cell": link.cell,
                "online": link.online,
                "guaranteed": link.guaranteed,
                "model_ul_ms": _pct(p.ul),
                "model_dl_ms": _pct(p.dl),
                "rate_ul_mbps": p.rate_ul_mbps,
                "rate_dl_mbps": p.rate_dl_mbps,
                "proxies": [
                    {
                        "target": f"{k[0]}:{k[1]}",
                        "protocol": k[2],
                        "ue_is_client": k[3],
                        "port": px.port,
                        "connections": px.connections,
                        "dl": px.stats["dl"].as_dict(),
                        "ul": px.stats["ul"].as_dict(),
                    }
                    for k, px in link.proxies.items()
                ],
            }
        return out


def _pct(s: DelaySampler) -> dict[str, float] | None:
    if isinstance(s, DelayDistribution):
        return {k: round(v, 3) for k, v in s.percentiles().items()}
    return None
