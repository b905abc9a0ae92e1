"""Exemplar reservoirs that never draw from the program's random streams.

The SDK's default reservoir for counters and gauges
(``SimpleFixedSizeExemplarReservoir``) picks which measurement to keep with
the module-level :func:`random.randrange`. Keras draws its default layer
seeds from that same generator, so a seeded program that builds a model after
a ``fit`` would get other weights when instrumented, and how many numbers are
drawn depends on timing. otel_ml therefore installs, through the SDK's
documented extension point (a :class:`View` with an
``exemplar_reservoir_factory``), the same sampling algorithm driven by a
private generator; histograms keep the SDK's deterministic "latest per
bucket" reservoir.
"""

from __future__ import annotations

import random
import sys
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import AlignedHistogramBucketExemplarReservoir, SimpleFixedSizeExemplarReservoir
from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation
from opentelemetry.sdk.metrics._internal.exemplar.exemplar_reservoir import BucketIndexError
from opentelemetry.sdk.metrics.view import View
from opentelemetry.util.types import Attributes

# Seeded once from the OS, never from ``random.seed``: its draws are ours alone.
_PRIVATE = random.Random(random.SystemRandom().getrandbits(64))


class PrivateRandomExemplarReservoir(SimpleFixedSizeExemplarReservoir):
    """The SDK's uniformly weighted fixed-size reservoir, sampling with a private generator.

    Example:
        >>> reservoir = PrivateRandomExemplarReservoir(size=1)
        >>> state = random.getstate()
        >>> for value in range(100):
        ...     reservoir.offer(value, 0, {}, Context())
        >>> random.getstate() == state
        True
    """

    def _find_bucket_index(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> int:
        self._measurements_seen += 1
        if self._measurements_seen <= self._size:
            return self._measurements_seen - 1
        index = _PRIVATE.randrange(0, self._measurements_seen)
        if index < self._size:
            return index
        raise BucketIndexError("measurement not sampled")


def _reservoir_factory(aggregation_type: type[Any]) -> Any:
    if issubclass(aggregation_type, _ExplicitBucketHistogramAggregation):
        return AlignedHistogramBucketExemplarReservoir
    return PrivateRandomExemplarReservoir


def seed_safe_views() -> list[View]:
    """Views for a ``MeterProvider`` otel_ml builds: every instrument, private exemplar sampling."""
    return [View(instrument_name="*", exemplar_reservoir_factory=_reservoir_factory)]


# Modules of the OTLP exporters whose retry jitter calls the module-level ``random``.
_RETRYING_EXPORTERS = ("opentelemetry.exporter.otlp.proto.grpc.exporter", "opentelemetry.exporter.otlp.common.http")


def private_retry_jitter() -> None:
    """Give the OTLP exporters' retry jitter the private generator, not the program's ``random``.

    While a collector is down, each retry of an export would otherwise draw
    from the generator the training script seeded. Done where otel_ml builds
    the exporters; a module already pointing elsewhere is left as it is.
    """
    for name in _RETRYING_EXPORTERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "random", None) is random:
            module.random = _PRIVATE  # type: ignore[attr-defined]
