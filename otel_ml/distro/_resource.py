"""The SDK resource otel_ml builds: the standard variables plus the worker's identity.

Every worker of a distributed job exports the same series names; without its
type and index on the resource, Prometheus would merge them. ``TF_CONFIG`` is
where TensorFlow's own distribution strategies read them.
"""

from __future__ import annotations

import json
import logging
import os

from opentelemetry.sdk.resources import Resource

from otel_ml._core import semconv as sc
from otel_ml._core.options import parse_int, parse_str
from otel_ml._core.text import valid_label

_LOG = logging.getLogger(__name__)
_MAX_WORKER_INDEX = 1_000_000
_WORKER_INDEX = parse_int(0, _MAX_WORKER_INDEX)


def worker_resource_attributes(environ: dict[str, str] | None = None) -> dict[str, str | int]:
    """Worker type and index from ``TF_CONFIG``, so each worker's series stay distinct.

    A malformed value is one ERROR line and no worker identity: never an exception.
    """
    raw = (environ if environ is not None else os.environ).get("TF_CONFIG")
    if not raw or not raw.strip():
        return {}
    try:
        task = json.loads(raw).get("task") or {}
        kind, index = task.get("type"), task.get("index")
        attrs: dict[str, str | int] = {}
        if kind is not None:
            attrs[sc.ML_WORKER_TYPE] = parse_str(kind)
        if index is not None:
            attrs[sc.ML_WORKER_INDEX] = _WORKER_INDEX(index)
        return attrs
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        _LOG.error(
            'TF_CONFIG is not valid JSON of the form {"task": {"type": "<name>", "index": <0..%d>}} (%s); '
            "worker identity is not added to the resource",
            _MAX_WORKER_INDEX,
            exc,
        )
        return {}


def build_resource() -> Resource:
    """The SDK resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) plus worker identity.

    Its strings are made valid UTF-8 here, once: ``OTEL_SERVICE_NAME=$'\\xff'``
    reaches Python as a lone surrogate, which no exporter can encode (every
    scrape was a 500, every OTLP export dropped it).
    """
    resource = Resource.create(worker_resource_attributes())
    attributes = resource.attributes
    if all(isinstance(v, str) and v.isascii() and k.isascii() for k, v in attributes.items()):
        return resource
    valid = {valid_label(k): valid_label(v) if isinstance(v, str) else v for k, v in attributes.items()}
    return Resource(valid, resource.schema_url)
