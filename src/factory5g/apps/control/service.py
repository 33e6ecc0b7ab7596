"""The control app: commands, hold-to-run sessions, interlocks, audit.

``async with ControlService(site, bus, adapters, data_dir=..., alarms=..., events=hub)``.

What a command goes through (the IEC 61784-3 error-class measures of docs/control.md):

1. **identity** — the caller is an authenticated token; its role must allow the target's
   ``role``; the target must be a writable signal or a method of ``[control]``;
2. **at most once** — the idempotency key (per token) is stored durably with the command before
   anything is sent; a repeated key answers with the stored command, a key reused for another
   command is refused; concurrent repeats wait for the first;
3. **corruption** — the value must be finite, of the signal's type and within min..max;
4. **timeliness** — a command whose deadline has passed is never executed (``expired``);
5. **order** — commands of one target execute one at a time, in arrival order, each with a
   session id and a sequence number;
6. **interlocks** — checked on live values (:class:`LatestValues`) when execution starts;
7. **execution** — the adapter's write (OPC UA Write, Modbus write, Sparkplug DCMD) or OPC UA
   method call, bounded by the deadline; **confirmation** by the protocol's acknowledgement or a
   read-back through the read path, within the deadline, else ``failed``;
8. **audit** — every command and outcome in the hash-chained audit log.

Hold-to-run (jog): :meth:`ControlService.jog` writes the value and starts a watchdog; the client
sends heartbeats; when none arrives for half the writable's ``survival_ms``, the watchdog writes
``safe_value`` (the other half is the budget of that write), as does releasing the button or
stopping the service. The safe write bypasses interlocks and the per-target queue: it must
never wait behind a hung command. The platform is supervisory: emergency stop stays in
certified safety hardware, and a device must fall back to safe values by itself when its own
link fails (its communication watchdog), since no write reaches it then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

from factory5g.aio import cancel_and_wait
from factory5g.apps.control.audit import ControlStore
from factory5g.apps.control.commands import (
    Command,
    CommandRequest,
    CommandState,
    Principal,
    fingerprint,
)
from factory5g.apps.control.errors import (
    IdempotencyConflictError,
    JogNotAllowedError,
    JogOwnerError,
    UnknownJogError,
    UnknownTargetError,
)
from factory5g.apps.control.interlocks import ActiveAlarms, Interlocks, compile_interlocks
from factory5g.apps.control.table import LatestValues
from factory5g.apps.events import EventHub
from factory5g.connect.base import Adapter, AdapterError, WriteValue
from factory5g.model import Site
from factory5g.model.signals import SignalInfo
from factory5g.model.site import ControlMethod, DataType, Role, Writable
from factory5g.stream import MemoryBus, MemorySubscription, SlowConsumerPolicy, now_ns

__all__ = ["ControlService", "JogSession", "MethodCaller", "Target"]

log = logging.getLogger(__name__)

MAX_DEADLINE_MS: Final = 60_000.0
WATCHDOG_SHARE: Final = 0.5  # of survival_ms: heartbeat silence that trips the watchdog


class MethodCaller(Protocol):
    """The OPC UA adapter's method call (``OpcUaAdapter.call``)."""

    async def call(
        self, endpoint_id: str, object_node: str, method_node: str, args: Any = ()
    ) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Target:
    """A writable signal or a method, with everything needed to execute a command on it."""

    name: str
    role: Role
    interlocks: Interlocks
    minimum: float | None
    maximum: float | None
    signal: SignalInfo | None = None  # a write
    writable: Writable | None = None
    method: ControlMethod | None = None  # a call
    confirm: str = "ack"
    tolerance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "kind": "write" if self.method is None else "call",
            "role": self.role.value,
            "min": self.minimum,
            "max": self.maximum,
            "unit": self.signal.unit if self.signal else None,
            "type": self.signal.type.value if self.signal else None,
            "binding": self.signal.binding if self.signal else "opcua",
            "interlocks": [i.text for i in self.interlocks.signals],
            "alarm_interlocks": list(self.interlocks.alarm_equipment),
            "alarm_interlock_priority": self.interlocks.alarm_priority.value,
            "confirm": self.confirm,
            "safe_value": self.writable.safe_value if self.writable else None,
            "survival_ms": self.writable.survival_ms if self.writable else None,
        }


