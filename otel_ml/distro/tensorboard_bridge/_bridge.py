"""The bridge: event files under logdirs -> the same instruments as the tf.summary instrumentor."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence

from opentelemetry import metrics

from otel_ml._core import semconv as sc
from otel_ml._summary import (
    CORRUPT,
    EventFileFinder,
    FileFollower,
    RunNamer,
    SummaryExporter,
    SummaryInstruments,
    export_events,
)
from otel_ml.distro.tensorboard_bridge._state import BridgeState
from otel_ml.version import __version__

_LOG = logging.getLogger(__name__)


def check_logdirs(logdirs: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first logdir that is not an existing directory."""
    if not logdirs:
        raise ValueError("at least one LOGDIR is needed")
    missing = [d for d in logdirs if not os.path.isdir(d)]
    if missing:
        raise ValueError(f"logdir {missing[0]!r} does not exist or is not a directory")


class _Watched:
    """A followed file, its run and what was reported about it."""

    __slots__ = ("attrs", "bad", "follower", "run", "unreadable")

    def __init__(self, follower: FileFollower, run: str) -> None:
        self.follower = follower
        self.run = run
        self.attrs = {sc.ML_RUN_NAME: run}
        self.bad = False  # counted once in ml.tensorboard.bridge.bad_files
        self.unreadable = False  # the one "cannot read" warning was logged


class Bridge:
    """Exports the summaries of every event file under ``logdirs``, each event once.

    Args:
        logdirs: Directories to watch; each must exist.
        state_dir: Where progress is kept; a restart with the same one exports nothing twice.
        meter_provider: Where metrics go; default the global one.
        max_tags: Distinct tags exported per run.
        run_name_pattern: Optional regex that picks ``ml.run.name`` out of the run's path.

    Raises:
        ValueError: a logdir that is not an existing directory.
        StateError: the state directory cannot be written, or its file is unreadable.

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
            description="Event files with a corrupt record, a corrupt or truncated tail; what could be read was "
            "exported.",
        )
        self._finder = EventFileFinder(self.logdirs)
        self._watched: dict[str, _Watched] = {}
        self._save_failed = False

    def _discover(self) -> None:
        for path, directory in self._finder.new_files():
            records, offset = self.state.exported(path)
            if offset is None:  # an older state: counts only, so skip that many records
                follower = FileFollower(path, skip=records)
            else:
                follower = FileFollower(path, offset, records)
            self._watched[path] = _Watched(follower, self._namer.name(directory))

    def poll(self, final: bool = False, save: bool = True) -> int:
        """Find new files, export what was appended since the last poll, save the state.

        Args:
            final: This is the last poll (``--once``): a file that ends inside a record is reported now.
            save: Save the state afterwards (``--once`` saves only after the values are delivered).

        Returns:
            The number of summary values exported.
        """
        self._discover()
        total = 0
        for path, watched in self._watched.items():
            follower = watched.follower
            try:
                events = follower.read()
            except OSError as exc:
                if not watched.unreadable:
                    watched.unreadable = True
                    _LOG.warning("otel-ml tensorboard: cannot read %s (%s); tried again each poll", path, exc)
                continue
            watched.unreadable = False
            exported = export_events(self._exporter, follower, watched.run, events)
            self._check(watched, final)
            if exported:
                self._events.add(exported, watched.attrs)
                total += exported
            self.state.update(path, follower.records, follower.offset)
        if save:
            self.save()
        return total

    def _check(self, watched: _Watched, final: bool) -> None:
        follower = watched.follower
        tail = follower.describe_tail()
        # A tail inside a record is a writer mid-flush while following; only the last poll reports it.
        if tail is not None and (final or follower.tail == CORRUPT) and not follower.reported:
            follower.reported = True
            _LOG.warning("otel-ml tensorboard: %s; the %d records before it are exported", tail, follower.records)
        if not watched.bad and (follower.reported or follower.bad_records):
            watched.bad = True
            self._bad.add(1, watched.attrs)

    def save(self) -> bool:
        """Save the state; a failure is logged once (and retried at the next poll)."""
        try:
            self.state.save()
        except OSError as exc:
            if not self._save_failed:
                _LOG.error(
                    "otel-ml tensorboard: cannot save the state in %s (%s); a restart would export again what "
                    "was exported since the last save. Logged once.",
                    self.state.directory,
                    exc,
                )
            self._save_failed = True
            return False
        self._save_failed = False
        return True

    def run_forever(self, interval: float) -> None:
        """Poll every ``interval`` seconds until interrupted (Ctrl-C or SIGTERM)."""
        while True:
            started = time.monotonic()
            self.poll()
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
