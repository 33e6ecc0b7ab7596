"""MQTT 3.1.1 for factory5g: our own asyncio client, packet codec and a demo broker.

No third-party MQTT library at run time: the Sparkplug host needs batches of messages, no drops
(TCP backpressure), QoS 1 acknowledged after processing, and ~10,000 messages/s on a small share
of one core. Every MQTT 5 broker also speaks 3.1.1, which Sparkplug B 3.0 allows.

* :mod:`.packets` — wire types, encoder, streaming :class:`PacketReader` (no I/O).
* :mod:`.client` — :class:`MqttClient` with :class:`MqttOptions`.
* :mod:`.broker` — :class:`MqttBroker`, in-process, for the demo and tests only.
* :mod:`.errors` — the exception tree.
"""

from factory5g.connect.mqtt.broker import MqttBroker, MqttBrokerStats
from factory5g.connect.mqtt.client import (
    MqttClient,
    MqttClientStats,
    MqttOptions,
    OnConnect,
    OnDisconnect,
)
from factory5g.connect.mqtt.errors import (
    MqttClosedError,
    MqttConnectError,
    MqttError,
    MqttProtocolError,
)
from factory5g.connect.mqtt.packets import (
    SUBACK_FAILURE,
    Message,
    PacketReader,
    topic_filter_problem,
    topic_matches,
    topic_name_problem,
)

__all__ = [
    "SUBACK_FAILURE",
    "Message",
    "MqttBroker",
    "MqttBrokerStats",
    "MqttClient",
    "MqttClientStats",
    "MqttClosedError",
    "MqttConnectError",
    "MqttError",
    "MqttOptions",
    "MqttProtocolError",
    "OnConnect",
    "OnDisconnect",
    "PacketReader",
    "topic_filter_problem",
    "topic_matches",
    "topic_name_problem",
]
