"""Series identity per worker *slot*, not per process, for push exporters (OTLP) under a pre-fork server.

The SDK gives every process a random ``service.instance.id``, again after
each fork: with ``--max-requests`` every recycled worker started a new set of
series in the backend (12 sets for 2,200 requests). Here each process of the
deployment holds the lowest free slot number (an exclusive lock on
``<directory>/slot-<n>.lock``, released by the kernel when the process
dies), and its exported metrics carry ``service.instance.id`` =
``<host>-<slot>`` (or ``<yours>-<slot>`` when ``OTEL_RESOURCE_ATTRIBUTES``
sets one). A recycled worker takes the freed slot and continues its
predecessor's series (a counter reset, which ``rate()`` and ``increase()``
handle), so the series stay at most one set per worker.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricsData
from opentelemetry.sdk.resources import Resource

from otel_ml._core.guard import report
from otel_ml.distro.multiprocess._merge import SERVICE_INSTANCE_ID, identity
from otel_ml.distro.multiprocess._mode import Deployment

_LOG = logging.getLogger(__name__)
_MAX_SLOTS = 4096

_lock = threading.Lock()
_held: list[tuple[int, int, int]] = []  # (pid, slot, fd)


def slot(deployment: Deployment) -> int | None:
    """This process's slot (taken on first use), or None when no slot could be locked."""
    import fcntl

    pid = os.getpid()
    with _lock:
        for owner, number, fd in list(_held):
            if owner == pid:
                return number
            _held.remove((owner, number, fd))
            os.close(fd)  # the parent's lock, inherited through the fork: this process's copy only
        for number in range(_MAX_SLOTS):
            path = os.path.join(deployment.directory, f"slot-{number}.lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            _held.append((pid, number, fd))
            return number
    return None


def instance_id(deployment: Deployment) -> str | None:
    """``<host or yours>-<slot>`` for this process."""
    number = slot(deployment)
    return None if number is None else f"{identity()[SERVICE_INSTANCE_ID]}-{number}"


def identified(exporter: MetricExporter, deployment: Deployment) -> MetricExporter:
    """``exporter``, whose exports carry this process's slot identity."""
    export = exporter.export

    def export_with_slot(metrics_data: MetricsData, *args: Any, **kwargs: Any) -> Any:
        try:
            found = instance_id(deployment)
            if found is not None:
                metrics_data = MetricsData(
                    [
                        dataclasses.replace(
                            resource_metrics,
                            resource=Resource(
                                {**resource_metrics.resource.attributes, SERVICE_INSTANCE_ID: found},
                                resource_metrics.resource.schema_url,
                            ),
                        )
                        for resource_metrics in metrics_data.resource_metrics
                    ]
                )
        except Exception as exc:  # noqa: BLE001 - exported as it was rather than lost
            report("multiprocess.slot", exc)
        return export(metrics_data, *args, **kwargs)

    exporter.export = export_with_slot  # type: ignore[method-assign]
    return exporter
