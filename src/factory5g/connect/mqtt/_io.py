"""What the client and the broker share on the socket side (packets.py stays free of I/O)."""

from __future__ import annotations

import asyncio
from typing import Final

from factory5g.connect.mqtt.packets import Packet, PacketReader

READ_BYTES: Final = 65_536  # one read: many PUBLISH packets parsed per call on the hot path


async def first_packets(stream: asyncio.StreamReader, reader: PacketReader) -> list[Packet]:
    """Read until at least one packet is complete; [] at end of stream."""
    while True:
        data = await stream.read(READ_BYTES)
        if not data:
            return []
        packets = reader.feed(data)
        if packets:
            return packets
