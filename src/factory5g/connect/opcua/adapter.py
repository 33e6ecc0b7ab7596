"""The OPC UA client adapter: one session per endpoint, monitored items into columnar Batches.

For every endpoint of the site (``[[opcua]]`` entries and inline ``opc.tcp://`` bindings):

* **Session**: security policy None, or Basic256Sha256 with Sign or SignAndEncrypt, the client
  certificate and key from the site file; the server certificate must be one of the ``trust``
  files (pinned), else the session is refused naming its thumbprint. Anonymous, or user name and
  password (the password read from the environment variable ``password_env``, never logged).
* **Subscription**: one per endpoint at ``publishing_ms``, one monitored item per bound signal
  at its binding's ``sampling_ms`` (OPC 10000-4 §5.12). The server's queue per item holds what is
  sampled between two publishes, so no sample is lost to a slow publishing interval. Each
  NotificationMessage (one Publish response) becomes ONE Batch: the server's SourceTimestamp when
  present, else the time of arrival; qualities and values as :mod:`.convert` documents.
* **Items the server refuses** (unknown node id, bad attribute...): one log line naming the
  endpoint, its URL and the node, a BAD sample for that signal, counted in ``bad_items``; the
  other items keep working.
* **Loss**: the socket closes, the asyncua watchdog's probe fails, or no Publish response (data
  or keep-alive) arrives within three keep-alive periods: the endpoint's signals get one
  ``BAD_NOT_CONNECTED`` sample (once per transition), and the adapter reconnects with backoff
  (0.1 s doubling to 10 s), re-creating the session, the subscription and its items.
* **Writes and calls**: ``write(signal, value)`` converts the value to the node's DataType (read
  once per node and cached) and returns the server's status name; ``call(endpoint, object,
  method, args)`` converts the arguments to the method's InputArguments types. Bad status codes
  raise :class:`OpcUaStatusError` naming the endpoint, the node and the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import numpy as np
from asyncua import ua
from asyncua.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.node import Node
from asyncua.crypto import security_policies
from asyncua.crypto.uacrypto import CertProperties
from asyncua.ua.status_codes import get_name_and_doc
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from factory5g.aio import cancel_and_wait
from factory5g.connect.base import UnknownTargetError, WriteResult, WriteValue
from factory5g.connect.opcua.convert import (
    ConversionError,
    datetime_ns,
    quality_of,
    sample_value,
    to_variant,
    variant_type_of,
    writable_types,
)
from factory5g.connect.opcua.errors import (
    OpcUaConnectionError,
    OpcUaError,
    OpcUaSecurityError,
    OpcUaStatusError,
    OpcUaUnknownEndpointError,
    OpcUaValueError,
)
from factory5g.connect.opcua.security import (
    Credentials,
    first_certificate,
    load_credentials,
    thumbprint,
)
from factory5g.connect.opcua.session import (
    CONNECTION_ERRORS,
    close,
    describe,
    describe_status,
    quiet_connection_loss,
)
from factory5g.model import Site
from factory5g.model.endpoints import Bound, Served, opcua_endpoints
from factory5g.model.site import DataType, OpcUaBinding, OpcUaEndpoint
from factory5g.stream import Batch, Bus, BusClosedError, Event, Quality

__all__ = ["OpcUaAdapter"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 10.0
_ITEMS_PER_REQUEST: Final = 500  # CreateMonitoredItems per call (servers cap operations)
_KEEPALIVE_S: Final = 1.0  # a keep-alive when nothing changed for about this long
_LIFETIME_S: Final = 60.0  # the server drops a subscription nobody publishes for this long
_KEEPALIVE_MISSES: Final = 3  # Publish silence of this many keep-alive periods: session lost
_MAX_QUEUE: Final = 100  # monitored item queue size cap
_QUEUE_HORIZON_MS: Final = 1000.0  # each item's server queue holds this much sampling time
_LOG_REPEAT_S: Final = 60.0  # the same failure is logged at warning level this often at most
_SESSION_TIMEOUT_MS: Final = 60_000
_SEVERITY_BAD: Final = 0x80000000

_MODES: Final = {
    "sign": ua.MessageSecurityMode.Sign,
    "sign_encrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_POLICIES: Final = {"Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256}
# ActivateSession / CreateSession refusals that are about who we are, not about the network.
_IDENTITY_CODES: Final = frozenset(
    {
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenInvalid,
        ua.StatusCodes.BadIdentityTokenRejected,
        ua.StatusCodes.BadCertificateInvalid,
        ua.StatusCodes.BadCertificateUntrusted,
        ua.StatusCodes.BadCertificateUriInvalid,
        ua.StatusCodes.BadCertificateTimeInvalid,
        ua.StatusCodes.BadSecurityChecksFailed,
        ua.StatusCodes.BadSecurityPolicyRejected,
        ua.StatusCodes.BadSecurityModeRejected,
    }
)


@dataclass(slots=True)
class _Item:
    """One bound signal: a monitored item whose client handle is its index."""

    signal: int
    path: str
    node: str  # the node id as the site file spells it
    sampling_ms: float
    text: bool  # a string signal: values travel as Events
    node_id: ua.NodeId | None = None  # resolved for the current session
    monitored: bool = False  # the server accepted the item in the current session
    warned: bool = False  # an unsupported value was logged


class _Endpoint:
    """One server: its session loop, monitored items, caches and counters."""

    def __init__(
        self, key: str, served: Served[OpcUaEndpoint, OpcUaBinding], site: Site, bus: Bus
    ) -> None:
        self.key = key
        self.settings = served.settings
        self.url = served.settings.url
        self.site = site
        self.bus = bus
        self.items = [self._item(b) for b in served.signals]
        self.ids = np.array([it.signal for it in self.items], np.int32)
        self.credentials: Credentials | None = None
        self.client: Client | None = None  # set while the session is up and subscribed
        self.connected = False
        self._bad_sent = False  # BAD_NOT_CONNECTED published since the last connect
        self._lost: str | None = None  # why the current session is over, set by callbacks
        self._subscription_id: int | None = None
        self._keepalive_deadline_s = math.inf
        self._last_publish = 0.0
        self._in_callback = False  # _on_publish is handing a Batch to the bus
        self._data_types: dict[str, ua.VariantType] = {}
        self._arg_types: dict[str, list[ua.VariantType | None]] = {}
        self._last_log: tuple[str, float] = ("", -math.inf)
        self.sessions = 0
        self.bad_items = 0
        self.notifications = 0
        self.samples = 0
        self.unsupported = 0
        self.errors = 0
        self.writes = 0
        self.calls = 0
        self.last_error: str | None = None
        self.last_data: float | None = None
        self.revised_publishing_ms: float | None = None

    @staticmethod
    def _item(b: Bound[OpcUaBinding]) -> _Item:
        return _Item(
            b.id, b.path, b.binding.node, b.binding.sampling_ms, b.signal.type is DataType.STRING
        )

    def where(self, node: str | None = None) -> str:
        """How logs name a place: endpoint id, URL and node."""
        at = (
            f"OPC UA server {self.url}"
            if self.key == self.url
            else f"OPC UA endpoint {self.key!r} ({self.url})"
        )
        return f"{at} node {node}" if node else at

    # -- the session loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, watch; on any loss publish BAD_NOT_CONNECTED and reconnect."""
        delay = BACKOFF_MIN_S
        while True:
            was_up = False
            try:
                client = await self._open()
                try:
                    await self._subscribe(client)
                    self._up(client)
                    was_up = True
                    await self._watch(client)
                finally:
                    self.client = None
                    self.connected = False
                    self._subscription_id = None
                    await close(client, self.settings.timeout_s)
            except OpcUaError as exc:
                self._failed(exc, exc.args[0])
            except CONNECTION_ERRORS as exc:
                self._failed(exc, f"{self.where()}: {describe(exc)}")
            except Exception as exc:
                # A bug of ours or asyncua's must not end this endpoint's session loop quietly.
                self.errors += 1
                self.last_error = f"{self.where()}: unexpected {describe(exc)}"
                log.exception("%s: unexpected failure; reconnecting", self.where())
            await self._publish_not_connected()
            if was_up:
                delay = BACKOFF_MIN_S  # a session that worked: retry at once, then back off
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _open(self) -> Client:
        s = self.settings
        creds = self.credentials
        assert creds is not None, "credentials are loaded in OpcUaAdapter.__aenter__"
        client = Client(s.url, timeout=s.timeout_s)
        client.name = client.description = "factory5g"
        client.application_uri = creds.application_uri
        client.product_uri = "urn:factory5g"
        client.session_timeout = _SESSION_TIMEOUT_MS
        if s.security != "none":
            await self._secure(client, creds)
        if creds.username is not None:
            client.set_user(creds.username)
        if creds.password is not None:
            client.set_password(creds.password)
        try:
            await asyncio.wait_for(client.connect(auto_reconnect=False), 5 * s.timeout_s)
        except UaStatusCodeError as exc:
            await close(client, s.timeout_s)
            if exc.code in _IDENTITY_CODES:
                who = f"user {creds.username!r}" if creds.username else "the anonymous identity"
                raise OpcUaSecurityError(
                    self.key, s.url, f"the server refused {who}: {describe(exc)}"
                ) from exc
            raise OpcUaConnectionError(self.key, s.url, describe(exc)) from exc
        except CONNECTION_ERRORS as exc:
            await close(client, s.timeout_s)
            # asyncua's CreateSession looks for an endpoint of our security mode and policy
            # among the server's, and says only this when there is none.
            if s.security == "none" and "No matching endpoints" in str(exc):
                raise OpcUaSecurityError(
                    self.key,
                    s.url,
                    "the server offers no endpoint with security none: set security "
                    "(sign or sign_encrypt), cert_file, key_file and trust",
                ) from exc
            raise OpcUaConnectionError(self.key, s.url, describe(exc)) from exc
        return client

    async def _secure(self, client: Client, creds: Credentials) -> None:
        """Pin the server certificate, then set up the secure channel with our certificate."""
        s = self.settings
        mode = _MODES[s.security]
        policy = _POLICIES[s.policy]
        try:
            endpoints = await client.connect_and_get_server_endpoints()
        except CONNECTION_ERRORS as exc:
            raise OpcUaConnectionError(
                self.key, s.url, f"GetEndpoints failed: {describe(exc)}"
            ) from exc
        offer = [
            e for e in endpoints if e.SecurityMode == mode and e.SecurityPolicyUri == policy.URI
        ]
        if not offer:
            offered = sorted(
                {
                    f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}"
                    for e in endpoints
                }
            )
            raise OpcUaSecurityError(
                self.key,
                s.url,
                f"the server offers no {s.policy} {mode.name} endpoint "
                f"(it offers: {', '.join(offered) or 'none'})",
            )
        der = first_certificate(offer[0].ServerCertificate or b"")
        tp = thumbprint(der) if der else None
        if tp is None or tp not in creds.trusted:
            raise OpcUaSecurityError(
                self.key,
                s.url,
                f"server certificate {tp or '(none)'} is not trusted: it is none of trust = "
                f"[{', '.join(creds.trust_files)}]. If this is the right server, save its "
                "certificate with `factory5g connect browse URL --save-cert FILE` and add the "
                "file to trust",
                thumbprint=tp,
            )
        assert creds.cert_der is not None
        assert creds.key is not None
        await client.set_security(
            policy,
            CertProperties(creds.cert_der, "der"),
            CertProperties(creds.key, creds.key_format),
            server_certificate=CertProperties(creds.trusted[tp], "der"),
            mode=mode,
        )

    async def _subscribe(self, client: Client) -> None:
        """One subscription and every item, in chunks; report the items the server refuses."""
        self._lost = None
        if not self.items:
            return
        await self._resolve(client)
        pub_ms = self.settings.publishing_ms
        keepalive = max(1, math.ceil(_KEEPALIVE_S * 1000 / pub_ms))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=pub_ms,
            # OPC 10000-4 §5.13.2: the lifetime count must be at least 3x the keep-alive count
            RequestedLifetimeCount=max(3 * keepalive, math.ceil(_LIFETIME_S * 1000 / pub_ms)),
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        result = await client.uaclient.create_subscription(params, self._on_publish)
        self._subscription_id = result.SubscriptionId
        self.revised_publishing_ms = result.RevisedPublishingInterval
        period_s = result.RevisedPublishingInterval * max(1, result.RevisedMaxKeepAliveCount) / 1e3
        self._keepalive_deadline_s = _KEEPALIVE_MISSES * period_s + self.settings.timeout_s
        self._last_publish = time.monotonic()
        bad: list[int] = []
        todo = [(h, it) for h, it in enumerate(self.items) if it.node_id is not None]
        for first in range(0, len(todo), _ITEMS_PER_REQUEST):
            chunk = todo[first : first + _ITEMS_PER_REQUEST]
            requests = [self._item_request(h, it, pub_ms) for h, it in chunk]
            results = await client.uaclient.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=result.SubscriptionId,
                    ItemsToCreate=requests,
                    TimestampsToReturn=ua.TimestampsToReturn.Source,
                )
            )
            for (h, it), res in zip(chunk, results, strict=True):
                it.monitored = res.StatusCode.is_good()
                if not it.monitored:
                    bad.append(h)
                    self._item_refused(it, describe_status(res.StatusCode.value))
        bad.extend(h for h, it in enumerate(self.items) if it.node_id is None)
        self.bad_items = len(bad)
        if bad:
            ids = [self.items[h].signal for h in bad]
            await self._publish(Batch.of(ids, time.time_ns(), math.nan, Quality.BAD))

    async def _resolve(self, client: Client) -> None:
        """Parse each item's node id; ``nsu=`` namespace URIs through the namespace array."""
        namespaces: list[str] | None = None
        for it in self.items:
            it.monitored = False
            try:
                parsed = ua.NodeId.from_string(it.node)
            except (ValueError, UaError) as exc:
                it.node_id = None
                self._item_refused(it, f"not a node id ({exc})")
                continue
            uri = getattr(parsed, "NamespaceUri", None)
            if uri:
                if namespaces is None:
                    namespaces = await client.get_namespace_array()
                if uri not in namespaces:
                    it.node_id = None
                    self._item_refused(it, f"the server has no namespace {uri!r}")
                    continue
                parsed = ua.NodeId(
                    parsed.Identifier, ua.Int16(namespaces.index(uri)), parsed.NodeIdType
                )
            it.node_id = parsed

    @staticmethod
    def _item_request(handle: int, it: _Item, pub_ms: float) -> ua.MonitoredItemCreateRequest:
        assert it.node_id is not None
        sampling = it.sampling_ms
        # The server keeps what it samples until a Publish response carries it (OPC 10000-4
        # §5.12.1.4): make room for a second's worth (two publishing intervals at least). A
        # Publish request of ours that comes late — the process is busy storing, the network
        # hiccups — then delays samples instead of losing them (bench/_connect_opcua.py).
        horizon_ms = max(_QUEUE_HORIZON_MS, 2 * pub_ms)
        per_horizon = math.ceil(horizon_ms / sampling) if sampling > 0 else _MAX_QUEUE
        queue = min(_MAX_QUEUE, max(2, per_horizon))
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=it.node_id, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=handle,
                SamplingInterval=sampling,
                QueueSize=queue,
                DiscardOldest=True,
            ),
        )

    def _item_refused(self, it: _Item, why: str) -> None:
        self.errors += 1
        self.last_error = f"{self.where(it.node)} ({it.path}): {why}"
        log.warning("%s (signal %s) cannot be monitored: %s", self.where(it.node), it.path, why)

    def _up(self, client: Client) -> None:
        self.client = client
        self.connected = True
        self._bad_sent = False
        self.sessions += 1
        s = self.settings
        log.info(
            "%s: connected (security %s%s), %d items monitored, %d refused",
            self.where(),
            s.security,
            f", user {s.username}" if s.username else "",
            len(self.items) - self.bad_items,
            self.bad_items,
        )

    async def _watch(self, client: Client) -> None:
        """Return (raising) when the session is over: socket closed, watchdog, keep-alive."""
        async with client.subscribe_state() as states:
            while True:
                # The state first: asyncua tells subscriptions BadShutdown when the transport
                # goes, and "connection lost" is what happened then.
                if client.state is not UaClientState.CONNECTED:
                    raise OpcUaConnectionError(self.key, self.url, "connection lost")
                if self._lost is not None:
                    raise OpcUaConnectionError(self.key, self.url, self._lost)
                # Silence counts only while we wait for the server: a callback held up by our
                # own bus (backpressure) is not the server going quiet.
                if self._subscription_id is not None and not self._in_callback:
                    silent = time.monotonic() - self._last_publish
                    if silent > self._keepalive_deadline_s:
                        raise OpcUaConnectionError(
                            self.key,
                            self.url,
                            f"no Publish response for {silent:.1f} s (keep-alive missed)",
                        )
                try:
                    await states.next_change(timeout=min(1.0, self._keepalive_deadline_s / 4))
                except TimeoutError:
                    continue  # time to look at the keep-alive again

    def _failed(self, exc: BaseException, message: str) -> None:
        self.errors += 1
        self.last_error = message
        last, at = self._last_log
        now = time.monotonic()
        # A server that stays away must not flood the log: the same failure once a minute.
        level = logging.WARNING if (message != last or now - at >= _LOG_REPEAT_S) else logging.DEBUG
        if level == logging.WARNING:
            self._last_log = (message, now)
        if isinstance(exc, OpcUaSecurityError):
            level = logging.ERROR if level == logging.WARNING else level
        log.log(level, "%s; reconnecting", message)

    # -- data ---------------------------------------------------------------------------------

    async def _on_publish(self, result: ua.PublishResult) -> None:
        """One Publish response: its notifications as ONE Batch (asyncua awaits this call, so a
        slow bus slows the Publish requests: backpressure reaches the server's queues)."""
        self._last_publish = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return  # a keep-alive
        self._in_callback = True
        try:
            await self._notifications(data)
        finally:
            self._in_callback = False
            self._last_publish = time.monotonic()

    async def _notifications(self, data: Sequence[object]) -> None:
        items = self.items
        n = len(items)
        now = time.time_ns()
        sig: list[int] = []
        ts: list[int] = []
        val: list[float] = []
        qual: list[int] = []
        events: list[Event] = []
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                for mi in notification.MonitoredItems:
                    h = mi.ClientHandle
                    if not 0 <= h < n:
                        continue
                    it = items[h]
                    dv = mi.Value
                    code = dv.StatusCode.value if dv.StatusCode is not None else 0
                    t = datetime_ns(dv.SourceTimestamp) if dv.SourceTimestamp else now
                    v = dv.Value.Value if dv.Value is not None else None
                    if v is None:
                        x = math.nan  # no value: its status says why (Bad)
                    elif it.text:
                        events.append(Event(it.signal, t, v if isinstance(v, str) else str(v)))
                        continue
                    else:
                        got = sample_value(v)
                        if got is None:
                            self._unsupported(it, v)
                            continue
                        x = got
                    sig.append(it.signal)
                    ts.append(t)
                    val.append(x)
                    qual.append(quality_of(code))
            elif isinstance(notification, ua.StatusChangeNotification):
                status = notification.Status
                if status.is_bad():
                    self._lost = (
                        f"subscription ended by the server: {describe_status(status.value)}"
                    )
                    if self.client is not None:
                        self.client.uaclient.notify_transport_lost()  # wakes _watch
        self.notifications += 1
        if not sig and not events:
            return
        self.samples += len(sig) + len(events)
        self.last_data = time.time()
        await self._publish(
            Batch(
                np.array(sig, np.int32),
                np.array(ts, np.int64),
                np.array(val, np.float64),
                np.array(qual, np.uint8),
                tuple(events),
            )
        )

    def _unsupported(self, it: _Item, value: object) -> None:
        self.unsupported += 1
        if not it.warned:
            it.warned = True
            why = f"a {type(value).__name__} value cannot be a sample of {it.path}"
            self.errors += 1
            self.last_error = f"{self.where(it.node)}: {why}"
            log.warning("%s: %s; such values are skipped", self.where(it.node), why)

    async def _publish(self, batch: Batch) -> None:
        # The runtime is stopping when the bus is closed (it closes before the adapters are gone).
        with contextlib.suppress(BusClosedError):
            await self.bus.publish(batch)

    async def _publish_not_connected(self) -> None:
        """The endpoint's signals are not connected: say so once per transition."""
        if self._bad_sent or not len(self.ids):
            self._bad_sent = True
            return
        self._bad_sent = True
        await self._publish(Batch.of(self.ids, time.time_ns(), math.nan, Quality.BAD_NOT_CONNECTED))

    # -- writes and calls -----------------------------------------------------------------------

    def session(self, target: int | str) -> Client:
        client = self.client
        if client is None or not self.connected:
            reason = f"not connected ({self.last_error})" if self.last_error else "not connected"
            raise OpcUaConnectionError(self.key, self.url, reason, target=target)
        return client

    async def request(self, what: Awaitable[T], *, node: str, action: str, target: int | str) -> T:
        """Await a service call, its failures as OpcUa errors (logged, counted)."""
        try:
            # asyncio.timeout, not wait_for: no task of its own for every request
            async with asyncio.timeout(2 * self.settings.timeout_s):
                return await what
        except UaStatusCodeError as exc:
            raise self.status_error(exc.code, node=node, action=action, target=target) from exc
        except CONNECTION_ERRORS as exc:
            err = OpcUaConnectionError(
                self.key, self.url, f"{action} on node {node}: {describe(exc)}", target=target
            )
            self.count(err)
            raise err from exc

    def status_error(
        self, code: int, *, node: str, action: str, target: int | str
    ) -> OpcUaStatusError:
        name, doc = get_name_and_doc(code)
        err = OpcUaStatusError(
            self.key, self.url, node, name, code, action=action, target=target, doc=doc
        )
        self.count(err)
        return err

    def count(self, err: OpcUaError) -> None:
        self.errors += 1
        self.last_error = str(err)
        log.warning("%s", err)

    async def data_type(
        self, client: Client, node: str, node_id: ua.NodeId, target: int | str
    ) -> ua.VariantType:
        """The Variant type a write to ``node`` must carry: its DataType, read once."""
        known = self._data_types.get(node)
        if known is not None:
            return known
        attrs = (ua.AttributeIds.DataType, ua.AttributeIds.Value)
        dvs = await self.request(
            client.uaclient.read(
                ua.ReadParameters(
                    NodesToRead=[ua.ReadValueId(NodeId=node_id, AttributeId=a) for a in attrs]
                )
            ),
            node=node,
            action="write",
            target=target,
        )
        dtype, current = dvs
        if dtype.StatusCode is not None and dtype.StatusCode.is_bad():
            raise self.status_error(
                dtype.StatusCode.value, node=node, action="write", target=target
            )
        declared = dtype.Value.Value if dtype.Value is not None else None
        vtype = variant_type_of(declared) if isinstance(declared, ua.NodeId) else None
        if vtype is None and current.Value is not None:
            vtype = current.Value.VariantType  # abstract DataType (Number...): what it holds now
        if vtype not in writable_types():
            name = vtype.name if vtype is not None else str(declared)
            err = OpcUaValueError(
                self.key,
                self.url,
                node,
                name,
                None,
                "this DataType cannot be written",
                target=target,
            )
            self.count(err)
            raise err
        assert vtype is not None
        self._data_types[node] = vtype
        return vtype

    def forget_type(self, node: str) -> None:
        self._data_types.pop(node, None)

    async def input_types(
        self, client: Client, method: str, method_id: ua.NodeId
    ) -> list[ua.VariantType | None]:
        """The Variant types of a method's InputArguments (OPC 10000-3 §5.7), read once."""
        known = self._arg_types.get(method)
        if known is not None:
            return known
        node = Node(client.uaclient.session, method_id)
        try:
            prop = await node.get_child("0:InputArguments")
            args = await prop.read_value()
        except UaStatusCodeError:
            args = []  # a method without arguments has no InputArguments property
        # Decoded Arguments are asyncua's generated class, not ua.Argument: look at the field.
        data_types = [getattr(a, "DataType", None) for a in args or []]
        types = [variant_type_of(d) if isinstance(d, ua.NodeId) else None for d in data_types]
        self._arg_types[method] = types
        return types

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "url": self.url,
            "security": self.settings.security,
            "connected": self.connected,
            "items": len(self.items),
            "bad_items": self.bad_items,
            "notifications": self.notifications,
            "samples": self.samples,
            "unsupported": self.unsupported,
            "reconnects": max(0, self.sessions - 1),
            "errors": self.errors,
            "last_error": self.last_error,
            "last_data": self.last_data,
            "publishing_ms": self.settings.publishing_ms,
            "revised_publishing_ms": self.revised_publishing_ms,
            "writes": self.writes,
            "calls": self.calls,
        }


