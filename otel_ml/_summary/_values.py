"""Events read from a file -> the exporter, a batch at a time.

The follower hands over every event appended since its last read. Within
that batch only the last value of a tag can be seen by a metric reader, so
each tag costs one gauge ``set`` and one counter ``add`` per batch, however
many steps it holds: the follower's CPU grows with tags, not with writes.

A value that does not fit its plugin (a string tensor under ``scalars``) is
skipped alone, logged once per file: the valid values around it still go out.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterable
from typing import Any

from otel_ml._core import semconv as sc
from otel_ml._summary._entry import CONTENT_KINDS, PLUGIN_KINDS, TagEntry
from otel_ml._summary._exporter import SummaryExporter
from otel_ml._summary._follow import FileFollower

_LOG = logging.getLogger(__name__)
_FLOAT32, _FLOAT64 = 1, 2  # TensorFlow DataType enum values
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")


def export_events(exporter: SummaryExporter, follower: FileFollower, run: str, events: Iterable[Any]) -> int:
    """Export every summary value of ``events`` (read by ``follower``) under ``run``.

    Returns:
        The number of values exported (dropped and unusable ones are not).
    """
    pending: dict[TagEntry, list[Any]] = {}  # entry -> [writes, last, nonfinite, highest step]
    kinds = follower.kinds
    for event in events:
        step = int(event.step)
        for value in event.summary.value:
            if not value.HasField("tensor"):
                continue  # not a v2 summary after migration (e.g. a graph def): nothing to export
            plugin = value.metadata.plugin_data.plugin_name or kinds.get(value.tag, "")
            kind = PLUGIN_KINDS.get(plugin, sc.SUMMARY_KIND_OTHER)
            entry = exporter.entry(run, value.tag, kind)
            if entry is None:
                exporter.drop(run, kind)
                continue
            try:
                data = _content(value.tensor, kind)
            except Exception as exc:  # noqa: BLE001 - one unusable value must not stop the file
                _bad_value(follower, value.tag, plugin, exc)
                continue
            slot = pending.get(entry)
            if slot is None:
                slot = pending[entry] = [0, None, 0, step]
            slot[0] += 1
            if kind != sc.SUMMARY_KIND_SCALAR or math.isfinite(data):
                slot[1] = data
            else:
                slot[2] += 1
            slot[3] = max(slot[3], step)
    for entry, (writes, last, nonfinite, step) in pending.items():
        entry.apply(writes, last, nonfinite, step)
    return sum(slot[0] for slot in pending.values())


def _content(tensor: Any, kind: str) -> Any:
    """A scalar as a float, a histogram as an array, None for kinds only counted."""
    if kind not in CONTENT_KINDS:
        return None
    if kind == sc.SUMMARY_KIND_SCALAR:
        # The common encodings, without building an array (tensorboard's make_ndarray is the fallback).
        content = tensor.tensor_content
        if tensor.dtype == _FLOAT32 and len(content) == 4:
            return _F32.unpack(content)[0]
        if tensor.dtype == _FLOAT64 and len(content) == 8:
            return _F64.unpack(content)[0]
        if tensor.dtype == _FLOAT32 and len(tensor.float_val) == 1 and not content:
            return tensor.float_val[0]
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(tensor)
    return float(array) if kind == sc.SUMMARY_KIND_SCALAR else array


def _bad_value(follower: FileFollower, tag: str, plugin: str, exc: Exception) -> None:
    follower.bad_values += 1
    if follower.bad_values == 1:
        _LOG.warning(
            "otel_ml: %s: a value of tag %r does not fit plugin %r (%s: %s); such values are skipped, the "
            "others exported. Logged once per file.",
            follower.path,
            tag,
            plugin,
            type(exc).__name__,
            exc,
        )
