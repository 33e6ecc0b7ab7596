"""Errors of the MQTT 3.1.1 client, codec and broker.

::

    MqttError                                   base of everything below
    ├── MqttConnectError(reason, return_code)   no session: the broker is unreachable, did not
    │                                           answer in time, or refused the CONNECT (CONNACK
    │                                           return code 1-5, MQTT 3.1.1 §3.2.2.3)
    ├── MqttProtocolError(reason, connack_code) malformed or unsupported bytes on the wire
    │                                           (MQTT 3.1.1 §4.8: the connection is closed)
    └── MqttClosedError(reason)                 the operation cannot complete: the client is
                                                closed, or (QoS 0 publish) not connected

Programming errors (a topic with a wildcard in ``publish``, QoS 2) raise ``ValueError`` before
anything is sent.
"""

from __future__ import annotations

__all__ = [
    "CONNACK_REASONS",
    "MqttClosedError",
    "MqttConnectError",
    "MqttError",
    "MqttProtocolError",
]

# MQTT 3.1.1 §3.2.2.3, Table 3.1 - Connect Return code values.
CONNACK_REASONS: dict[int, str] = {
    0: "connection accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttError(Exception):
    """Base of the MQTT errors."""


class MqttConnectError(MqttError):
    """No session could be established.

    ``return_code`` is the broker's CONNACK return code when it refused the CONNECT, ``None``
    when the broker could not be reached or did not answer in time.
    """

    def __init__(self, reason: str, return_code: int | None = None) -> None:
        if return_code is not None:
            meaning = CONNACK_REASONS.get(return_code, "reserved return code")
            reason = f"{reason}: CONNACK return code {return_code} ({meaning})"
        super().__init__(reason)
        self.reason = reason
        self.return_code = return_code


class MqttProtocolError(MqttError):
    """The bytes received are not MQTT 3.1.1 as we speak it (malformed, oversized, QoS 2).

    ``connack_code`` is set when a server should answer a CONNECT with that CONNACK return code
    before closing, e.g. 1 for an unsupported protocol level [MQTT-3.1.2-2].
    """

    def __init__(self, reason: str, connack_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connack_code = connack_code


class MqttClosedError(MqttError):
    """The client is closed, or not connected for an operation that cannot wait (QoS 0)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
