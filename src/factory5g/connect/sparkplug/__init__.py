"""Eclipse Sparkplug B 3.0: the Primary Host Application, an edge node, the payload codec."""

from factory5g.connect.sparkplug.edge import DataEncoder, EdgeNode, MetricSpec
from factory5g.connect.sparkplug.errors import (
    SparkplugDecodeError,
    SparkplugError,
    SparkplugSequenceError,
    SparkplugTopicError,
)
from factory5g.connect.sparkplug.host import SparkplugHost
from factory5g.connect.sparkplug.topic import MessageType, Topic, parse_topic

__all__ = [
    "DataEncoder",
    "EdgeNode",
    "MessageType",
    "MetricSpec",
    "SparkplugDecodeError",
    "SparkplugError",
    "SparkplugHost",
    "SparkplugSequenceError",
    "SparkplugTopicError",
    "Topic",
    "parse_topic",
]