class OpcUaAdapter:
    """The site's OPC UA servers, read and written: ``async with OpcUaAdapter(site, bus)``.

    Entering loads every endpoint's certificates and credentials (raising
    :class:`OpcUaSecurityError` naming the file or variable at fault) and starts one session
    task per endpoint; it does not wait for the servers, which may come later.
    """

    name = "opcua"

    def __init__(self, site: Site, bus: Bus) -> None:
        self.site = site
        self.bus = bus
        self.endpoints = {
            key: _Endpoint(key, served, site, bus) for key, served in opcua_endpoints(site).items()
        }
        self._targets: dict[int, tuple[_Endpoint, _Item]] = {
            it.signal: (ep, it) for ep in self.endpoints.values() for it in ep.items
        }
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        quiet_connection_loss()
        for ep in self.endpoints.values():
            ep.credentials = load_credentials(ep.settings, self.site.base_dir)
        for key, ep in self.endpoints.items():
            task = asyncio.create_task(ep.run(), name=f"opcua[{key}]")
            self._tasks.add(task)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait(self._tasks, what="OPC UA adapter")
        self._tasks.clear()

    # -- the Adapter protocol -------------------------------------------------------------------

    async def write(self, signal: int, value: WriteValue) -> WriteResult:
        """Write ``value`` to the signal's node, converted to the node's DataType.

        Returns the server's status name (``"Good"``...); raises OpcUaStatusError for a Bad
        status, OpcUaValueError for a value the DataType cannot hold, OpcUaConnectionError
        without a session, UnknownTargetError for a signal not bound to OPC UA.
        """
        target = self._targets.get(signal)
        if target is None:
            raise UnknownTargetError(signal)
        ep, it = target
        client = ep.session(signal)
        node_id = it.node_id
        if node_id is None:
            raise ep.status_error(
                ua.StatusCodes.BadNodeIdInvalid, node=it.node, action="write", target=signal
            )
        vtype = await ep.data_type(client, it.node, node_id, signal)
        try:
            variant = to_variant(value, vtype)
        except ConversionError as exc:
            err = OpcUaValueError(
                ep.key, ep.url, it.node, vtype.name, value, exc.why, target=signal
            )
            ep.count(err)
            raise err from None
        results = await ep.request(
            client.uaclient.write(
                ua.WriteParameters(
                    NodesToWrite=[
                        ua.WriteValue(
                            NodeId=node_id,
                            AttributeId=ua.AttributeIds.Value,
                            Value=ua.DataValue(Value=variant),
                        )
                    ]
                )
            ),
            node=it.node,
            action="write",
            target=signal,
        )
        status = results[0]
        if status.is_bad():
            if status.value & 0xFFFF0000 == ua.StatusCodes.BadTypeMismatch:
                ep.forget_type(it.node)  # the node changed type: read it again next time
            raise ep.status_error(status.value, node=it.node, action="write", target=signal)
        ep.writes += 1
        return WriteResult(signal, True, status.name)

    async def call(
        self,
        endpoint_id: str,
        object_node: str,
        method_node: str,
        args: Sequence[WriteValue] = (),
    ) -> list[Any]:
        """Call a method of an object on an endpoint; return its output arguments.

        The arguments are converted to the method's InputArguments types (read once). Bad
        status codes raise OpcUaStatusError naming the endpoint, the method and the status.
        """
        ep = self.endpoints.get(endpoint_id)
        if ep is None:
            raise OpcUaUnknownEndpointError(endpoint_id, sorted(self.endpoints))
        client = ep.session(method_node)
        ids: list[ua.NodeId] = []
        for node in (object_node, method_node):
            try:
                ids.append(ua.NodeId.from_string(node))
            except (ValueError, UaError):
                raise ep.status_error(
                    ua.StatusCodes.BadNodeIdInvalid, node=node, action="call", target=method_node
                ) from None
        object_id, method_id = ids
        types = await ep.input_types(client, method_node, method_id)
        variants: list[ua.Variant] = []
        for i, arg in enumerate(args):
            vtype = types[i] if i < len(types) else None
            try:
                variants.append(to_variant(arg, vtype or _guess_type(arg)))
            except ConversionError as exc:
                name = (vtype or _guess_type(arg)).name
                err = OpcUaValueError(
                    ep.key,
                    ep.url,
                    method_node,
                    name,
                    arg,
                    f"argument {i + 1}: {exc.why}",
                    target=method_node,
                )
                ep.count(err)
                raise err from None
        results = await ep.request(
            client.uaclient.call(
                [
                    ua.CallMethodRequest(
                        ObjectId=object_id, MethodId=method_id, InputArguments=variants
                    )
                ]
            ),
            node=method_node,
            action="call",
            target=method_node,
        )
        result = results[0]
        bad_args = [i + 1 for i, s in enumerate(result.InputArgumentResults or []) if s.is_bad()]
        if result.StatusCode.is_bad() or bad_args:
            bad = result.StatusCode.is_bad()
            raise ep.status_error(
                result.StatusCode.value if bad else ua.StatusCodes.BadInvalidArgument,
                node=method_node,
                action="call" + (f" (arguments {bad_args} refused)" if bad_args else ""),
                target=method_node,
            )
        ep.calls += 1
        return [v.Value for v in result.OutputArguments or []]

    def stats(self) -> dict[str, Any]:
        endpoints = [ep.stats() for ep in self.endpoints.values()]
        return {
            "connected": all(e["connected"] for e in endpoints),
            "endpoints": endpoints,
        }


def _guess_type(value: WriteValue) -> ua.VariantType:
    """The Variant type of a method argument whose InputArguments type is unknown."""
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, int):
        return ua.VariantType.Int64
    if isinstance(value, float):
        return ua.VariantType.Double
    return ua.VariantType.String