@dataclass(slots=True)
class JogSession:
    id: str
    target: str
    user: Principal
    value: float | int | bool
    safe_value: float
    survival_ms: float
    started: float  # time.monotonic()
    last_heartbeat: float
    heartbeats: int = 0
    ended: str | None = None  # why: "released", "watchdog", "stopped"
    safe_at: float | None = None  # monotonic time the safe value was confirmed
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def watchdog_s(self) -> float:
        return self.survival_ms * WATCHDOG_SHARE / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "user": self.user.name,
            "value": self.value,
            "safe_value": self.safe_value,
            "survival_ms": self.survival_ms,
            "watchdog_ms": self.watchdog_s * 1000.0,
            "heartbeats": self.heartbeats,
            "ended": self.ended,
        }


class ControlService:
    """Remote control of one site's equipment; see the module docstring."""

    def __init__(
        self,
        site: Site,
        bus: MemoryBus,
        adapters: Mapping[str, Adapter],
        *,
        data_dir: Path,
        alarms: ActiveAlarms | None = None,
        events: EventHub | None = None,
    ) -> None:
        self.site = site
        self.bus = bus
        self.adapters = adapters
        self.alarms = alarms
        self.events = events
        self.table = LatestValues(len(site.signals))
        self.store = ControlStore(data_dir / "control.sqlite")
        self.targets = self._targets(site)
        self.jogs: dict[str, JogSession] = {}
        self._sessions: dict[str, tuple[str, int]] = {}  # token id → (session id, last seq)
        self._locks: dict[str, asyncio.Lock] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Command]] = {}
        self._sub: MemorySubscription | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.executed = 0  # writes and calls sent to devices

    @staticmethod
    def _targets(site: Site) -> dict[str, Target]:
        out: dict[str, Target] = {}
        for m in site.file.control.method:
            out[m.id] = Target(
                m.id,
                m.role,
                compile_interlocks(
                    site, m.interlocks, m.alarm_interlocks, m.alarm_interlock_priority
                ),
                m.min,
                m.max,
                method=m,
            )
        for w in site.file.control.writable:  # a writable wins over a method of the same name
            info = site.signals.get(w.signal)
            lo = [x for x in (w.min, info.min) if x is not None]
            hi = [x for x in (w.max, info.max) if x is not None]
            confirm = w.confirm or ("readback" if info.binding == "sparkplug" else "ack")
            out[info.path] = Target(
                info.path,
                w.role,
                compile_interlocks(
                    site, w.interlocks, w.alarm_interlocks, w.alarm_interlock_priority
                ),
                max(lo) if lo else None,
                min(hi) if hi else None,
                signal=info,
                writable=w,
                confirm=confirm,
                tolerance=w.tolerance,
            )
        return out

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.store.__enter__()
        try:
            for cmd in self.store.recover(now_ns()):
                log.warning("command %s on %s was interrupted by a stop", cmd.id, cmd.target)
            self._sub = self.bus.subscribe(
                "control", maxsize=self.site.file.bus.queue_batches, policy=SlowConsumerPolicy.BLOCK
            )
            self._spawn(self._feed(self._sub), "control-latest")
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        # Hold-to-run sessions end with their safe value while the adapters are still up.
        for jog in list(self.jogs.values()):
            await self._end_jog(jog, "stopped")
        if self._sub is not None:
            self._sub.close()
        await cancel_and_wait(self._tasks, what="control service")
        self.store.__exit__(None, None, None)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"f5g-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _feed(self, sub: MemorySubscription) -> None:
        async for batch in sub:
            self.table.update(batch, now_ns())

    # -- commands -----------------------------------------------------------------------------

    def target(self, name: str) -> Target:
        t = self.targets.get(name)
        if t is None:
            raise UnknownTargetError(
                name, difflib.get_close_matches(name, list(self.targets), n=3, cutoff=0.6)
            )
        return t

    def _session(self, who: Principal) -> tuple[str, int]:
        session, seq = self._sessions.get(who.id) or (uuid.uuid4().hex[:16], 0)
        self._sessions[who.id] = (session, seq + 1)
        return session, seq + 1

    async def submit(self, req: CommandRequest, who: Principal) -> Command:
        """Run one command to its end (or answer the stored one for a repeated key).

        Raises UnknownTargetError (recorded as a rejected command first) and
        IdempotencyConflictError; every other outcome is the returned command's state."""
        key = (who.id, req.idempotency_key)
        running = self._inflight.get(key)
        if running is not None:  # a concurrent repeat: the first one's outcome
            cmd = await asyncio.shield(running)
            return await self._replay(cmd, req, who)
        stored = self.store.by_key(who.id, req.idempotency_key)
        if stored is not None:
            return await self._replay(stored, req, who)
        fut: asyncio.Future[Command] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            cmd = await self._run(req, who)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            fut.set_result(cmd)
            return cmd
        finally:
            del self._inflight[key]

    async def _replay(self, cmd: Command, req: CommandRequest, who: Principal) -> Command:
        if cmd.fingerprint != fingerprint(req):
            refused = self._new(req, who, "write", now_ns())
            self._end(refused, CommandState.REJECTED, "conflict", "idempotency key reused")
            await self.store.aaudit_only(refused, refused.finished_ns or now_ns())
            raise IdempotencyConflictError(req.idempotency_key, cmd.id)
        return dataclasses.replace(cmd, replayed=True)

    def _new(
        self, req: CommandRequest, who: Principal, kind: str, received: int, *, payload: Any = None
    ) -> Command:
        session, seq = self._session(who)
        base = req.issued_at_ms * 1e6 if req.issued_at_ms is not None else received
        deadline_ms = min(req.deadline_ms, MAX_DEADLINE_MS)
        return Command(
            id=uuid.uuid4().hex,
            session=session,
            seq=seq,
            user_id=who.id,
            user=who.name,
            role=who.role.value,
            target=req.target,
            kind=kind,
            payload=_clean(
                payload
                if payload is not None
                else (list(req.args) if req.args is not None else req.value)
            ),
            idempotency_key=req.idempotency_key,
            fingerprint=fingerprint(req),
            received_ns=received,
            deadline_ns=int(base + deadline_ms * 1e6),
        )

    @staticmethod
    def _end(cmd: Command, state: CommandState, code: str | None, reason: str | None) -> None:
        cmd.state = state
        cmd.reason_code = code
        cmd.reason = reason
        cmd.finished_ns = now_ns()

    def _publish(self, cmd: Command) -> None:
        if self.events is not None:
            self.events.publish({"topic": "commands", "type": "command", **cmd.to_dict()})

    async def _finish(
        self, cmd: Command, state: CommandState, code: str | None, reason: str | None
    ) -> Command:
        self._end(cmd, state, code, reason)
        # Recorded (not fsynced): the key is durable already; see ControlStore for what a
        # power loss can lose.
        await self.store.afinish(cmd, cmd.finished_ns or now_ns())
        self._publish(cmd)
        if state is not CommandState.CONFIRMED:
            log.warning("command %s %s on %s: %s", cmd.id, state.value, cmd.target, reason)
        return cmd

    async def _run(self, req: CommandRequest, who: Principal) -> Command:
        received = now_ns()
        target = self.targets.get(req.target)
        kind = "write" if target is None or target.method is None else "call"
        cmd = self._new(req, who, kind, received)
        refusal = self._refusal(req, who, target, received, cmd)
        if refusal is not None:
            state, code, reason = refusal
            self._end(cmd, state, code, reason)
            await self.store.ainsert(cmd, received)
            self._publish(cmd)
            log.warning("command on %s %s: %s", req.target, state.value, reason)
            if target is None:
                raise UnknownTargetError(
                    req.target,
                    difflib.get_close_matches(req.target, list(self.targets), n=3, cutoff=0.6),
                )
            return cmd
        assert target is not None
        try:
            # durable (fsync) before anything is sent: at most once
            await self.store.ainsert(cmd, received)
        except sqlite3.IntegrityError:
            # the same key from another process sharing the file: answer with its command
            stored = self.store.by_key(who.id, req.idempotency_key)
            assert stored is not None
            return await self._replay(stored, req, who)
        self._publish(cmd)
        lock = self._locks.setdefault(target.name, asyncio.Lock())
        try:
            async with asyncio.timeout(max(0.0, (cmd.deadline_ns - now_ns()) / 1e9)):
                await lock.acquire()
        except TimeoutError:
            return await self._finish(
                cmd, CommandState.EXPIRED, "deadline", "the deadline passed while queued"
            )
        try:
            return await self._execute(cmd, target)
        finally:
            lock.release()

    def _refusal(
        self,
        req: CommandRequest,
        who: Principal,
        target: Target | None,
        received: int,
        cmd: Command,
    ) -> tuple[CommandState, str, str] | None:
        """Why a command is refused before execution, or None."""
        if target is None:
            return (CommandState.REJECTED, "unknown_target", f"unknown target {req.target!r}")
        if not who.role.allows(target.role):
            return (
                CommandState.REJECTED,
                "forbidden",
                f"{who.name!r} has role {who.role.value!r}; {target.name} needs "
                f"{target.role.value!r} or higher",
            )
        if not req.deadline_ms > 0 or cmd.deadline_ns <= received:
            late = (received - cmd.deadline_ns) / 1e6
            return (CommandState.EXPIRED, "deadline", f"the deadline passed {late:.1f} ms ago")
        why = self._bad_payload(req, target)
        if why is not None:
            return (CommandState.REJECTED, why[0], why[1])
        return None

    @staticmethod
    def _bad_payload(req: CommandRequest, t: Target) -> tuple[str, str] | None:
        if t.method is not None:
            args = (
                req.args
                if req.args is not None
                else ((req.value,) if req.value is not None else ())
            )
            if len(args) != t.method.args:
                return "bad_value", f"{t.name} takes {t.method.args} argument(s), got {len(args)}"
            values = [a for a in args if not isinstance(a, str)]
        else:
            if req.args is not None or req.value is None:
                return "bad_value", f"a write to {t.name} needs a 'value' (and no 'args')"
            values = [req.value]
            assert t.signal is not None
            v = req.value
            if t.signal.type == DataType.BOOL and not (isinstance(v, bool) or v in (0, 1)):
                return "bad_value", f"{t.name} is boolean: {v!r} is not true/false"
            if t.signal.type == DataType.INT and not float(v).is_integer():
                return "bad_value", f"{t.name} is an integer: {v!r} is not"
        for v in values:
            if isinstance(v, bool):
                continue
            if not math.isfinite(float(v)):
                return "bad_value", f"{v!r} is not a finite number"
            if (t.minimum is not None and v < t.minimum) or (
                t.maximum is not None and v > t.maximum
            ):
                return (
                    "out_of_range",
                    f"{v:g} is outside {t.name}'s range "
                    f"{t.minimum if t.minimum is not None else '-inf'}.."
                    f"{t.maximum if t.maximum is not None else 'inf'}",
                )
        return None

    async def _execute(self, cmd: Command, target: Target) -> Command:
        if now_ns() >= cmd.deadline_ns:
            return await self._finish(
                cmd, CommandState.EXPIRED, "deadline", "the deadline passed before execution"
            )
        refused = target.interlocks.check(self.table, self.alarms)
        if refused is not None:
            return await self._finish(cmd, CommandState.REJECTED, refused[0], refused[1])
        cmd.state = CommandState.EXECUTING
        self._publish(cmd)
        left_s = (cmd.deadline_ns - now_ns()) / 1e9
        try:
            async with asyncio.timeout(max(0.0, left_s)):
                result, confirmed = await self._send(cmd, target)
        except TimeoutError:
            return await self._finish(
                cmd,
                CommandState.FAILED,
                "timeout",
                "no confirmation within the deadline; the write may still reach the device",
            )
        except AdapterError as exc:
            return await self._finish(cmd, CommandState.FAILED, "device", str(exc))
        cmd.result = result
        if not confirmed:
            return await self._finish(cmd, CommandState.FAILED, "readback", str(result))
        return await self._finish(cmd, CommandState.CONFIRMED, None, None)

    async def _send(self, cmd: Command, target: Target) -> tuple[Any, bool]:
        """Write or call, then confirm; (result, confirmed)."""
        if target.method is not None:
            m = target.method
            caller = self.adapters.get("opcua")
            if caller is None or not hasattr(caller, "call"):
                raise AdapterError(f"no OPC UA adapter runs to call {m.id}")
            self.executed += 1
            out = await caller.call(m.endpoint, m.object, m.method, list(cmd.payload or []))
            return {"status": "Good", "outputs": _jsonable(out)}, True
        assert target.signal is not None
        adapter = self.adapters.get(target.signal.binding or "")
        if adapter is None:
            raise AdapterError(
                f"{target.name} is bound to {target.signal.binding or 'nothing'}, "
                "and no adapter of that kind runs"
            )
        value = _typed(cmd.payload, target.signal.type)
        sent = now_ns()
        self.executed += 1
        written = await adapter.write(target.signal.id, value)
        if not written.ok:
            return written.status, False
        if target.confirm == "ack":
            return written.status, True
        return await self._readback(target, float(value), sent, cmd.deadline_ns)

    async def _readback(
        self, target: Target, value: float, sent: int, deadline_ns: int
    ) -> tuple[Any, bool]:
        assert target.signal is not None
        sid = target.signal.id
        tol = target.tolerance if target.tolerance is not None else max(1e-6 * abs(value), 1e-9)

        def back() -> bool:
            got = self.table.get(sid)
            return got is not None and got[3] >= sent and abs(got[0] - value) <= tol

        ok = await self.table.wait_for(back, max(0.0, (deadline_ns - now_ns()) / 1e9))
        got = self.table.get(sid)
        if ok:
            return f"read back {got[0] if got else value:g}", True
        raise TimeoutError

    # -- hold-to-run --------------------------------------------------------------------------

    async def jog(
        self,
        target_name: str,
        value: float | int | bool,
        who: Principal,
        *,
        deadline_ms: float = 1000.0,
    ) -> tuple[JogSession | None, Command]:
        """Start a hold-to-run session: the write must be confirmed, then the watchdog runs."""
        target = self.target(target_name)
        w = target.writable
        if w is None or w.safe_value is None or w.survival_ms is None:
            raise JogNotAllowedError(
                target_name, "hold-to-run needs a writable with safe_value and survival_ms"
            )
        jog_id = uuid.uuid4().hex[:16]
        req = CommandRequest(target_name, f"jog:{jog_id}", deadline_ms, value=value)
        cmd = await self.submit(req, who)
        if cmd.state is not CommandState.CONFIRMED:
            return None, cmd
        now = time.monotonic()
        jog = JogSession(jog_id, target_name, who, value, w.safe_value, w.survival_ms, now, now)
        self.jogs[jog_id] = jog
        self._spawn(self._watchdog(jog), f"jog-{jog_id}")
        self._publish_jog(jog, "started")
        return jog, cmd

    def _jog(self, jog_id: str, who: Principal) -> JogSession:
        jog = self.jogs.get(jog_id)
        if jog is None:
            raise UnknownJogError(jog_id)
        if jog.user.id != who.id:
            raise JogOwnerError(jog_id, jog.user.name)
        return jog

    def heartbeat(self, jog_id: str, who: Principal) -> JogSession:
        jog = self._jog(jog_id, who)
        jog.last_heartbeat = time.monotonic()
        jog.heartbeats += 1
        return jog

    async def release(self, jog_id: str, who: Principal) -> JogSession:
        jog = self._jog(jog_id, who)
        await self._end_jog(jog, "released")
        return jog

    async def _watchdog(self, jog: JogSession) -> None:
        while jog.ended is None:
            due = jog.last_heartbeat + jog.watchdog_s
            left = due - time.monotonic()
            if left <= 0:
                log.warning(
                    "hold-to-run %s on %s: no heartbeat for %.0f ms; writing the safe value",
                    jog.id,
                    jog.target,
                    jog.watchdog_s * 1e3,
                )
                await self._end_jog(jog, "watchdog")
                return
            await asyncio.sleep(left)

    async def _end_jog(self, jog: JogSession, why: str) -> None:
        if jog.ended is not None:
            return
        jog.ended = why
        self.jogs.pop(jog.id, None)
        await self._safe_write(jog, why)
        jog.done.set()
        self._publish_jog(jog, why)

    async def _safe_write(self, jog: JogSession, why: str) -> Command:
        """The safe value, now: no interlock, no queue, the rest of the survival time."""
        target = self.targets[jog.target]
        received = now_ns()
        budget_ms = jog.survival_ms * (1.0 - WATCHDOG_SHARE) if why == "watchdog" else 1000.0
        req = CommandRequest(jog.target, f"jog:{jog.id}:{why}", budget_ms, value=jog.safe_value)
        kind = "watchdog" if why == "watchdog" else "jog_release"
        cmd = self._new(req, jog.user, kind, received)
        await self.store.ainsert(cmd, received)
        try:
            async with asyncio.timeout(budget_ms / 1000.0):
                result, ok = await self._send(cmd, target)
        except TimeoutError:
            return await self._finish(
                cmd, CommandState.FAILED, "timeout", "safe value not confirmed"
            )
        except AdapterError as exc:
            return await self._finish(cmd, CommandState.FAILED, "device", str(exc))
        cmd.result = result
        if ok:
            jog.safe_at = time.monotonic()
            return await self._finish(cmd, CommandState.CONFIRMED, None, f"safe value ({why})")
        return await self._finish(cmd, CommandState.FAILED, "readback", str(result))

    def _publish_jog(self, jog: JogSession, what: str) -> None:
        if self.events is not None:
            self.events.publish(
                {"topic": "commands", "type": "jog", "event": what, **jog.to_dict()}
            )

    def stats(self) -> dict[str, Any]:
        return {
            "targets": len(self.targets),
            "executed": self.executed,
            "jogs": len(self.jogs),
            "audit_entries": self.store.head_seq,
        }


def _typed(value: Any, dtype: DataType) -> WriteValue:
    if dtype == DataType.BOOL:
        return bool(value)
    if dtype == DataType.INT:
        return int(value)
    return float(value)


def _clean(payload: Any) -> Any:
    """The payload as stored and audited: non-finite numbers (refused anyway) as text."""
    if isinstance(payload, float) and not math.isfinite(payload):
        return str(payload)
    if isinstance(payload, list):
        return [_clean(p) for p in payload]
    return payload


def _jsonable(values: list[Any]) -> list[Any]:
    return [v if isinstance(v, int | float | str | bool) or v is None else str(v) for v in values]
