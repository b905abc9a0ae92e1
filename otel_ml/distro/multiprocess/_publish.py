"""The workers' side: each process publishes its cumulative telemetry into the deployment's directory.

:class:`PublishingReader` takes the place of the embedded endpoint's reader in
every process of a pre-fork deployment. A daemon thread collects every
``interval`` seconds (and once more at exit) and writes the process's points
to ``<directory>/otel_ml-<pid>.json`` atomically (write, then rename), so the
endpoint process never reads half a file. The first publication makes sure
that an endpoint process serves the directory, and the loop starts it again
if it dies (:mod:`._spawn`).

A worker forked from a process that already measured (gunicorn ``--preload``:
the master loaded the model) inherits the master's cumulative totals, which
the master publishes itself. The points collected just before the fork are
therefore the child's baseline, subtracted from its counters and histograms:
each count is published by exactly one process.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    HistogramDataPoint,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData

from otel_ml._core import announce
from otel_ml._core.guard import report
from otel_ml.distro.multiprocess._mode import Deployment
from otel_ml.distro.multiprocess._spawn import ensure_endpoint, keep_endpoint

_LOG = logging.getLogger(__name__)

FORMAT = 1
PREFIX = "otel_ml-"
SUFFIX = ".json"
_MAX_EXEMPLARS = 64  # per point: the endpoint keeps only the latest of each bucket anyway

_Key = tuple[str, str, str, tuple[tuple[str, Any], ...]]  # scope, version, metric, attributes


def process_start(pid: int) -> str:
    """The process's start time (clock ticks since boot, from /proc), '' where unknown: it tells a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


def attribute_key(attributes: Any) -> tuple[tuple[str, Any], ...]:
    """A hashable form of an attribute mapping (sequences as tuples), in key order."""
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in (attributes or {}).items()))


