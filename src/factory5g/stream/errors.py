"""Errors of the stream package.

StreamError
├── BatchError(reason)            a Batch whose columns do not fit together
│   └── BatchDecodeError(reason)  bytes that are not an encoded Batch
└── BusClosedError(name)          publish/subscribe on a closed bus or subscription
"""

from __future__ import annotations


class StreamError(Exception):
    """Base of every error raised by ``factory5g.stream``."""


class BatchError(StreamError, ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BatchDecodeError(BatchError):
    pass


class BusClosedError(StreamError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is closed")
        self.name = name
