"""Trace and span ids that a seeded ``random`` cannot repeat.

The SDK's default id generator draws from Python's ``random`` module, which
training scripts seed for reproducibility (``keras.utils.set_random_seed``,
``random.seed``). Every run, and every worker of a job, would then produce the
same trace ids, and an exemplar's ``trace_id`` would point at several traces.
These ids come from the operating system's generator instead.
"""

from __future__ import annotations

import random

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator

_system = random.SystemRandom()


class SystemRandomIdGenerator(IdGenerator):
    """Ids from ``os.urandom`` (via ``random.SystemRandom``), immune to ``random.seed``."""

    def generate_span_id(self) -> int:
        span_id = _system.getrandbits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = _system.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = _system.getrandbits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = _system.getrandbits(128)
        return trace_id
