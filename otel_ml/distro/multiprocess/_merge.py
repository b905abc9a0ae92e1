"""The endpoint's side: the sum of every process's published points, as one set of series.

Merging follows prometheus_client's multiprocess mode:

- counters and histograms are summed over every process that ever published
  in this deployment: a recycled or crashed worker's file is folded into
  ``archive.json`` (its totals kept), then removed, so files do not pile up;
- up-down counters (in-flight requests and runs) are summed over the live
  processes only: a dead worker serves nothing;
- gauges are the latest reading of any live process (a GPU's temperature
  read by four workers is one temperature, not four times it).

Series identity never includes the process: a recycled worker adds to the
same series instead of creating new ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_ml.distro.multiprocess._publish import FORMAT, PREFIX, SUFFIX, attribute_key, process_start

_LOG = logging.getLogger(__name__)

SERVICE_INSTANCE_ID = "service.instance.id"
ARCHIVE = "archive.json"
_KEEP_EXEMPLARS = 64
_KEPT_KINDS = ("counter", "histogram")  # what outlives its process


def alive(pid: int, start: str) -> bool:
    """Whether process ``pid`` is running and is the one that published (same start time)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or process_start(pid) in ("", start)


class Merged:
    """Points of several processes' documents, merged by scope, metric and attributes."""

    def __init__(self) -> None:
        self.scopes: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.resource: dict[str, Any] = {}
        self.schema_url = ""
        self._resource_time = -1

    def add(self, document: dict[str, Any], live: bool, kinds: Iterable[str] | None = None) -> None:
        """Merge ``document``; a dead process's (``live`` False) up-down counters and gauges are left out."""
        allowed = set(kinds) if kinds is not None else {"counter", "histogram", "updown", "gauge"}
        if not live:
            allowed &= set(_KEPT_KINDS)
        stamp = int(document.get("time") or 0)
        if document.get("resource") and stamp >= self._resource_time:
            self.resource = {k: v for k, v in document["resource"].items() if not k.startswith("process.")}
            self.schema_url = document.get("schema_url") or ""
            self._resource_time = stamp
        for scope in document.get("scopes") or ():
            key = (scope["name"], scope.get("version") or "", scope.get("schema_url") or "")
            merged_scope = self.scopes.setdefault(key, {"attributes": scope.get("attributes") or {}, "metrics": {}})
            for metric in scope.get("metrics") or ():
                if metric["kind"] not in allowed:
                    continue
                merged_metric = merged_scope["metrics"].setdefault(
                    metric["name"],
                    {
                        "description": metric["description"],
                        "unit": metric["unit"],
                        "kind": metric["kind"],
                        "points": {},
                    },
                )
                if merged_metric["kind"] != metric["kind"]:
                    continue  # one name, two instrument kinds: the first one seen is served
                for point in metric["points"]:
                    _merge_point(merged_metric, point, stamp)

    def document(self) -> dict[str, Any]:
        """The merged points as a published document (the archive's format)."""
        scopes = []
        for (name, version, schema_url), scope in self.scopes.items():
            metrics = [
                {
                    **{k: v for k, v in metric.items() if k != "points"},
                    "name": metric_name,
                    "points": list(metric["points"].values()),
                }
                for metric_name, metric in scope["metrics"].items()
            ]
            scopes.append(
                {
                    "name": name,
                    "version": version,
                    "schema_url": schema_url,
                    "attributes": scope["attributes"],
                    "metrics": metrics,
                }
            )
        return {
            "format": FORMAT,
            "time": self._resource_time,
            "resource": self.resource,
            "schema_url": self.schema_url,
            "scopes": scopes,
        }

    def metrics_data(self) -> MetricsData:
        """The merged points in the SDK's data model, for the endpoint's Prometheus translation."""
        scope_metrics = []
        for (name, version, schema_url), scope in self.scopes.items():
            metrics = [_sdk_metric(metric_name, metric) for metric_name, metric in scope["metrics"].items()]
            instrumentation_scope = InstrumentationScope(name, version or None, schema_url or None, scope["attributes"])
            scope_metrics.append(ScopeMetrics(instrumentation_scope, [m for m in metrics if m is not None], schema_url))
        resource = Resource({**self.resource, **identity()}, self.schema_url or None)
        return MetricsData([ResourceMetrics(resource, scope_metrics, self.schema_url)])


def identity() -> dict[str, str]:
    """The deployment's ``service.instance.id``: the user's (``OTEL_RESOURCE_ATTRIBUTES``), else the host name.

    The SDK gives every process a random one (a new one after each fork), which
    would make the served series change with whichever worker published last.
    """
    for part in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == SERVICE_INSTANCE_ID and value.strip():
            return {SERVICE_INSTANCE_ID: unquote(value.strip())}
    return {SERVICE_INSTANCE_ID: socket.gethostname() or "localhost"}


