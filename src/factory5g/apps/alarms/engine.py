"""Vectorised alarm condition evaluation: a Batch in, the alarms that turned on or off out.

For every rule the engine keeps, in arrays of one element per rule:

* ``cond`` — the raw condition after the deadband (hysteresis): a high alarm sets above
  ``limit`` and resets at or below ``limit - deadband``; in between, it holds (ISA-18.2 §10.4.2);
* ``since`` — when the current run of ``cond`` began (ns);
* ``active`` — the condition after the on/off delays: it turns on once ``cond`` has been true for
  ``on_delay`` without interruption, off once false for ``off_delay``.

Samples hold their value until the next one (sample-and-hold), so a run that lasted long enough
between two samples fires at ``start + delay`` even if no sample fell on that instant. A Batch is
evaluated up to its last sample per rule; :meth:`AlarmEngine.tick` carries delays and stale-data
detection forward in wall-clock time when no sample arrives.

How a Batch is evaluated without a per-sample Python loop: samples are expanded to (sample,
rule) pairs through the CSR index, sorted by (rule, time), and every per-rule recurrence is a
*forward fill of the last decisive pair* — ``np.maximum.accumulate`` over the pair indices where
the decision is made, bounded by the start of each rule's group:

1. hysteresis: pairs that set or reset the condition are decisive, the others hold;
2. runs: the condition's change points start runs (plus the run carried over per rule);
3. delays: a run of ``cond`` lasting at least its delay yields an on (off) event at
   ``start + delay``; events equal to the state before them collapse. What is left are the
   transitions, few, handed to the ISA-18.2 state machine in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from factory5g.apps.alarms.rules import CompiledRules, Kind
from factory5g.stream import Batch, Quality

__all__ = ["AlarmEngine", "Transitions"]

_NEVER: Final = np.iinfo(np.int64).min // 2
_USABLE: Final = int(Quality.UNCERTAIN)


@dataclass(frozen=True, slots=True, eq=False)
class Transitions:
    """Alarms that turned on (``active``) or off, each with when and the value that did it."""

    rule: NDArray[np.int64]
    ts: NDArray[np.int64]
    active: NDArray[np.bool_]
    value: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.rule.shape[0])

    @classmethod
    def empty(cls) -> Transitions:
        return cls(
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool), np.empty(0, float)
        )

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        t = cls(
            np.concatenate([p.rule for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.active for p in parts]),
            np.concatenate([p.value for p in parts]),
        )
        order = np.argsort(t.ts, kind="stable")
        return cls(t.rule[order], t.ts[order], t.active[order], t.value[order])


def _forward_fill(
    decisive: NDArray[np.bool_], group_start: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Per pair, the index of the last decisive pair at or before it in its group, and
    whether there is one (else the rule's carried state applies)."""
    idx = np.arange(decisive.shape[0], dtype=np.int64)
    last = np.maximum.accumulate(np.where(decisive, idx, -1))
    has = last >= group_start
    return np.where(has, last, 0), has


