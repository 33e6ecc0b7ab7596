"""Helpers around asyncua client sessions shared by the adapter and the browse tool."""

from __future__ import annotations

import asyncio
import logging

from asyncua.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.ua.status_codes import get_name_and_doc
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

__all__ = ["CONNECTION_ERRORS", "close", "describe", "describe_status", "quiet_connection_loss"]

log = logging.getLogger(__name__)

# What asyncua raises when the network, the server or a timeout gets in the way.
CONNECTION_ERRORS = (OSError, TimeoutError, ConnectionError, UaError)


def describe_status(code: int) -> str:
    """A status code as ``Name: description``."""
    name, doc = get_name_and_doc(code)
    return f"{name}: {doc}" if doc else name


def describe(exc: BaseException) -> str:
    """A failure in words: asyncua's status errors by name, timeouts as such."""
    if isinstance(exc, UaStatusCodeError):
        return describe_status(exc.code)
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _ConnectionLossFilter(logging.Filter):
    """Demote asyncua's traceback of a Publish request cut by a lost connection to DEBUG.

    asyncua's publish loop logs every failure with ``logger.exception`` (an ERROR with a
    traceback); when the connection is lost, the adapter logs its own line naming the endpoint,
    and reconnects: the traceback says nothing more.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.msg == "Publish iteration crashed; retrying in 1s" and isinstance(
            exc, ConnectionError | OSError | TimeoutError
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = _ConnectionLossFilter()


def quiet_connection_loss() -> None:
    """Install the filter on asyncua's client session logger (once)."""
    logger = logging.getLogger("asyncua.client.ua_session")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


async def close(client: Client, timeout_s: float) -> None:
    """Close a session whatever state it is in, and leave none of asyncua's tasks behind."""
    try:
        if client.state is UaClientState.CONNECTED:
            await asyncio.wait_for(client.disconnect(), timeout_s)
    except CONNECTION_ERRORS as exc:
        log.debug("closing the session with %s: %s", client.server_url.geturl(), describe(exc))
    finally:
        client.uaclient.request_disconnect()
        # asyncua cancels its publish task without waiting for it (and not at all once the
        # transport is gone), its supervisor and watchdogs only on a clean disconnect.
        tasks = [
            t
            for t in (
                client.uaclient._publish_task,
                client._supervisor_task,
                client._stale_watchdog_task,
                client._renew_channel_task,
            )
            if t is not None and not t.done()
        ]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        client.disconnect_socket()
