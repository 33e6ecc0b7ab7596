"""The event hub: app events (alarm transitions, command states) to whoever listens.

Events are small JSON-compatible dicts with a ``topic`` (``"alarms"``, ``"commands"``) and a
``type``. Listeners get bounded queues that drop their oldest events when they fall behind: a
slow WebSocket client never slows an app down (the history and the audit log keep everything).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = ["EventHub", "EventListener"]

Event = dict[str, Any]


class EventListener:
    """A bounded queue of events of some topics; ``await get()``; ``close()`` when done."""

    def __init__(self, hub: EventHub, topics: Iterable[str], maxsize: int) -> None:
        self.topics = frozenset(topics)
        self.maxsize = maxsize
        self.dropped = 0
        self._hub = hub
        self._items: deque[Event] = deque()
        self._ready = asyncio.Event()

    def offer(self, event: Event) -> None:
        if event.get("topic") not in self.topics:
            return
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
        self._items.append(event)
        self._ready.set()

    async def get(self) -> Event:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def get_nowait(self) -> Event | None:
        return self._items.popleft() if self._items else None

    def close(self) -> None:
        self._hub._listeners.discard(self)


class EventHub:
    """Publish events to every listener of their topic (in-process, no I/O, never blocks)."""

    def __init__(self) -> None:
        self._listeners: set[EventListener] = set()
        self.published = 0

    def publish(self, event: Event) -> None:
        self.published += 1
        for listener in tuple(self._listeners):
            listener.offer(event)

    def listen(self, topics: Iterable[str], maxsize: int = 1000) -> EventListener:
        listener = EventListener(self, topics, maxsize)
        self._listeners.add(listener)
        return listener
