"""Events read from a file -> the exporter, one value at a time.

A value that does not fit its plugin (a string tensor under ``scalars``) is
skipped alone, logged once per file: the valid values around it still go out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from otel_ml import _semconv as sc
from otel_ml._summary._entry import CONTENT_KINDS, PLUGIN_KINDS
from otel_ml._summary._exporter import SummaryExporter
from otel_ml._summary._follow import FileFollower

_LOG = logging.getLogger(__name__)


def export_events(exporter: SummaryExporter, follower: FileFollower, run: str, events: Iterable[Any]) -> int:
    """Export every summary value of ``events`` (read by ``follower``) under ``run``.

    Returns:
        The number of values exported (dropped and unusable ones are not).
    """
    from tensorboard.util import tensor_util

    count = 0
    kinds = follower.kinds
    for event in events:
        step = int(event.step)
        for value in event.summary.value:
            if not value.HasField("tensor"):
                continue  # not a v2 summary after migration (e.g. a graph def): nothing to export
            plugin = value.metadata.plugin_data.plugin_name or kinds.get(value.tag, "")
            kind = PLUGIN_KINDS.get(plugin, sc.SUMMARY_KIND_OTHER)
            try:
                data = tensor_util.make_ndarray(value.tensor) if kind in CONTENT_KINDS else None
                count += exporter.record(run, value.tag, kind, data, step)
            except Exception as exc:  # noqa: BLE001 - one unusable value must not stop the file
                _bad_value(follower, value.tag, plugin, exc)
    return count


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
