"""Sparkplug B topics: ``spBv1.0/<group>/<type>/<edge>[/<device>]`` and ``spBv1.0/STATE/<host>``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from factory5g.connect.sparkplug.errors import SparkplugTopicError

NAMESPACE = "spBv1.0"


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"

    @property
    def is_device(self) -> bool:
        return self.value[0] == "D"

    @property
    def is_data(self) -> bool:
        return self in (MessageType.NDATA, MessageType.DDATA)


_BAD_CHARS = frozenset("/+#")


@dataclass(frozen=True, slots=True)
class Topic:
    type: MessageType
    group: str = ""
    edge: str = ""
    device: str | None = None
    host: str | None = None  # for STATE

    def __str__(self) -> str:
        if self.type is MessageType.STATE:
            return f"{NAMESPACE}/STATE/{self.host}"
        base = f"{NAMESPACE}/{self.group}/{self.type.value}/{self.edge}"
        return f"{base}/{self.device}" if self.device is not None else base


def check_id(value: str, what: str) -> str:
    """A group, edge node, device or host id: non-empty UTF-8 without / + # (Sparkplug §4.1)."""
    if not value or any(c in _BAD_CHARS for c in value):
        raise SparkplugTopicError(value, f"{what} id must be non-empty and contain none of / + #")
    return value


def parse_topic(topic: str) -> Topic:
    """Parse a Sparkplug topic; raise SparkplugTopicError with the reason if it is not one."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != NAMESPACE:
        raise SparkplugTopicError(topic, f"not in the {NAMESPACE} namespace")
    if parts[1] == "STATE":
        if len(parts) != 3 or not parts[2]:
            raise SparkplugTopicError(topic, "STATE topics are spBv1.0/STATE/<host_id>")
        return Topic(MessageType.STATE, host=parts[2])
    if len(parts) not in (4, 5):
        raise SparkplugTopicError(topic, "expected spBv1.0/<group>/<type>/<edge>[/<device>]")
    try:
        mtype = MessageType(parts[2])
    except ValueError:
        raise SparkplugTopicError(topic, f"unknown message type {parts[2]!r}") from None
    if mtype is MessageType.STATE:
        raise SparkplugTopicError(topic, "STATE topics are spBv1.0/STATE/<host_id>")
    if mtype.is_device != (len(parts) == 5):
        need = "needs" if mtype.is_device else "must not have"
        raise SparkplugTopicError(topic, f"{mtype.value} {need} a device id")
    if not parts[1] or not parts[3] or (len(parts) == 5 and not parts[4]):
        raise SparkplugTopicError(topic, "empty group, edge node or device id")
    return Topic(mtype, parts[1], parts[3], parts[4] if len(parts) == 5 else None)
