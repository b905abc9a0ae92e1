"""Trace and span ids that a seeded ``random`` cannot repeat, drawn without a system call.

The SDK's default id generator draws from Python's ``random`` module, which
training scripts seed for reproducibility (``keras.utils.set_random_seed``,
``random.seed``). Every run, and every worker of a job, would then produce the
same trace ids, and an exemplar's ``trace_id`` would point at several traces.

These ids come from a private generator seeded from the operating system: no
``random.seed`` reaches it. It is not ``os.urandom`` per id: that is a system
call that releases the GIL, and in a busy threaded server each id then waits
for the GIL again (a py-spy profile of the example service under load put the
two ids per request at 8 % of its samples; throughput A/B runs could not
resolve it from the noise). A forked child re-seeds it from the OS, as
``random`` does for its own generator, so workers forked from one parent never
share ids.
"""

from __future__ import annotations

import os
import random

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator

_private = random.Random(os.urandom(32))


def _reseed() -> None:
    _private.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


class PrivateRandomIdGenerator(IdGenerator):
    """Ids from otel_ml's own OS-seeded generator, immune to ``random.seed`` and re-seeded after ``fork``.

    Example:
        >>> random.seed(7)
        >>> first = PrivateRandomIdGenerator().generate_trace_id()
        >>> random.seed(7)
        >>> PrivateRandomIdGenerator().generate_trace_id() != first
        True
    """

    def generate_span_id(self) -> int:
        span_id = _private.getrandbits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = _private.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = _private.getrandbits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = _private.getrandbits(128)
        return trace_id
