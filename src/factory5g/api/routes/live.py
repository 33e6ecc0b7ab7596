"""``/api/v1/live``: a WebSocket streaming the values of the signals a client subscribes to.

Protocol (JSON text frames)::

    client → {"subscribe": ["f1.speed", 3]}      by path or id; "*" for every signal
    client → {"unsubscribe": ["f1.speed"]}
    server → {"type": "subscribed", "signals": [{id, path, unit, ...}]}
    server → {"type": "samples", "signal": [...], "ts": [...], "value": [...], "quality": [...]}
    server → {"type": "error", "detail": "..."}   (the connection stays open)

    client → {"subscribe_events": ["alarms", "commands"]}     app events, as they happen
    client → {"unsubscribe_events": ["alarms"]}
    server → {"type": "events", "topics": [...]}              the topics now subscribed
    server → {"type": "alarm", "id", "state", "action", "active", "priority", ...}
    server → {"type": "command", "id", "state", "target", "reason_code", "reason", ...}
    server → {"type": "jog", "event": "started"|"released"|"watchdog"|"stopped", "id", ...}
    client → {"heartbeat": "<jog id>"}     keeps a hold-to-run session alive (its owner only)
    server → {"type": "heartbeat", "jog": "<jog id>", "heartbeats": n}

Events are never coalesced; a client that falls more than 1000 events behind loses the oldest
(the alarm history and the audit log keep everything).

Authentication: ``?token=`` (browsers cannot set headers on a WebSocket) or an ``Authorization:
Bearer`` header. Without a valid token the server closes with code 4401; a role too small, 4403.
Slow clients lose the oldest updates, never slow down ingestion (a DROP_OLDEST subscription), and
a client gets at most ``live_max_rate_hz`` messages per second, each coalescing what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from factory5g.api.deps import authenticate
from factory5g.api.problems import Problem
from factory5g.api.routes.signals import columns
from factory5g.api.tokens import TokenStore
from factory5g.apps.control import JogError, Principal
from factory5g.model import UnknownSignalError
from factory5g.model.site import Role
from factory5g.model.tree import signal_dict
from factory5g.runtime import Runtime
from factory5g.stream import Batch, SlowConsumerPolicy

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
EVENT_TOPICS = frozenset({"alarms", "commands"})


def _samples_message(batch: Batch) -> str:
    return json.dumps(
        {"type": "samples", "signal": batch.signal.tolist(), **columns(batch)},
        separators=(",", ":"),
    )


def _parse(text: str) -> dict[str, Any]:
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    if not isinstance(msg, dict):
        raise TypeError("a message must be a JSON object")
    return msg


def _refs(refs: Any, verb: str) -> list[str | int]:
    if not isinstance(refs, list) or not all(isinstance(r, str | int) for r in refs):
        raise TypeError(f"'{verb}' takes a list of signal paths or ids")
    return refs


@router.websocket("/live")
async def live(ws: WebSocket) -> None:
    rt: Runtime = ws.app.state.runtime
    tokens: TokenStore = ws.app.state.tokens
    max_rate: float = ws.app.state.settings.live_max_rate_hz
    token = ws.query_params.get("token")
    header = ws.headers.get("authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    await ws.accept()
    try:
        who = authenticate(tokens, token)
    except Problem as exc:
        await ws.send_json({"type": "error", "status": 401, "detail": exc.detail})
        await ws.close(CLOSE_UNAUTHORIZED, "unauthorized")
        return
    if not who.role.allows(Role.VIEWER):  # every role may watch today; kept for future roles
        await ws.close(CLOSE_FORBIDDEN, "forbidden")
        return

    wanted: set[int] = set()
    topics: set[str] = set()
    sub = rt.bus.subscribe(f"live:{who.name}", maxsize=64, policy=SlowConsumerPolicy.DROP_OLDEST)
    listener = rt.events.listen(EVENT_TOPICS)

    async def send_latest(ids: list[int]) -> None:
        if ids:
            batch = await rt.store.latest(ids)
            if len(batch):
                await ws.send_text(_samples_message(batch))

    async def handle(text: str) -> None:
        msg = _parse(text)
        if "subscribe" in msg:
            refs = msg["subscribe"]
            if refs in ("*", ["*"]):
                infos = list(rt.site.signals)
            else:
                infos = [rt.site.signals.get(r) for r in _refs(refs, "subscribe")]
            new = [i.id for i in infos if i.id not in wanted]
            wanted.update(i.id for i in infos)
            await ws.send_json({"type": "subscribed", "signals": [signal_dict(i) for i in infos]})
            await send_latest(new)
        elif "unsubscribe" in msg:
            refs = _refs(msg["unsubscribe"], "unsubscribe")
            for r in refs:
                wanted.discard(rt.site.signals.get(r).id)
            await ws.send_json({"type": "unsubscribed", "signals": refs})
        elif "subscribe_events" in msg or "unsubscribe_events" in msg:
            adding = "subscribe_events" in msg
            names = msg["subscribe_events" if adding else "unsubscribe_events"]
            if not isinstance(names, list) or not set(names) <= EVENT_TOPICS:
                raise TypeError(f"event topics are a list of {sorted(EVENT_TOPICS)}")
            if adding:
                topics.update(names)
            else:
                topics.difference_update(names)
            await ws.send_json({"type": "events", "topics": sorted(topics)})
        elif "heartbeat" in msg:
            if rt.control is None:
                raise TypeError("the control app is not running")
            principal = Principal(who.id, who.name, who.role)
            jog = rt.control.heartbeat(str(msg["heartbeat"]), principal)
            await ws.send_json({"type": "heartbeat", "jog": jog.id, "heartbeats": jog.heartbeats})
        else:
            raise TypeError(
                "expected {'subscribe': [...]}, {'unsubscribe': [...]}, "
                "{'subscribe_events': [...]}, {'unsubscribe_events': [...]} or {'heartbeat': id}"
            )

    async def reader() -> None:
        while True:
            text = await ws.receive_text()
            try:
                await handle(text)
            except (ValueError, TypeError, UnknownSignalError, JogError) as exc:
                await ws.send_json({"type": "error", "detail": str(exc)})

    async def event_sender() -> None:
        while True:
            event = await listener.get()
            if event.get("topic") in topics:
                out = {k: v for k, v in event.items() if k != "topic"}
                await ws.send_text(json.dumps(out, separators=(",", ":"), default=str))

    async def sender() -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / max_rate
        async for first in sub:
            # Historical (store-and-forward) samples are not live values.
            pending = [first] if not first.historical else []
            while (more := sub.get_nowait()) is not None:
                if not more.historical:
                    pending.append(more)
            if wanted and pending:
                batch = Batch.concat(pending)
                ids = np.fromiter(wanted, dtype=np.int32, count=len(wanted))
                mine = batch.take(np.isin(batch.signal, ids))
                if len(mine):
                    await ws.send_text(_samples_message(mine))
            # Rate limit: updates arriving meanwhile queue up (and are coalesced next time).
            t_next = loop.time() + period
            await asyncio.sleep(max(0.0, t_next - loop.time()))

    tasks = [
        asyncio.create_task(reader(), name="f5g-live-reader"),
        asyncio.create_task(sender(), name="f5g-live-sender"),
        asyncio.create_task(event_sender(), name="f5g-live-events"),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            error = t.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect):
                log.warning("live connection of %s ended: %r", who.name, error)
    finally:
        sub.close()
        listener.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close()
