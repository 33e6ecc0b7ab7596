"""The vectorised engine: deadband and delay edges, every kind, and a property check against
the one-sample-at-a-time reference."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from factory5g.apps.alarms import AlarmEngine, compile_rules
from factory5g.stream import Batch, Quality
from tests.apps.alarms.conftest import RefRule, S, alarm_site, reference


def engine(*rules: str) -> AlarmEngine:
    return AlarmEngine(compile_rules(alarm_site(rules)), 0)


def changes(e: AlarmEngine, t: object) -> list[tuple[str, float, bool]]:
    from factory5g.apps.alarms import Transitions

    assert isinstance(t, Transitions)
    return [
        (e.rules.info[r].id, ts / S, bool(a))
        for r, ts, a in zip(t.rule.tolist(), t.ts.tolist(), t.active.tolist(), strict=True)
    ]


HIGH = 'signal = "m.temp"\nkind = "high"\nlimit = 100\ndeadband = 5'


def test_high_limit_with_deadband_holds_inside_the_band() -> None:
    e = engine(HIGH)
    # 100 is not above 100; 100.5 is; 96 is inside the band (holds); 95 resets (<= 100 - 5)
    t = e.evaluate(Batch.of(0, [0, S, 2 * S, 3 * S], [100.0, 100.5, 96.0, 95.0]), 0)
    assert changes(e, t) == [("m.temp/high", 1.0, True), ("m.temp/high", 3.0, False)]


def test_low_limit_resets_at_limit_plus_deadband() -> None:
    e = engine('signal = "m.temp"\nkind = "low"\nlimit = 10\ndeadband = 2')
    t = e.evaluate(Batch.of(0, [0, S, 2 * S, 3 * S], [9.9, 11.9, 12.0, 9.0]), 0)
    assert changes(e, t) == [
        ("m.temp/low", 0.0, True),
        ("m.temp/low", 2.0, False),
        ("m.temp/low", 3.0, True),
    ]


def test_on_delay_edge_exactly_and_just_short() -> None:
    rule = HIGH + "\non_delay_s = 1"
    e = engine(rule)  # above for exactly 1 s: annunciated at 1 s
    assert changes(e, e.evaluate(Batch.of(0, [0, S], [101.0, 101.0]), 0)) == [
        ("m.temp/high", 1.0, True)
    ]
    e = engine(rule)  # above for 1 s - 1 ns, then back: nothing
    assert changes(e, e.evaluate(Batch.of(0, [0, S - 1], [101.0, 90.0]), 0)) == []
    assert changes(e, e.tick(10 * S)) == []


def test_a_run_between_samples_fires_at_start_plus_delay() -> None:
    # sample-and-hold: high from 0 to 5 s with no sample between; the delay of 1 s elapsed
    e = engine(HIGH + "\non_delay_s = 1\noff_delay_s = 2")
    t = e.evaluate(Batch.of(0, [0, 5 * S, 6 * S], [101.0, 50.0, 50.0]), 0)
    assert changes(e, t) == [("m.temp/high", 1.0, True)]  # off at 7 s: not yet evaluated
    assert changes(e, e.tick(7 * S - 1)) == []
    assert changes(e, e.tick(7 * S)) == [("m.temp/high", 7.0, False)]


def test_off_delay_interrupted_keeps_the_alarm() -> None:
    e = engine(HIGH + "\noff_delay_s = 2")
    t = e.evaluate(Batch.of(0, [0, S, 2 * S, 3 * S + 1], [101.0, 50.0, 101.0, 101.0]), 0)
    assert changes(e, t) == [("m.temp/high", 0.0, True)]
    assert e.active[0]


def test_rate_state_bad_quality_and_multiple_rules_per_signal() -> None:
    e = engine(
        HIGH,
        'signal = "m.temp"\nkind = "rate"\nlimit = 10',
        'signal = "m.temp"\nkind = "bad_quality"',
        'signal = "m.door"\nkind = "state"\nstate = false',
    )
    b = Batch.of(
        [0, 0, 0, 1, 0],
        [0, S, 2 * S, 2 * S, 3 * S],
        [50.0, 55.0, 80.0, 0.0, np.nan],
        [Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.BAD_NOT_CONNECTED],
    )
    got = changes(e, e.evaluate(b, 0))
    assert got == [
        ("m.temp/rate", 2.0, True),  # 25 /s > 10 /s
        ("m.door/state", 2.0, True),
        ("m.temp/bad_quality", 3.0, True),
    ]
    # the bad sample decided nothing for the value rules: high and rate hold
    assert not e.active[0]
    assert e.active[1]


def test_stale_after_silence_and_back_with_data() -> None:
    e = engine('signal = "m.flow"\nkind = "stale"\nafter_s = 5')
    assert changes(e, e.tick(5 * S)) == []
    assert changes(e, e.tick(5 * S + 1)) == [("m.flow/stale", 5.0, True)]
    e.evaluate(Batch.of(2, 6 * S, 1.0), 6 * S)  # data again
    assert changes(e, e.tick(6 * S)) == [("m.flow/stale", 6.0, False)]


def test_historical_batches_and_unknown_signals_raise_nothing() -> None:
    e = engine(HIGH)
    assert len(e.evaluate(Batch.of(0, 0, 500.0, historical=True), 0)) == 0
    assert len(e.evaluate(Batch.of([7, -1], [0, 0], [500.0, 500.0]), 0)) == 0
    assert not e.active.any()


def test_unordered_samples_are_taken_in_time_order() -> None:
    e = engine(HIGH)
    t = e.evaluate(Batch.of(0, [2 * S, 0, S], [50.0, 101.0, 50.0]), 0)
    assert changes(e, t) == [("m.temp/high", 0.0, True), ("m.temp/high", 1.0, False)]


kinds = st.sampled_from(["high", "low", "rate", "bad_quality", "state"])


@settings(max_examples=300, deadline=None)
@given(
    kind=kinds,
    limit=st.sampled_from([0.0, 5.0, 10.0]),
    deadband=st.sampled_from([0.0, 1.0, 3.0]),
    on_s=st.sampled_from([0, 1, 2, 5]),
    off_s=st.sampled_from([0, 1, 3]),
    steps=st.lists(
        st.tuples(
            st.integers(1, 4),
            st.sampled_from([-2.0, 0.0, 1.0, 4.0, 5.0, 6.0, 9.0, 10.0, 12.0, float("nan")]),
            st.sampled_from([0xC0, 0xC0, 0xC0, 0x40, 0x00]),
        ),
        min_size=1,
        max_size=40,
    ),
    cuts=st.lists(st.integers(0, 40), max_size=4),
    shuffle=st.randoms(use_true_random=False),
)
def test_vectorised_matches_the_reference(
    kind: str,
    limit: float,
    deadband: float,
    on_s: int,
    off_s: int,
    steps: list[tuple[int, float, int]],
    cuts: list[int],
    shuffle: object,
) -> None:
    body = f'signal = "m.temp"\nkind = "{kind}"\non_delay_s = {on_s}\noff_delay_s = {off_s}'
    if kind in ("high", "low", "rate"):
        body += f"\nlimit = {limit}\ndeadband = {deadband}"
    if kind == "state":
        body += "\nstate = true"
    # a second rule on the same signal and one on another: the CSR expansion path
    e = engine(
        body,
        'signal = "m.temp"\nkind = "bad_quality"',
        'signal = "m.flow"\nkind = "high"\nlimit = 1',
    )
    t, samples = 0, []
    for dt, v, q in steps:
        t += dt * S // 2
        samples.append((t, v, q))
    want = reference(RefRule(kind, limit, deadband, on_s * S, off_s * S), samples)
    got: list[tuple[int, bool]] = []
    bounds = sorted({0, len(samples), *(c for c in cuts if c <= len(samples))})
    import random

    assert isinstance(shuffle, random.Random)
    for a, b in itertools.pairwise(bounds):
        chunk = samples[a:b]
        order = list(range(len(chunk)))
        shuffle.shuffle(order)  # within a batch, any order: the engine sorts by time
        sig = [0] * len(chunk) + [2]
        ts = [chunk[i][0] for i in order] + [chunk[-1][0]]
        vs = [chunk[i][1] for i in order] + [0.0]
        qs = [chunk[i][2] for i in order] + [0xC0]
        tr = e.evaluate(Batch.of(sig, ts, vs, qs), 0)
        got += [
            (ts_, bool(a_))
            for r, ts_, a_ in zip(tr.rule.tolist(), tr.ts.tolist(), tr.active.tolist(), strict=True)
            if r == 0
        ]
    assert got == want
