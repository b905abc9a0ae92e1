"""Histogram bucket boundaries in seconds, from sub-millisecond steps to minutes-long epochs.

The SDK's default boundaries (0, 5, 10, ... 10000) are shaped for
milliseconds: every training step in seconds would land in the first bucket.
otel_ml passes these as the instrument's *advisory* boundaries, so they apply
under any SDK MeterProvider, including one the user configured, and a user's
own View still wins.
"""

from __future__ import annotations

from typing import Final

DURATION_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)

BATCH_SIZE_BUCKETS: Final[tuple[float, ...]] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
