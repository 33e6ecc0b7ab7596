"""Micro-benchmark of Sparkplug B DATA decoding; prints one JSON line.

The workload is the host's target: 10,000 DDATA payloads of 100 aliased Double metrics, each with
its own timestamp (1,000,000 metrics). Compared, single-threaded, in metrics per second:

* ``numba``: ``fastdecode.decode_messages`` — joining the payloads and decoding them to columns
  (``join_ms`` is the join alone);
* ``pure_python``: the same call with the pure-Python fallback (FACTORY5G_NO_JIT=1);
* ``payload_py``: ``payload.decode_payload`` per payload (the full codec, objects per metric);
* ``protobuf_upb``: the generated protobuf classes of pysparkplug (upb runtime), parsing each
  payload and reading alias, timestamp and value of every metric.

Each figure is the best of a few repetitions (this machine is shared). Run:
``.venv/bin/python bench/decode.py``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable

from factory5g.connect.sparkplug import fastdecode
from factory5g.connect.sparkplug.payload import (
    DataType,
    Metric,
    Payload,
    decode_payload,
    encode_payload,
)

N_PAYLOADS = 10_000
N_METRICS = 100


def make_payloads(n: int, m: int) -> list[bytes]:
    rng = random.Random(5)
    t0 = 1_700_000_000_000
    out = []
    for i in range(n):
        metrics = tuple(
            Metric.for_value(a + 1, DataType.Double, rng.uniform(-1e3, 1e3), timestamp=t0 + i)
            for a in range(m)
        )
        out.append(encode_payload(Payload(timestamp=t0 + i, seq=i % 256, metrics=metrics)))
    return out


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    payloads = make_payloads(N_PAYLOADS, N_METRICS)
    total = N_PAYLOADS * N_METRICS
    compile_s = fastdecode.warm_up()

    numba_s = best(lambda: fastdecode.decode_messages(payloads), 7)
    join_s = best(lambda: fastdecode.join_payloads(payloads), 7)
    cols = fastdecode.decode_messages(payloads)
    assert len(cols) == total
    assert not cols.status.any()

    subset = payloads[:500]
    pure_s = best(lambda: fastdecode.decode_messages(subset, jit=False), 3)
    full_s = best(lambda: [decode_payload(p) for p in subset], 3)

    try:
        from pysparkplug._protobuf import Payload as PbPayload
    except ImportError:  # pysparkplug is a test dependency
        upb_rate = None
    else:

        def upb() -> None:
            for raw in payloads[:2000]:
                pb = PbPayload.FromString(raw)
                for m in pb.metrics:
                    _ = (m.alias, m.timestamp, m.double_value)

        upb_rate = round(2000 * N_METRICS / best(upb, 3))

    print(
        json.dumps(
            {
                "bench": "sparkplug_decode",
                "payloads": N_PAYLOADS,
                "metrics_per_payload": N_METRICS,
                "bytes": sum(map(len, payloads)),
                "numba_metrics_per_s": round(total / numba_s),
                "join_ms": round(join_s * 1e3, 2),
                "pure_python_metrics_per_s": round(len(subset) * N_METRICS / pure_s),
                "payload_py_metrics_per_s": round(len(subset) * N_METRICS / full_s),
                "protobuf_upb_metrics_per_s": upb_rate,
                "warm_up_s": round(compile_s, 2),
                "python": sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
