"""Modbus TCP: the adapter (poll plans, codec, reads and writes through pymodbus).

See docs/modbus.md for how to bind signals; the demo devices live in :mod:`factory5g.sim.modbus`.
"""

from factory5g.connect.modbus.adapter import DeviceStats, GroupStats, ModbusAdapter
from factory5g.connect.modbus.codec import BlockCodec, Format, decode, encode, raw_value, set_bit
from factory5g.connect.modbus.errors import (
    ModbusConfigError,
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionError,
    ModbusProtocolError,
    ModbusTimeoutError,
    ModbusValueError,
)
from factory5g.connect.modbus.plan import (
    DevicePlan,
    Item,
    PollGroup,
    Read,
    plan_cost,
    plan_device,
    plan_reads,
    plan_uncoalesced,
)

__all__ = [
    "BlockCodec",
    "DevicePlan",
    "DeviceStats",
    "Format",
    "GroupStats",
    "Item",
    "ModbusAdapter",
    "ModbusConfigError",
    "ModbusConnectionError",
    "ModbusError",
    "ModbusExceptionError",
    "ModbusProtocolError",
    "ModbusTimeoutError",
    "ModbusValueError",
    "PollGroup",
    "Read",
    "decode",
    "encode",
    "plan_cost",
    "plan_device",
    "plan_reads",
    "plan_uncoalesced",
    "raw_value",
    "set_bit",
]
