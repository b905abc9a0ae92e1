"""The bridge: event files under logdirs -> the same instruments as the tf.summary instrumentor."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics
from tensorboard.backend.event_processing import io_wrapper
from tensorboard.util import tensor_util

from otel_ml import _semconv as sc
from otel_ml.tensorboard_bridge._files import FileFollower
from otel_ml.tensorboard_bridge._state import BridgeState
from otel_ml.tf_summary._export import PLUGIN_KINDS, SummaryExporter
from otel_ml.tf_summary._instruments import SummaryInstruments
from otel_ml.tf_summary._runs import RunNamer
from otel_ml.version import __version__

_LOG = logging.getLogger(__name__)
_CONTENT_KINDS = frozenset({sc.SUMMARY_KIND_SCALAR, sc.SUMMARY_KIND_HISTOGRAM})


def check_logdirs(logdirs: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first logdir that is not an existing directory."""
    if not logdirs:
        raise ValueError("at least one LOGDIR is needed")
    missing = [d for d in logdirs if not os.path.isdir(d)]
    if missing:
        raise ValueError(f"logdir {missing[0]!r} does not exist or is not a directory")


class Bridge:
    """Exports the summaries of every event file under ``logdirs``, each event once.

    Args:
        logdirs: Directories to watch; each must exist.
        state_dir: Where progress is kept; a restart with the same one exports nothing twice.
        meter_provider: Where metrics go; default the global one.
        max_tags: Distinct tags exported per run.
        run_name_pattern: Optional regex that picks ``ml.run.name`` out of the run's path.

    Raises:
        ValueError: a logdir that is not an existing directory, or an unreadable state file.

    Example:
        >>> Bridge(["logs"], ".bridge-state").poll(final=True)  # doctest: +SKIP
        1200
    """

    def __init__(
        self,
        logdirs: Sequence[str],
        state_dir: str,
        meter_provider: metrics.MeterProvider | None = None,
        max_tags: int = 100,
        run_name_pattern: re.Pattern[str] | None = None,
    ) -> None:
        check_logdirs(logdirs)
        self.logdirs = [os.path.abspath(d) for d in logdirs]
        # Runs are named as TensorBoard names them: relative to the logdir (or the logdirs' common root).
        root = self.logdirs[0] if len(self.logdirs) == 1 else os.path.commonpath(self.logdirs)
        self._namer = RunNamer(root, run_name_pattern)
        self.state = BridgeState(state_dir)
        meter = metrics.get_meter(__name__, __version__, meter_provider)
        self._exporter = SummaryExporter(SummaryInstruments.create(meter), max_tags, sc.FRAMEWORK_TENSORBOARD)
        self._events = meter.create_counter(
            sc.METRIC_SUMMARY_BRIDGE_EVENTS,
            unit=sc.UNIT_EVENT,
            description="Summary values read from event files and exported (never twice across restarts).",
        )
        self._bad = meter.create_counter(
            sc.METRIC_SUMMARY_BRIDGE_BAD_FILES,
            unit=sc.UNIT_FILE,
            description="Event files found truncated or corrupt; what could be read was exported.",
        )
        self._followers: dict[str, tuple[FileFollower, str, dict[str, str]]] = {}

    def _discover(self) -> None:
        for logdir in self.logdirs:
            for directory, files in io_wrapper.ListRecursivelyViaWalking(logdir):
                for path in files:
                    if path in self._followers or not io_wrapper.IsSummaryEventsFile(path):
                        continue
                    try:
                        follower = FileFollower(path, self.state.exported(path))
                    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the others
                        _LOG.warning("otel-ml tensorboard: cannot open %s (%s); skipped", path, exc)
                        continue
                    run = self._namer.name(str(directory))
                    self._followers[path] = (follower, run, {sc.ML_RUN_NAME: run})

    def poll(self, final: bool = False) -> int:
        """Find new files, export what was appended since the last poll, save the state.

        Args:
            final: This is the last poll (``--once``): a file with an unreadable tail is reported now.

        Returns:
            The number of summary values exported.
        """
        self._discover()
        total = 0
        for path, (follower, run, run_attrs) in self._followers.items():
            exported = 0
            try:
                for event in follower.events():
                    exported += self._export_event(follower, run, event)
            except Exception as exc:  # noqa: BLE001 - a file that breaks the reader is skipped, not fatal
                if not follower.bad:
                    follower.bad = True
                    _LOG.warning("otel-ml tensorboard: cannot read %s (%s); skipped", path, exc)
                    self._bad.add(1, run_attrs)
            if follower.check_tail(final):
                self._bad.add(1, run_attrs)
            if exported:
                self._events.add(exported, run_attrs)
                total += exported
            self.state.update(path, follower.records)
        self.state.save()
        return total

    def _export_event(self, follower: FileFollower, run: str, event: Any) -> int:
        count = 0
        step = int(event.step)
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name or follower.kinds.get(value.tag, "")
            kind = PLUGIN_KINDS.get(plugin, sc.SUMMARY_KIND_OTHER)
            if not value.HasField("tensor"):
                continue  # not a v2 summary after migration (e.g. a graph def): nothing to export
            data = tensor_util.make_ndarray(value.tensor) if kind in _CONTENT_KINDS else None
            count += self._exporter.record(run, value.tag, kind, data, step)
        return count

    def run_forever(self, interval: float) -> None:
        """Poll every ``interval`` seconds until interrupted (Ctrl-C or SIGTERM)."""
        while True:
            started = time.monotonic()
            self.poll()
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