class PublishingReader(MetricReader):
    """Publishes this process's cumulative points for the deployment's endpoint process.

    Args:
        deployment: Where to publish and how often.
        serve: Whether an endpoint process should serve the directory (False with OTLP).
    """

    def __init__(self, deployment: Deployment, *, serve: bool = True) -> None:
        cumulative = AggregationTemporality.CUMULATIVE
        kinds = (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
        super().__init__(preferred_temporality=dict.fromkeys(kinds, cumulative))
        self.deployment = deployment
        self._serve = serve
        self._lock = threading.Lock()  # one publication at a time; held across a fork
        self._latest: MetricsData | None = None
        self._baseline: dict[_Key, Any] = {}
        self._at_fork: dict[_Key, Any] = {}
        self._pid = os.getpid()
        self._start_of: tuple[int, str] = (0, "")  # (pid, its start time): /proc read once per process
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._forking = False
        _readers.append(self)
        atexit.register(self.publish)
        announce.listen(self.publish)  # a long model run is published as started before it holds the GIL
        if _uwsgi_master():
            _hook_uwsgi_fork()  # uWSGI forks in C: the workers start publishing from its post-fork hook
        else:
            self._start()

    @property
    def path(self) -> str:
        """This process's file."""
        return os.path.join(self.deployment.directory, f"{PREFIX}{self._pid}{SUFFIX}")

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="otel_ml-multiprocess-publish", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        if self._serve:
            try:
                ensure_endpoint(self.deployment)
            except Exception as exc:  # noqa: BLE001 - the program goes on without the endpoint
                report("multiprocess.endpoint", exc)
        while not self._stopped.wait(self.deployment.interval):
            self.publish()
            if self._serve:
                keep_endpoint(self.deployment)  # a dead endpoint process is started again (once a second at most)

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._latest = metrics_data

    def publish(self) -> None:
        """Collect and write this process's file now (never raises)."""
        try:
            with self._lock:
                if os.getpid() != self._pid:
                    return  # forked without the fork hooks (a C-level fork): its parent publishes
                # No timeout: time spent waiting for the GIL (a model's run) is not a callback that hangs,
                # and a timed-out collection would leave the observable instruments' readings behind.
                self.collect(timeout_millis=math.inf)
                data, self._latest = self._latest, None
                document = encode(data, self._baseline)
                if self._start_of[0] != self._pid or not self._start_of[1]:  # read once per process: it never changes
                    self._start_of = (self._pid, process_start(self._pid))
                document.update(pid=self._pid, start=self._start_of[1], owner=self.deployment.owner)
                _write(self.path, document)
        except Exception as exc:  # noqa: BLE001 - the program goes on; the next publication retries
            report("multiprocess.publish", exc)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.publish()  # a recycled worker's last requests
        self._stopped.set()
        atexit.unregister(self.publish)
        announce.forget(self.publish)
        if self in _readers:
            _readers.remove(self)

    # --- fork ------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        self._lock.acquire()
        self._forking = True
        try:
            self.collect(timeout_millis=math.inf)
            data, self._latest = self._latest, None
            self._at_fork = baseline_of(data)
        except Exception as exc:  # noqa: BLE001
            self._at_fork = {}
            report("multiprocess.fork", exc)

    def _after_fork_in_parent(self) -> None:
        self._at_fork, self._forking = {}, False
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        if os.getpid() == self._pid:
            return  # uWSGI's post-fork hook after Python's own
        if not self._forking:
            # A fork without the before-fork hook (uWSGI's, in C): the master ran no publishing thread,
            # so no lock is held; what this process inherited is the baseline.
            self.collect(timeout_millis=math.inf)
            data, self._latest = self._latest, None
            self._at_fork = baseline_of(data)
        self._forking = False
        self._lock = threading.Lock()
        self._baseline, self._at_fork = self._at_fork, {}
        self._pid = os.getpid()
        self._stopped = threading.Event()
        self._start()


_readers: list[PublishingReader] = []


def _before_fork() -> None:
    for reader in _readers:
        reader._before_fork()


def _after_fork_in_parent() -> None:
    for reader in _readers:
        reader._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for reader in _readers:
        reader._after_fork_in_child()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def _uwsgi_master() -> bool:
    """Whether this is a uWSGI master before its fork (``uwsgi.worker_id()`` is 0 there)."""
    uwsgi: Any = sys.modules.get("uwsgi")
    try:
        return uwsgi is not None and int(uwsgi.worker_id()) == 0
    except Exception:  # noqa: BLE001 - an unusual uWSGI: treated as a plain process
        return False


_uwsgi_hooked: list[bool] = []


def _hook_uwsgi_fork() -> None:
    """Run :func:`_after_fork_in_child` in every uWSGI worker (through uwsgidecorators' post-fork chain)."""
    if _uwsgi_hooked:
        return
    _uwsgi_hooked.append(True)
    try:
        import uwsgidecorators  # sets uwsgi.post_fork_hook to its chain; the user's @postfork functions join it

        uwsgidecorators.postfork_chain.append(_after_fork_in_child)
    except Exception as exc:  # noqa: BLE001
        report("multiprocess.uwsgi", exc)


def _write(path: str, document: dict[str, Any]) -> None:
    # json.dumps, not json.dump: only the one-shot form uses the C encoder (dump to a file encodes in
    # Python, chunk by chunk: it was most of a publication's CPU, in every worker every second).
    text = json.dumps(document, separators=(",", ":"), allow_nan=True)
    temporary = f"{path}.{threading.get_ident()}.tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def baseline_of(data: MetricsData | None) -> dict[_Key, Any]:
    """The counters' and histograms' values in ``data``, by series: what a forked child must not publish again."""
    found: dict[_Key, Any] = {}
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            for metric in scope_metrics.metrics:
                points: Iterable[Any] = ()
                if isinstance(metric.data, Sum) and metric.data.is_monotonic:
                    points = metric.data.data_points
                elif isinstance(metric.data, HistogramData):
                    points = metric.data.data_points
                for point in points:
                    key = (scope.name, scope.version or "", metric.name, attribute_key(point.attributes))
                    if isinstance(point, HistogramDataPoint):
                        found[key] = (point.count, point.sum, list(point.bucket_counts))
                    else:
                        found[key] = point.value
    return found


def _exemplars(point: Any) -> list[dict[str, Any]]:
    out = []
    for exemplar in list(getattr(point, "exemplars", None) or ())[-_MAX_EXEMPLARS:]:
        out.append(
            {
                "v": exemplar.value,
                "t": exemplar.time_unix_nano,
                "tid": exemplar.trace_id,
                "sid": exemplar.span_id,
                "a": dict(exemplar.filtered_attributes or {}),
            }
        )
    return out


def encode(data: MetricsData | None, baseline: dict[_Key, Any]) -> dict[str, Any]:
    """``data`` as a JSON document, less ``baseline`` (the totals inherited at the fork)."""
    resource: dict[str, Any] = {}
    schema_url = ""
    scopes: list[dict[str, Any]] = []
    for resource_metrics in data.resource_metrics if data is not None else ():
        resource = dict(resource_metrics.resource.attributes)
        schema_url = resource_metrics.schema_url or ""
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            metrics = []
            for metric in scope_metrics.metrics:
                encoded = _metric(scope.name, scope.version or "", metric, baseline)
                if encoded is not None:
                    metrics.append(encoded)
            scopes.append(
                {
                    "name": scope.name,
                    "version": scope.version or "",
                    "schema_url": scope.schema_url or scope_metrics.schema_url or "",
                    "attributes": dict(getattr(scope, "attributes", None) or {}),
                    "metrics": metrics,
                }
            )
    return {"format": FORMAT, "time": time.time_ns(), "resource": resource, "schema_url": schema_url, "scopes": scopes}


def _metric(scope: str, version: str, metric: Any, baseline: dict[_Key, Any]) -> dict[str, Any] | None:
    data = metric.data
    points: list[dict[str, Any]] = []
    if isinstance(data, Sum):
        kind = "counter" if data.is_monotonic else "updown"
        for point in data.data_points:
            value = point.value
            if data.is_monotonic and baseline:  # a baseline only in a child forked after measuring (--preload)
                value -= baseline.get((scope, version, metric.name, attribute_key(point.attributes)), 0)
            points.append(_number(point, value))
    elif isinstance(data, Gauge):
        kind = "gauge"
        points = [_number(point, point.value) for point in data.data_points]
    elif isinstance(data, HistogramData):
        kind = "histogram"
        for histogram_point in data.data_points:
            count, total, buckets = histogram_point.count, histogram_point.sum, list(histogram_point.bucket_counts)
            inherited = (
                baseline.get((scope, version, metric.name, attribute_key(histogram_point.attributes)))
                if baseline
                else None
            )
            if inherited is not None and len(inherited[2]) == len(buckets):
                count, total = count - inherited[0], total - inherited[1]
                buckets = [mine - theirs for mine, theirs in zip(buckets, inherited[2], strict=True)]
            points.append(
                {
                    "a": dict(histogram_point.attributes or {}),
                    "s": histogram_point.start_time_unix_nano,
                    "t": histogram_point.time_unix_nano,
                    "c": count,
                    "sum": total,
                    "b": buckets,
                    "e": list(histogram_point.explicit_bounds),
                    "min": histogram_point.min,
                    "max": histogram_point.max,
                    "x": _exemplars(histogram_point),
                }
            )
    else:
        return None  # exponential histograms are not served by the embedded endpoint either
    return {
        "name": metric.name,
        "description": metric.description or "",
        "unit": metric.unit or "",
        "kind": kind,
        "points": points,
    }


def _number(point: Any, value: float) -> dict[str, Any]:
    return {
        "a": dict(point.attributes or {}),
        "s": point.start_time_unix_nano,
        "t": point.time_unix_nano,
        "v": value,
        "x": _exemplars(point),
    }
