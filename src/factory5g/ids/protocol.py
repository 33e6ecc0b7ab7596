"""uvicorn's httptools protocol with plain resolutions answered in the parser callback.

``uvicorn.Config(app, http="factory5g.ids.protocol:ResolutionProtocol")`` (``factory5g ids
serve`` does this): a request that :class:`~factory5g.ids.api.HandleFastPath` would answer from
the store — ``GET /api/handles/{handle}``, HTTP/1.1 keep-alive, no query string, no
``Authorization``, no body, every value public — is answered on the transport as soon as it is
parsed, with the bytes the ASGI path would send (status line, uvicorn's ``date`` and ``server``
headers, ``content-type``, ``content-length``, body). No task, scope, ``receive``/``send`` or
event per request: that machinery, not the lookup, was most of the cost of a resolution
(docs/ids.md, the resolution benchmark).

Everything else goes to the ASGI app unchanged (writes, credentials, queries, HEAD, misses,
404, referrals, non-public values, the PostgreSQL store, HTTP/1.0 or ``Connection: close``,
``Expect: 100-continue``, upgrades, an access log, ``root_path``, ``limit_concurrency``). So
does a request that arrives while an earlier request of the same connection is still being
answered by the app: it is queued behind it, so pipelined answers keep their order
(RFC 9112 §9.3.2). A request answered here while the transport's write buffer is full waits
for the ASGI path too (it drains before writing).

There is no cache: each answer reads the store (one SQLite primary-key lookup on the event loop
thread, a few microseconds), so a write committed by any worker process is seen by the next
resolution in every worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from factory5g.ids.api import HandleFastPath

__all__ = ["PROTOCOL", "ResolutionProtocol", "find_fast_path"]

PROTOCOL = "factory5g.ids.protocol:ResolutionProtocol"  # for uvicorn.Config(http=...)

_HANDLES = b"/api/handles/"
# Headers that send a request to the app: credentials (HandleFastPath's rule), a body.
_NOT_PLAIN = frozenset((b"authorization", b"content-length", b"transfer-encoding"))
_JSON_LENGTH = b"content-type: application/json\r\ncontent-length: "


def find_fast_path(app: Any) -> HandleFastPath | None:
    """The :class:`HandleFastPath` in ``app`` or under the middlewares uvicorn wraps it in
    (``ProxyHeadersMiddleware``, ``MessageLoggerMiddleware``: each keeps it as ``.app``)."""
    for _ in range(8):
        if isinstance(app, HandleFastPath):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class ResolutionProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection; plain resolutions answered without the ASGI machinery."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        fast = find_fast_path(self.app)
        # Configurations where the ASGI path does something per request that the answer here
        # would skip: keep them on the ASGI path.
        logs = self.access_log and self.access_logger.isEnabledFor(logging.INFO)
        if logs or self.root_path or self.limit_concurrency is not None:
            fast = None
        self._fast = fast
        self._answer: bytes | None = None  # parsed, answered at on_message_complete
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._head = b""

    def on_headers_complete(self) -> None:
        answer = self._plain_answer() if self._fast is not None else None
        if answer is None:
            super().on_headers_complete()
        else:
            self._answer = answer

    def _plain_answer(self) -> bytes | None:
        url = self.url
        parser = self.parser
        if (
            not url.startswith(_HANDLES)
            or b"?" in url
            or b"#" in url
            or parser.get_method() != b"GET"
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or self.expect_100_continue
            or (self.cycle is not None and not self.cycle.response_complete)
            or self.flow.write_paused
        ):
            return None
        for name, _ in self.headers:
            if name in _NOT_PLAIN:
                return None
        assert self._fast is not None
        return self._fast.answer_sync(url[len(_HANDLES) :])

    def on_body(self, body: bytes) -> None:
        if self._answer is None:  # never reached with an answer: it has no body
            super().on_body(body)

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is None:
            super().on_message_complete()
            return
        self._answer = None
        if not self.transport.is_closing():
            self.transport.write(
                b"".join((self._head_bytes(), str(len(answer)).encode(), b"\r\n\r\n", answer))
            )
        self.on_response_complete()  # as the ASGI cycle does: count it, arm keep-alive

    def _head_bytes(self) -> bytes:
        """Status line and headers up to the content-length value, as uvicorn writes them for
        HandleFastPath's answer (``default_headers`` is a new list each second: the date)."""
        defaults = self.server_state.default_headers
        if defaults is not self._defaults:
            self._defaults = defaults
            self._head = b"".join(
                [
                    STATUS_LINE[200],
                    *(b"%s: %s\r\n" % (name.lower(), value) for name, value in defaults),
                    _JSON_LENGTH,
                ]
            )
        return self._head
