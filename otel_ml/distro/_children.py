"""A process that ``multiprocessing`` started (spawn, forkserver) makes the same choice as a forked child.

Under ``opentelemetry-instrument`` every interpreter that inherits the
environment runs the auto-instrumentation again: each ``spawn`` pool worker
built its own providers and tried to serve ``/metrics`` on the parent's port
(one ERROR line per worker, and ``Pool(4)`` took 5.9 s instead of 0.9 s). The
same happens when the main module calls ``otel_ml.instrument()`` at top level,
since spawn imports it again in every worker (as ``__mp_main__``). A forked child does not serve
the embedded endpoint (the port is the parent's) and keeps the push exporters;
so does a ``multiprocessing`` worker here:

- with only the embedded endpoint (the default), whatever the worker measured
  would have nowhere to go: otel_ml stays off in it, as with
  ``OTEL_SDK_DISABLED`` (no provider, no patch, no thread, no socket), which
  keeps its start as quick as the auto-instrumentation allows;
- with a push exporter (``OTEL_METRICS_EXPORTER=otlp``, traces to a collector),
  the worker exports its own telemetry like a forked child, without the
  embedded endpoint;
- ``multiprocessing``'s own helper processes (the resource tracker, the
  forkserver) are never instrumented.

A worker function that calls ``otel_ml.instrument()`` itself (training in a
``Process``) is instrumented as asked, endpoint included: only the
auto-instrumentation and the main module's top level, which the worker did
not ask for, make the forked child's choice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

PULL: Final = frozenset({"otel_ml_prometheus", "prometheus"})
"""Exporters that serve a port: the parent's, never a child's."""
_WORKER: Final = "from multiprocessing.spawn import spawn_main"
_HELPERS: Final = ("from multiprocessing.resource_tracker import", "from multiprocessing.forkserver import")


def _argv() -> list[str]:
    return list(getattr(sys, "orig_argv", sys.argv))


def is_helper() -> bool:
    """``multiprocessing``'s resource tracker or forkserver (started with ``-c``)."""
    return any(arg.startswith(_HELPERS) for arg in _argv())


def is_worker() -> bool:
    """A process ``multiprocessing`` started with spawn, known from its command line (as in ``sitecustomize``)."""
    argv = _argv()
    return "--multiprocessing-fork" in argv or any(arg.startswith(_WORKER) for arg in argv)


def reimported_main(caller: FrameType) -> bool:
    """Whether ``caller`` is the main module's top level, imported again by spawn in a worker.

    Not a function of that module (a ``Process`` target) that the worker runs: it asked.
    """
    return caller.f_globals.get("__name__") == "__mp_main__" and caller.f_code.co_name == "<module>"


def _names(variable: str, default: str) -> list[str]:
    raw = os.environ.get(variable, "").strip() or default
    return [name.strip() for name in raw.split(",") if name.strip() and name.strip() != "none"]


def push_metric_exporters() -> list[str]:
    """``OTEL_METRICS_EXPORTER``'s exporters that push (its default serves the embedded endpoint)."""
    return [name for name in _names("OTEL_METRICS_EXPORTER", "otel_ml_prometheus") if name not in PULL]


def pushes() -> bool:
    """Whether anything configured would deliver a worker's telemetry (the SDK set-up's defaults)."""
    otlp = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(push_metric_exporters() or _names("OTEL_TRACES_EXPORTER", "otlp" if otlp else "none"))


def stays_off(worker: bool) -> bool:
    """Whether otel_ml stays off: a helper, or a ``worker`` whose telemetry could go nowhere."""
    return is_helper() or (worker and not pushes())


@contextmanager
def push_only(worker: bool) -> Iterator[None]:
    """For a ``worker``: the providers are built with the push exporters only (no embedded endpoint)."""
    if not worker:
        yield
        return
    variable = "OTEL_METRICS_EXPORTER"
    before = os.environ.get(variable)
    os.environ[variable] = ",".join(push_metric_exporters()) or "none"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before