def _merge_point(metric: dict[str, Any], point: dict[str, Any], stamp: int) -> None:
    key = attribute_key(point["a"])
    found = metric["points"].get(key)
    if found is None:
        metric["points"][key] = {**point, "x": list(point.get("x") or ()), "stamp": stamp}
        return
    found["s"] = min((s for s in (found.get("s"), point.get("s")) if s is not None), default=None)
    found["t"] = max((t for t in (found.get("t"), point.get("t")) if t is not None), default=0)
    found["x"] = sorted([*found["x"], *(point.get("x") or ())], key=lambda x: x["t"])[-_KEEP_EXEMPLARS:]
    kind = metric["kind"]
    if kind in ("counter", "updown"):
        found["v"] += point["v"]
    elif kind == "gauge":
        if stamp >= found.get("stamp", 0):
            found["v"], found["stamp"] = point["v"], stamp
    elif kind == "histogram":
        if found["e"] != point["e"] or len(found["b"]) != len(point["b"]):
            _LOG.debug("otel_ml: %s has other bucket bounds in another process; its points there are left out", key)
            return
        if point["c"] > 0:
            found["min"] = point["min"] if found["c"] <= 0 else min(found["min"], point["min"])
            found["max"] = point["max"] if found["c"] <= 0 else max(found["max"], point["max"])
        found["c"] += point["c"]
        found["sum"] += point["sum"]
        found["b"] = [a + b for a, b in zip(found["b"], point["b"], strict=True)]


def _exemplar_objects(point: dict[str, Any]) -> list[Exemplar]:
    return [Exemplar(x.get("a") or None, x["v"], x["t"], x.get("sid"), x.get("tid")) for x in point.get("x") or ()]


def _attributes(point: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in point["a"].items()}


def _sdk_metric(name: str, metric: dict[str, Any]) -> Metric | None:
    kind, points = metric["kind"], list(metric["points"].values())
    cumulative = AggregationTemporality.CUMULATIVE
    data: Any
    if kind in ("counter", "updown", "gauge"):
        numbers = [NumberDataPoint(_attributes(p), p["s"], p["t"], p["v"], _exemplar_objects(p)) for p in points]
        data = Gauge(numbers) if kind == "gauge" else Sum(numbers, cumulative, kind == "counter")
    elif kind == "histogram":
        data = Histogram(
            [
                HistogramDataPoint(
                    _attributes(p),
                    p["s"],
                    p["t"],
                    p["c"],
                    p["sum"],
                    p["b"],
                    p["e"],
                    p["min"],
                    p["max"],
                    _exemplar_objects(p),
                )
                for p in points
            ],
            cumulative,
        )
    else:
        return None
    return Metric(name, metric["description"], metric["unit"], data)


def read(path: str) -> dict[str, Any] | None:
    """A published document, or None (gone meanwhile, unreadable, or of another format)."""
    try:
        with open(path, encoding="utf-8") as source:
            document = json.load(source)
    except (OSError, ValueError) as exc:
        _LOG.debug("otel_ml: skipping %s: %s", path, exc)
        return None
    return document if isinstance(document, dict) and document.get("format") == FORMAT else None


class Directory:
    """The deployment's directory, as the endpoint process reads it."""

    def __init__(self, directory: str, owner: int) -> None:
        self.directory, self.owner = directory, owner
        self._archive_path = os.path.join(directory, ARCHIVE)
        archive = read(self._archive_path)
        self.archive = Merged()
        if archive is not None and archive.get("owner") == owner:
            self.archive.add(archive, live=False)

    def _files(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return [os.path.join(self.directory, n) for n in names if n.startswith(PREFIX) and n.endswith(SUFFIX)]

    def any_live(self) -> bool:
        """Whether any process that publishes here is running (by the pids in the file names)."""
        for path in self._files():
            name = os.path.basename(path)[len(PREFIX) : -len(SUFFIX)]
            if name.isdigit() and alive(int(name), ""):
                return True
        return False

    def merged(self) -> Merged:
        """Every process's points merged; dead processes' files folded into the archive first."""
        live: list[dict[str, Any]] = []
        folded: list[str] = []
        for path in self._files():
            document = read(path)
            if document is None:
                continue
            pid, start = int(document.get("pid") or 0), str(document.get("start") or "")
            if document.get("owner") != self.owner:
                if not alive(int(document.get("owner") or 0), ""):
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # left by an earlier deployment
                continue
            if alive(pid, start):
                live.append(document)
            else:
                self.archive.add(document, live=False)
                folded.append(path)
        if folded:
            self._save_archive()
            for path in folded:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        merged = Merged()
        merged.add(self.archive.document(), live=False)
        for document in live:
            merged.add(document, live=True)
        return merged

    def _save_archive(self) -> None:
        document = self.archive.document()
        document["owner"] = self.owner
        temporary = self._archive_path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(document, out, separators=(",", ":"))
        os.replace(temporary, self._archive_path)
