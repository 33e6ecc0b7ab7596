"""Errors of the Sparkplug B package.

SparkplugError
├── SparkplugDecodeError(reason, offset)   bytes that are not a Sparkplug B payload (protobuf)
├── SparkplugEncodeError(reason)           a value that cannot be encoded as its datatype says
├── SparkplugTopicError(topic, reason)     a topic outside the spBv1.0 namespace (Sparkplug 3.0 §4)
└── SparkplugSequenceError(expected, got)  a payload ``seq`` that breaks the 0..255 chain of
                                           an edge node (tck-id-payloads-sequence-num-incrementing)

The decode and encode errors are also ``ValueError``\\s, so generic code that validates input can
catch them without knowing about Sparkplug.
"""

from __future__ import annotations

__all__ = [
    "SparkplugDecodeError",
    "SparkplugEncodeError",
    "SparkplugError",
    "SparkplugSequenceError",
    "SparkplugTopicError",
]


class SparkplugError(Exception):
    """Base of every error raised by ``factory5g.connect.sparkplug``."""


class SparkplugDecodeError(SparkplugError, ValueError):
    """Malformed payload bytes; ``offset`` is where in the input the problem was found."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset


class SparkplugEncodeError(SparkplugError, ValueError):
    """A payload that cannot be encoded: a value out of range or of the wrong type."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SparkplugTopicError(SparkplugError):
    """A topic outside ``spBv1.0/<group>/<type>/<edge>[/<device>]`` and ``spBv1.0/STATE/<host>``."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"bad Sparkplug topic {topic!r}: {reason}")
        self.topic = topic
        self.reason = reason


class SparkplugSequenceError(SparkplugError):
    """A ``seq`` other than the one expected next from an edge node (wraps 255 → 0)."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"sequence gap: expected seq {expected}, got {got}")
        self.expected = expected
        self.got = got