class AlarmEngine:
    """Condition state of every rule; :meth:`evaluate` a Batch, :meth:`tick` the clock."""

    def __init__(self, rules: CompiledRules, now_ns: int) -> None:
        self.rules = rules
        n = len(rules)
        self.cond = np.zeros(n, bool)
        self.since = np.full(n, now_ns, np.int64)
        self.active = np.zeros(n, bool)
        self.last_value = np.full(n, np.nan)
        self.last_ts = np.full(n, _NEVER, np.int64)  # of the last sample (rate of change)
        self.last_seen = np.full(n, now_ns, np.int64)  # arrival of the last sample (stale)
        self.samples = 0
        self._stale = np.flatnonzero(rules.kind == Kind.STALE)
        self._sample_kinds = rules.kind != Kind.STALE
        self._radix = n < np.iinfo(np.int16).max  # 16-bit keys sort by radix sort

    # -- samples ----------------------------------------------------------------------------

    def _pairs(self, batch: Batch) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(sample index, rule index) of every sample and each of its signal's rules."""
        r = self.rules
        sig = batch.signal.astype(np.int64, copy=False)
        inside = (sig >= 0) & (sig < r.count.shape[0])
        if not inside.all():
            keep = np.flatnonzero(inside)
            sig = sig[keep]
        else:
            keep = None
        counts = r.count[sig]
        if r.max_per_signal <= 1:  # the usual case: at most one rule per signal
            has = np.flatnonzero(counts)
            rule = r.by_signal[r.first[sig[has]]]
            sample = has if keep is None else keep[has]
            return sample, rule
        total = int(counts.sum())
        rep = np.repeat(np.arange(sig.shape[0], dtype=np.int64), counts)
        offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        rule = r.by_signal[r.first[sig[rep]] + offset]
        sample = rep if keep is None else keep[rep]
        return sample, rule

    def evaluate(self, batch: Batch, now_ns: int) -> Transitions:
        """The transitions the samples of ``batch`` cause; the rules' state moves on.

        Historical (store-and-forward) batches are not live: they raise no alarm."""
        if batch.historical or len(batch) == 0 or len(self.rules) == 0:
            return Transitions.empty()
        self.samples += len(batch)
        sample, rule = self._pairs(batch)
        if rule.shape[0] == 0:
            return Transitions.empty()
        stale = ~self._sample_kinds[rule]
        if stale.any():
            seen = rule[stale]
            self.last_seen[seen] = now_ns
            back = seen[self.cond[seen]]  # data again: the stale condition ends now
            self.cond[back] = False
            self.since[back] = now_ns
            sample, rule = sample[~stale], rule[~stale]
            if rule.shape[0] == 0:
                return Transitions.empty()
        ts = batch.ts[sample]
        # Sort the pairs by (rule, time): stable by rule when time already ascends.
        if ts.shape[0] < 2 or bool((ts[1:] >= ts[:-1]).all()):
            key = rule.astype(np.int16) if self._radix else rule
            order = np.argsort(key, kind="stable")
        else:
            order = np.lexsort((ts, rule))
        rule, ts, sample = rule[order], ts[order], sample[order]
        return self._evaluate_sorted(rule, ts, batch.value[sample], batch.quality[sample])

    def _evaluate_sorted(
        self,
        r: NDArray[np.int64],
        t: NDArray[np.int64],
        v: NDArray[np.float64],
        q: NDArray[np.uint8],
    ) -> Transitions:
        rules = self.rules
        n = r.shape[0]
        idx = np.arange(n, dtype=np.int64)
        first = np.empty(n, bool)
        first[0] = True
        np.not_equal(r[1:], r[:-1], out=first[1:])
        last = np.empty(n, bool)
        last[-1] = True
        last[:-1] = first[1:]
        group_start = np.maximum.accumulate(np.where(first, idx, 0))
        kind = rules.kind[r]
        lim = rules.limit[r]
        db = rules.deadband[r]
        usable = (q >= _USABLE) & ~np.isnan(v)

        # 1. set / reset per kind (comparisons with NaN are False: never decisive)
        set_ = np.zeros(n, bool)
        reset = np.zeros(n, bool)
        m = kind == Kind.HIGH
        if m.any():
            set_ |= m & usable & (v > lim)
            reset |= m & usable & (v <= lim - db)
        m = kind == Kind.LOW
        if m.any():
            set_ |= m & usable & (v < lim)
            reset |= m & usable & (v >= lim + db)
        m = kind == Kind.STATE
        if m.any():
            on = (v != 0.0) == (rules.state[r] != 0.0)
            set_ |= m & usable & on
            reset |= m & usable & ~on
        m = kind == Kind.BAD_QUALITY
        if m.any():
            set_ |= m & ~usable
            reset |= m & usable
        m = kind == Kind.RATE
        if m.any():
            pv = np.empty(n)
            pv[1:] = v[:-1]
            pv[first] = self.last_value[r[first]]
            pt = np.empty(n, np.int64)
            pt[1:] = t[:-1]
            pt[first] = self.last_ts[r[first]]
            dt = t - pt
            ok = m & usable & ~np.isnan(pv) & (dt > 0) & (pt != _NEVER)
            with np.errstate(divide="ignore", invalid="ignore"):
                rate = np.abs(v - pv) / np.where(ok, dt, 1) * 1e9
            set_ |= ok & (rate > lim)
            reset |= ok & (rate <= lim - db)

        # 2. hysteresis: the last decisive pair decides, else the carried condition
        at, has = _forward_fill(set_ | reset, group_start)
        carried = self.cond[r]
        c = np.where(has, set_[at], carried)

        # 3. runs: the carried run of each rule, then one per change of the condition
        prev = np.empty(n, bool)
        prev[1:] = c[:-1]
        prev[first] = carried[first]
        change = np.flatnonzero(c != prev)
        starts = np.flatnonzero(first)
        run_pos = np.concatenate((2 * starts, 2 * change + 1))
        run_rule = np.concatenate((r[starts], r[change]))
        run_start = np.concatenate((self.since[r[starts]], t[change]))
        run_cond = np.concatenate((carried[starts], c[change]))
        run_value = np.concatenate((self.last_value[r[starts]], v[change]))
        o = np.argsort(run_pos, kind="stable")
        run_rule, run_start, run_cond, run_value = (
            run_rule[o],
            run_start[o],
            run_cond[o],
            run_value[o],
        )
        horizon = np.empty(rules.signal.shape[0], np.int64)
        horizon[r[last]] = t[last]
        run_end = np.empty(run_rule.shape[0], np.int64)
        same = run_rule[1:] == run_rule[:-1]
        run_end[:-1] = np.where(same, run_start[1:], horizon[run_rule[:-1]])
        run_end[-1] = horizon[run_rule[-1]]
        delay = np.where(run_cond, rules.on_ns[run_rule], rules.off_ns[run_rule])
        ev_ts = run_start + delay
        has_ev = ev_ts <= run_end

        # 4. events → transitions: collapse events equal to the state before them
        e = np.flatnonzero(has_ev)
        ev_rule, ev_ts, ev_on, ev_value = run_rule[e], ev_ts[e], run_cond[e], run_value[e]
        trans = Transitions.empty()
        if e.shape[0]:
            ev_first = np.empty(e.shape[0], bool)
            ev_first[0] = True
            np.not_equal(ev_rule[1:], ev_rule[:-1], out=ev_first[1:])
            before = np.empty(e.shape[0], bool)
            before[1:] = ev_on[:-1]
            before[ev_first] = self.active[ev_rule[ev_first]]
            k = np.flatnonzero(ev_on != before)
            if k.shape[0]:
                trans = Transitions(ev_rule[k], ev_ts[k], ev_on[k], ev_value[k])
            ev_last = np.empty(e.shape[0], bool)
            ev_last[-1] = True
            ev_last[:-1] = ev_first[1:]
            self.active[ev_rule[ev_last]] = ev_on[ev_last]

        # 5. carry the state of every rule that had samples
        rl = r[last]
        self.cond[rl] = c[last]
        run_last = np.empty(run_rule.shape[0], bool)
        run_last[-1] = True
        run_last[:-1] = ~same
        self.since[run_rule[run_last]] = run_start[run_last]
        self.last_value[rl] = v[last]
        self.last_ts[rl] = t[last]
        if trans.rule.shape[0] > 1:
            order = np.argsort(trans.ts, kind="stable")
            trans = Transitions(
                trans.rule[order], trans.ts[order], trans.active[order], trans.value[order]
            )
        return trans

    # -- the clock --------------------------------------------------------------------------

    def tick(self, now_ns: int) -> Transitions:
        """Stale data and delays that elapsed with no sample, evaluated at ``now_ns``."""
        st = self._stale
        if st.shape[0]:
            stale = now_ns - self.last_seen[st] > self.rules.after_ns[st]
            turned = st[stale != self.cond[st]]
            if turned.shape[0]:
                on = ~self.cond[turned]
                self.cond[turned] = on
                self.since[turned] = np.where(
                    on, self.last_seen[turned] + self.rules.after_ns[turned], now_ns
                )
        pending = np.flatnonzero(self.cond != self.active)
        if pending.shape[0] == 0:
            return Transitions.empty()
        on = self.cond[pending]
        delay = np.where(on, self.rules.on_ns[pending], self.rules.off_ns[pending])
        at = self.since[pending] + delay
        due = at <= now_ns
        k = pending[due]
        if k.shape[0] == 0:
            return Transitions.empty()
        self.active[k] = on[due]
        order = np.argsort(at[due], kind="stable")
        return Transitions(k[order], at[due][order], on[due][order], self.last_value[k][order])

    def restore(self, rule: int, active: bool, since_ns: int) -> None:
        """Start a rule as ``active`` (after a restart): its condition is assumed to hold until
        samples say otherwise."""
        self.cond[rule] = active
        self.active[rule] = active
        self.since[rule] = since_ns
