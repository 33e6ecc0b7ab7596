"""The site file schema (``site.toml``): the factory and its private 5G network as code.

Structure (TOML arrays of tables use singular names)::

    [site]              name, prefix (identifier prefix), timezone, extra_units
    [store] [bus]       where samples go (embedded defaults)
    [network]           [[network.cell]] [[network.slice]] [[network.qos]]
    [[device]]          a 5G terminal (UE): imsi, slice, qos, cell, carries = [flows]
    [[equipment]]       ISA-95 place (area / line / cell), device, [[equipment.signal]]
    [[alarm]]           rules on signals
    [control]           [[control.writable]] signals operators may write, with interlocks
    [sparkplug]         the Sparkplug B host application (broker, host id, groups)
    [[opcua]]           OPC UA servers: url, security, certificates, credentials
    [[modbus]]          Modbus TCP devices: host, unit, timeouts, request limits
    [ids]               the identifier node: store, hierarchy, identifier templates
    [apps.<name>]       settings of each app

Cross-references (a device's slice, a signal's unit, an alarm's signal...) are checked by
:mod:`factory5g.model.load`, which reports every problem at once.
"""

from __future__ import annotations

import re
import zoneinfo
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_RE = r"^[a-z0-9][a-z0-9_-]*$"
SIGNAL_NAME_RE = r"^[a-z][a-z0-9_]*$"
PATTERN_RE = re.compile(r"^[DSU]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Role(StrEnum):
    """API roles, each including the rights of those before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, required: Role) -> bool:
        return self.rank >= required.rank


class DataType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"


# -- [site] -----------------------------------------------------------------------------------


class SiteInfo(_Strict):
    name: str = Field(min_length=1, max_length=200)
    prefix: str = Field(
        description="Identifier prefix of this enterprise node, e.g. 88.118.8",
        pattern=r"^[0-9A-Za-z]+(\.[0-9A-Za-z-]+)*$",
    )
    timezone: str = "UTC"
    extra_units: tuple[str, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like Asia/Shanghai)"
            ) from exc
        return v


class StoreSettings(_Strict):
    backend: Literal["embedded"] = "embedded"
    path: str = Field(
        "data", description="Directory of the embedded store, relative to the site file"
    )
    retention_days: float = Field(365.0, gt=0)
    commit_interval_ms: float = Field(
        100.0,
        ge=0,
        le=10_000,
        description="at most one store transaction per interval while little is queued: "
        "group commit (latest values and history lag by up to this; live values do not)",
    )


class BusSettings(_Strict):
    backend: Literal["memory"] = "memory"
    queue_batches: int = Field(256, ge=1, le=1_000_000)


# -- [network] --------------------------------------------------------------------------------


Modulation = Literal["QPSK", "16QAM", "64QAM", "256QAM", "1024QAM"]


def _check_bandwidth(bandwidth_mhz: float, scs_khz: int, band: str) -> None:
    # TS 38.101-1/-2 Table 5.3.2-1: not every bandwidth exists at every SCS. net.nr is a leaf
    # module (no import of the model): no cycle.
    from factory5g.net.nr import frequency_range, n_prb

    n_prb(bandwidth_mhz, scs_khz, frequency_range(band))


class Carrier(_Strict):
    """A further component carrier of a cell (carrier aggregation, TS 38.306 §4.1.2: summed).

    Unset fields take the cell's values; a TDD carrier follows the cell's pattern."""

    band: str | None = Field(None, pattern=r"^n[0-9]{1,3}$")
    bandwidth_mhz: float = Field(gt=0, le=400)
    scs_khz: Literal[15, 30, 60, 120] | None = None
    layers_dl: int | None = Field(None, ge=1, le=8)
    layers_ul: int | None = Field(None, ge=1, le=4)
    max_modulation_dl: Modulation | None = None
    max_modulation_ul: Modulation | None = None


class SupplementaryUplink(_Strict):
    """A supplementary uplink carrier (SUL, e.g. n80/n84 FDD uplink): every slot is uplink.

    TS 38.306 §4.1.2: only the higher of UL and SUL counts toward the peak rate."""

    band: str = Field(pattern=r"^n[0-9]{1,3}$", description="e.g. n80, n84")
    bandwidth_mhz: float = Field(gt=0, le=100)
    scs_khz: Literal[15, 30, 60] = 15
    layers: int = Field(1, ge=1, le=4)
    max_modulation: Modulation = "64QAM"

    @model_validator(mode="after")
    def _bandwidth(self) -> SupplementaryUplink:
        _check_bandwidth(self.bandwidth_mhz, self.scs_khz, self.band)
        return self


class Cell(_Strict):
    id: str = Field(pattern=ID_RE)
    band: str = Field(pattern=r"^n[0-9]{1,3}$", description="NR operating band, e.g. n78")
    bandwidth_mhz: float = Field(gt=0, le=400)
    scs_khz: Literal[15, 30, 60, 120, 240] = 30
    duplex: Literal["tdd", "fdd"] = Field("tdd", description="fdd: every slot both ways")
    tdd_pattern: str = "DDDSU"
    special_slot: str = Field(
        "10:2:2",
        pattern=r"^\d{1,2}:\d{1,2}:\d{1,2}$",
        description="DL:GP:UL symbols of the special slot",
    )
    layers_dl: int = Field(4, ge=1, le=8)
    layers_ul: int = Field(1, ge=1, le=4)
    max_modulation_dl: Modulation = "256QAM"
    max_modulation_ul: Literal["QPSK", "16QAM", "64QAM", "256QAM"] = "64QAM"
    scaling_factor: float = Field(1.0, description="f of TS 38.306 §4.1.2: 1, 0.8, 0.75 or 0.4")
    carrier: tuple[Carrier, ...] = Field((), description="more component carriers (CA)")
    sul: SupplementaryUplink | None = None
    ul_grant: Literal["dynamic", "configured"] = Field(
        "dynamic",
        description="uplink scheduling: scheduling request + grant, or configured grant",
    )
    bler: float = Field(0.1, ge=0, lt=1, description="block error rate of a HARQ transmission")
    max_harq_tx: int = Field(4, ge=1, le=16, description="HARQ transmissions before loss")

    @field_validator("tdd_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if not PATTERN_RE.match(v):
            raise ValueError(f"TDD pattern {v!r} may only contain D, S and U slots")
        from factory5g.net.tdd import parse_pattern  # a leaf module: no cycle

        parse_pattern(v, (10, 2, 2))
        return v

    # A field validator (not a model validator) so that the error points at the special_slot key.
    @field_validator("special_slot")
    @classmethod
    def _special_slot_fits(cls, v: str) -> str:
        dl, gp, ul = (int(x) for x in v.split(":"))
        if dl + gp + ul != 14:  # TS 38.211 §4.3.2: 14 OFDM symbols per slot, normal CP
            raise ValueError(f"special slot {v} has {dl + gp + ul} symbols; a slot has 14")
        if gp < 1:
            raise ValueError(f"special slot {v} needs at least 1 guard symbol")
        return v

    @field_validator("scaling_factor")
    @classmethod
    def _scaling(cls, v: float) -> float:
        if v not in (1.0, 0.8, 0.75, 0.4):  # TS 38.306 §4.1.2
            raise ValueError(f"scaling_factor {v:g} is not one of 1, 0.8, 0.75, 0.4")
        return v

    @model_validator(mode="after")
    def _bandwidths(self) -> Cell:
        _check_bandwidth(self.bandwidth_mhz, self.scs_khz, self.band)
        for c in self.carrier:
            _check_bandwidth(c.bandwidth_mhz, c.scs_khz or self.scs_khz, c.band or self.band)
        return self


class Slice(_Strict):
    name: str = Field(pattern=ID_RE)
    sst: int = Field(ge=0, le=255, description="Slice/Service Type (TS 23.501 §5.15.2.2)")
    sd: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{6}$")
    dnn: str = Field("internet", min_length=1, description="data network name of its sessions")


class QosProfile(_Strict):
    name: str = Field(pattern=ID_RE)
    five_qi: int = Field(ge=1, le=255)
    arp_priority: int = Field(8, ge=1, le=15)
    gbr_ul_mbps: float | None = Field(None, ge=0)
    gbr_dl_mbps: float | None = Field(None, ge=0)
    mbr_ul_mbps: float | None = Field(None, ge=0)
    mbr_dl_mbps: float | None = Field(None, ge=0)

    @field_validator("five_qi")
    @classmethod
    def _standardized(cls, v: int) -> int:
        from factory5g.net.fiveqi import five_qi  # a leaf module: no cycle

        five_qi(v)
        return v


class Network(_Strict):
    mcc: str = Field("001", pattern=r"^[0-9]{3}$", description="mobile country code")
    mnc: str = Field("01", pattern=r"^[0-9]{2,3}$", description="mobile network code")
    edge_dnai: str = Field(
        "site-edge", min_length=1, description="DNAI of the on-site UPF (local breakout)"
    )
    emulate: bool = Field(
        False,
        description="run the NEF emulator and route the equipment's traffic through the "
        "user-space link emulator (for the demo, or a site tested without its radio)",
    )
    cell: tuple[Cell, ...] = ()
    slice: tuple[Slice, ...] = ()
    qos: tuple[QosProfile, ...] = ()


# -- [[device]] -------------------------------------------------------------------------------


class FlowKind(StrEnum):
    CAMERA = "camera"
    VISION = "vision"
    PLC = "plc"
    SENSOR = "sensor"
    AGV = "agv"
    VOICE = "voice"
    AR = "ar"
    OTHER = "other"


class Flow(_Strict):
    """A traffic flow a device carries, for network planning.

    Either a rate (``ul_mbps``/``dl_mbps``, e.g. a 4K camera 25 Mbit/s UL) or cyclic traffic
    (``period_ms`` + ``payload_bytes`` in ``direction``, e.g. a PLC 2 ms / 40 B both ways), or both.
    """

    kind: FlowKind
    name: str | None = Field(None, pattern=ID_RE)
    ul_mbps: float = Field(0.0, ge=0)
    dl_mbps: float = Field(0.0, ge=0)
    period_ms: float | None = Field(None, gt=0, description="cyclic traffic: one packet per period")
    payload_bytes: int | None = Field(None, gt=0)
    direction: Literal["ul", "dl", "both"] = Field(
        "both", description="which way the cyclic packets go"
    )
    qos: str | None = Field(None, description="QoS profile of this flow, default the device's")


class Device(_Strict):
    id: str = Field(pattern=ID_RE)
    imsi: str = Field(pattern=r"^(imsi-)?[0-9]{14,15}$")
    slice: str
    qos: str | None = None
    cell: str | None = None
    ipv4: str | None = Field(
        None,
        pattern=r"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$",
        description="static UE address (NEF requests name the UE by it)",
    )
    msisdn: str | None = Field(None, pattern=r"^[0-9]{5,15}$")
    carries: tuple[Flow, ...] = ()
    description: str = ""


# -- [[equipment]] ----------------------------------------------------------------------------


class SimBinding(_Strict):
    kind: Literal["sim"]
    model: str = Field(min_length=1, description="physics model of the demo simulator")
    output: str = Field(min_length=1)


class SparkplugBinding(_Strict):
    kind: Literal["sparkplug"]
    group: str = Field(min_length=1)
    edge: str = Field(min_length=1)
    device: str | None = None
    metric: str = Field(min_length=1)


class OpcUaBinding(_Strict):
    kind: Literal["opcua"]
    endpoint: str = Field(
        min_length=1,
        description="id of an [[opcua]] endpoint, or an opc.tcp:// URL (anonymous, no security)",
    )
    node: str = Field(
        pattern=r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$",
        description="node id, e.g. ns=2;s=Stand1.Speed",
    )
    sampling_ms: float = Field(100.0, ge=0, description="server-side sampling interval")


ModbusTable = Literal["holding", "input", "coil", "discrete"]
ModbusType = Literal["int16", "uint16", "int32", "uint32", "int64", "float32", "float64", "bool"]


class ModbusBinding(_Strict):
    kind: Literal["modbus"]
    device: str | None = Field(None, description="id of a [[modbus]] device")
    host: str | None = Field(None, min_length=1, description="inline device, instead of device")
    port: int = Field(502, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=255)
    table: ModbusTable = "holding"
    address: int = Field(ge=0, le=65535, description="register or coil number (0-based)")
    type: ModbusType = "uint16"
    bit: int | None = Field(None, ge=0, le=15, description="one bit of a 16-bit register")
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    poll_ms: float = Field(1000.0, gt=0, description="poll group: signals sharing an interval")

    @model_validator(mode="after")
    def _shape(self) -> ModbusBinding:
        if (self.device is None) == (self.host is None):
            raise ValueError("a modbus binding names either a device or a host, not both")
        bits = self.table in ("coil", "discrete")
        if bits and self.type != "bool":
            raise ValueError(f"{self.table} entries are single bits: type must be 'bool'")
        if self.bit is not None and (bits or self.type not in ("int16", "uint16", "bool")):
            raise ValueError("bit selects one bit of a 16-bit register: table holding or input")
        if not bits and self.type == "bool" and self.bit is None:
            raise ValueError("a bool in a register needs bit = 0..15")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def registers(self) -> int:
        """How many 16-bit registers (or bits, for coils) the value spans."""
        return {"int32": 2, "uint32": 2, "float32": 2, "int64": 4, "float64": 4}.get(self.type, 1)

    @property
    def writable(self) -> bool:
        return self.table in ("holding", "coil")


BINDING_KINDS = ("sim", "sparkplug", "opcua", "modbus")

Binding = Annotated[
    SimBinding | SparkplugBinding | OpcUaBinding | ModbusBinding, Field(discriminator="kind")
]


class SimSource(_Strict):
    """The demo simulator drives this signal's equipment peer (a Sparkplug edge node, an OPC UA
    or Modbus server) with a physics model output; the signal is then read through its binding."""

    model: str = Field(min_length=1)
    output: str = Field(min_length=1)


class Signal(_Strict):
    name: str = Field(pattern=SIGNAL_NAME_RE)
    unit: str = ""
    type: DataType = DataType.FLOAT
    description: str = ""
    min: float | None = None
    max: float | None = None
    binding: Binding | None = None
    sim: SimSource | None = None

    @model_validator(mode="after")
    def _range(self) -> Signal:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class Equipment(_Strict):
    id: str = Field(pattern=ID_RE)
    name: str = ""
    area: str = Field(min_length=1, description="ISA-95 area")
    line: str = Field(min_length=1, description="ISA-95 production line / process cell")
    cell: str | None = Field(None, description="ISA-95 work cell / unit")
    kind: str = ""
    device: str | None = Field(
        None, description="the 5G terminal this equipment is reached through"
    )
    signal: tuple[Signal, ...] = ()


# -- [[alarm]] and [control] ------------------------------------------------------------------


class AlarmKind(StrEnum):
    HIGH = "high"
    LOW = "low"
    RATE = "rate"
    STATE = "state"
    STALE = "stale"
    BAD_QUALITY = "bad_quality"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class AlarmRule(_Strict):
    signal: str
    kind: AlarmKind
    limit: float | None = Field(None, description="high/low limit, or rate limit per second")
    state: bool | None = Field(None, description="for kind=state: the value that is abnormal")
    after_s: float | None = Field(None, gt=0, description="for kind=stale: seconds without update")
    deadband: float = Field(0.0, ge=0)
    on_delay_s: float = Field(0.0, ge=0)
    off_delay_s: float = Field(0.0, ge=0)
    priority: Priority = Priority.MEDIUM
    message: str = ""

    @model_validator(mode="after")
    def _fields_for_kind(self) -> AlarmRule:
        need = {
            AlarmKind.HIGH: "limit",
            AlarmKind.LOW: "limit",
            AlarmKind.RATE: "limit",
            AlarmKind.STATE: "state",
            AlarmKind.STALE: "after_s",
        }.get(self.kind)
        if need is not None and getattr(self, need) is None:
            raise ValueError(f"an alarm of kind {self.kind.value!r} needs {need!r}")
        return self


INTERLOCK_RE = re.compile(
    r"^\s*(?P<signal>[a-z0-9][a-z0-9_-]*\.[a-z][a-z0-9_]*)\s*(?P<op>==|!=|<=|>=|<|>)\s*"
    r"(?P<value>true|false|-?\d+(\.\d+)?([eE][-+]?\d+)?)\s*$"
)


def _check_interlocks(v: tuple[str, ...]) -> tuple[str, ...]:
    for expr in v:
        if not INTERLOCK_RE.match(expr):
            raise ValueError(
                f"interlock {expr!r} is not 'equipment.signal OP value' "
                "(OP one of == != < <= > >=, value a number, true or false)"
            )
    return v


class Writable(_Strict):
    """A signal operators may write (``apps/control``), with its guards.

    ``interlocks`` are checked on live values at execution time; ``alarm_interlocks`` name
    equipment that must have no active alarm of ``alarm_interlock_priority`` or above.
    ``confirm``: ``ack`` (the protocol's write response: Modbus, OPC UA) or ``readback`` (the
    value comes back through the read path within ``tolerance``); default ``ack``, except
    ``readback`` for Sparkplug (a DCMD has no acknowledgement).
    """

    signal: str
    role: Role = Role.OPERATOR
    min: float | None = None
    max: float | None = None
    safe_value: float | None = None
    survival_ms: float | None = Field(None, gt=0)
    interlocks: tuple[str, ...] = ()
    alarm_interlocks: tuple[str, ...] = Field((), description="equipment ids")
    alarm_interlock_priority: Priority = Priority.HIGH
    confirm: Literal["ack", "readback"] | None = None
    tolerance: float | None = Field(None, ge=0, description="read-back tolerance, signal units")

    @field_validator("interlocks")
    @classmethod
    def _syntax(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_interlocks(v)

    @model_validator(mode="after")
    def _range(self) -> Writable:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not be above max ({self.max})")
        if self.safe_value is not None and not (
            (self.min is None or self.safe_value >= self.min)
            and (self.max is None or self.safe_value <= self.max)
        ):
            raise ValueError(f"safe_value {self.safe_value} is outside min..max")
        return self


class ControlMethod(_Strict):
    """An OPC UA method operators may call (``Call`` service, OPC 10000-4 §5.11.2).

    ``id`` is how commands name it (``equipment.name``); numeric arguments must lie within
    ``min``..``max``; the method's Good status is the device's acknowledgement.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*\.[A-Za-z][A-Za-z0-9_]*$")
    endpoint: str = Field(min_length=1, description="id of an [[opcua]] endpoint")
    object: str = Field(pattern=r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$")
    method: str = Field(pattern=r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$")
    role: Role = Role.OPERATOR
    args: int = Field(1, ge=0, le=16, description="number of input arguments")
    min: float | None = None
    max: float | None = None
    interlocks: tuple[str, ...] = ()
    alarm_interlocks: tuple[str, ...] = Field((), description="equipment ids")
    alarm_interlock_priority: Priority = Priority.HIGH

    @field_validator("interlocks")
    @classmethod
    def _syntax(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_interlocks(v)


class Control(_Strict):
    writable: tuple[Writable, ...] = ()
    method: tuple[ControlMethod, ...] = ()


# -- [sparkplug] ------------------------------------------------------------------------------


class SparkplugMap(_Strict):
    """Put every metric of an edge node (or of one of its devices) under an equipment."""

    group: str = Field(min_length=1)
    edge: str = Field(min_length=1)
    device: str | None = None
    equipment: str


class SparkplugSettings(_Strict):
    """The Sparkplug B host application: which broker, who we are, what we listen to."""

    url: str | None = Field(
        None,
        pattern=r"^mqtts?://[^/:]+(:\d+)?/?$",
        description="mqtt://host:1883 or mqtts://host:8883; none: the in-process demo broker",
    )
    username: str | None = None
    password_env: str | None = Field(
        None, description="name of the environment variable holding the broker password"
    )
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    host_id: str = Field("factory5g", pattern=r"^[^/+#]+$")
    groups: tuple[str, ...] = Field((), description="group ids to subscribe to; empty: all")
    reorder_timeout_s: float = Field(2.0, ge=0, le=60)
    max_payload_bytes: int = Field(4 * 1024 * 1024, gt=0)
    map: tuple[SparkplugMap, ...] = ()


# -- [[opcua]] and [[modbus]]: the equipment protocol endpoints ---------------------------


class OpcUaEndpoint(_Strict):
    """An OPC UA server: one session, one subscription per publishing interval."""

    id: str = Field(pattern=ID_RE)
    url: str = Field(pattern=r"^opc\.tcp://[^/:]+(:\d+)?(/.*)?$")
    security: Literal["none", "sign", "sign_encrypt"] = "none"
    policy: Literal["Basic256Sha256"] = Field(
        "Basic256Sha256", description="security policy when security is not none"
    )
    cert_file: str | None = Field(None, description="client application certificate (DER/PEM)")
    key_file: str | None = Field(None, description="its private key (PEM)")
    trust: tuple[str, ...] = Field(
        (), description="server certificate files trusted (required with security)"
    )
    username: str | None = None
    password_env: str | None = Field(
        None, description="name of the environment variable holding the password"
    )
    publishing_ms: float = Field(100.0, gt=0, description="subscription publishing interval")
    timeout_s: float = Field(4.0, gt=0, le=300, description="per request")

    @model_validator(mode="after")
    def _secure(self) -> OpcUaEndpoint:
        if self.security != "none":
            if not (self.cert_file and self.key_file):
                raise ValueError(f"security {self.security!r} needs cert_file and key_file")
            if not self.trust:
                raise ValueError(
                    f"security {self.security!r} needs the server certificate in trust "
                    "(factory5g connect browse URL --save-cert FILE fetches it)"
                )
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env needs a username")
        return self


class ModbusDevice(_Strict):
    """A Modbus TCP device (or one unit behind a gateway): its poll plan and request limits."""

    id: str = Field(pattern=ID_RE)
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=255)
    timeout_ms: float = Field(1000.0, gt=0)
    retries: int = Field(2, ge=0, le=10, description="per request, after the first try")
    max_registers: int = Field(125, ge=1, le=125, description="registers per read request")
    max_bits: int = Field(2000, ge=1, le=2000, description="coils/inputs per read request")
    request_cost: int = Field(
        16,
        ge=0,
        description="what one more request costs, in registers read: "
        "gaps up to this are bridged; 0 never reads unmapped registers",
    )


# -- [ids] ----------------------------------------------------------------------------------


class IdsSettings(_Strict):
    """The identifier node of this site: a Handle-compatible enterprise node for the
    ``[site] prefix`` (see docs/ids.md)."""

    enabled: bool = True
    backend: Literal["embedded", "postgres"] = "embedded"
    path: str = Field(
        "ids.sqlite", description="file of the embedded store, relative to the [store] path"
    )
    dsn_env: str | None = Field(
        None, description="name of the environment variable holding the PostgreSQL DSN"
    )
    prefixes: tuple[str, ...] = Field(
        (), description="more prefixes this node is authoritative for, besides [site] prefix"
    )
    fold_case: bool = Field(False, description="compare suffixes ASCII case-insensitively")
    recursive: bool = Field(False, description="follow referrals instead of returning them")
    upstream: tuple[str, ...] = Field(
        (), description="http(s) URLs of the nodes asked when no local referral fits (top node)"
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/]+/?$",
        description="how other nodes reach this one: published in HS_SITE by `ids init`",
    )
    max_referrals: int = Field(8, ge=1, le=32)
    referral_timeout_s: float = Field(2.0, gt=0, le=60)
    cache_entries: int = Field(100_000, ge=0)
    search_types: tuple[str, ...] = Field(
        ("URL", "EMAIL", "F5G_BATCH"), description="value types the reverse lookup indexes"
    )
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="identifier template per object kind, over the defaults "
        "(product, part, batch, equipment)",
    )

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not re.match(r"^[0-9A-Za-z_-]+(\.[0-9A-Za-z_-]+)*$", p):
                raise ValueError(f"prefix {p!r} is not dot-separated segments like 88.118.8")
        return v

    @field_validator("upstream")
    @classmethod
    def _urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for u in v:
            if not re.match(r"^https?://[^/]+/?$", u):
                raise ValueError(f"upstream {u!r} is not http(s)://host:port")
        return v

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        from factory5g.ids.templates import check_template  # a leaf module: no cycle

        for kind, text in v.items():
            if not re.match(ID_RE, kind):
                raise ValueError(f"object kind {kind!r} must match {ID_RE}")
            check_template(text)
        return v

    @model_validator(mode="after")
    def _backend(self) -> IdsSettings:
        if self.backend == "postgres" and not self.dsn_env:
            raise ValueError("backend 'postgres' needs dsn_env (the variable holding the DSN)")
        return self


# -- the whole file ---------------------------------------------------------------------------


class SiteFile(_Strict):
    site: SiteInfo
    store: StoreSettings = StoreSettings()
    bus: BusSettings = BusSettings()
    network: Network = Network()
    device: tuple[Device, ...] = ()
    equipment: tuple[Equipment, ...] = ()
    alarm: tuple[AlarmRule, ...] = ()
    control: Control = Control()
    sparkplug: SparkplugSettings | None = None
    opcua: tuple[OpcUaEndpoint, ...] = ()
    modbus: tuple[ModbusDevice, ...] = ()
    ids: IdsSettings = IdsSettings()
    apps: dict[str, dict[str, Any]] = Field(default_factory=dict)
