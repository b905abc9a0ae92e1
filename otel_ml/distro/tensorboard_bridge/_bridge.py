"""The bridge: event files under logdirs -> the same instruments as the tf.summary instrumentor."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence

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
from otel_ml._summary._files import read_marker
from otel_ml._training.instruments import TrainingInstruments
from otel_ml.distro._sdk import is_sdk_meter_provider
from otel_ml.distro._sdk_internals import FORGET_SERIES, give_up, series_forgetting
from otel_ml.distro.tensorboard_bridge._state import BridgeState, Progress
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

    __slots__ = ("attrs", "bad", "elsewhere", "exported", "follower", "run", "unreadable")

    def __init__(self, follower: FileFollower, run: str) -> None:
        self.follower = follower
        self.run = run
        self.attrs = {sc.ML_RUN_NAME: run}
        self.bad = False  # counted once in ml.tensorboard.bridge.bad_files
        self.unreadable = False  # the one "cannot read" warning was logged
        self.exported = False  # values of this file were exported here: it is this bridge's to report
        self.elsewhere = False  # an instrumented process reports this file itself (its marker says so)


class Bridge:
    """Exports the summaries of every event file under ``logdirs``, each event once.

    Args:
        logdirs: Directories to watch; each must exist.
        state_dir: Where progress is kept; a restart with the same one exports nothing twice.
        meter_provider: Where metrics go; default the global one.
        max_tags: Distinct tags exported per run.
        run_name_pattern: Optional regex that picks ``ml.run.name`` out of the run's path.
        follow_symlinks: Follow symbolic links (to real paths under the logdirs only).

    Raises:
        ValueError: a logdir that is not an existing directory.
        StateError: the state directory cannot be written, or its file is unreadable;
            ``StateInUse`` when another bridge holds it.

    Reading and saving are apart: :meth:`poll` reads and exports to the
    instruments, :meth:`save` records how far, and the caller saves only once
    the values were delivered (so a bridge killed in between sends them again
    after a restart, rather than never).

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
        follow_symlinks: bool = False,
    ) -> None:
        check_logdirs(logdirs)
        self.logdirs = [os.path.abspath(d) for d in logdirs]
        # Runs are named as TensorBoard names them: relative to the logdir (or the logdirs' common root).
        root = self.logdirs[0] if len(self.logdirs) == 1 else os.path.commonpath(self.logdirs)
        self._namer = RunNamer(root, run_name_pattern)
        self.state = BridgeState(state_dir)
        self._provider = meter_provider or metrics.get_meter_provider()
        meter = metrics.get_meter(__name__, __version__, meter_provider)
        # ml.train.* in the one training scope, as in an instrumented program: one scope per metric name everywhere.
        training = TrainingInstruments.shared(meter_provider)
        self._exporter = SummaryExporter(SummaryInstruments.create(meter, training), max_tags, sc.FRAMEWORK_TENSORBOARD)
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
        self.pending = 0  # values read since the last delivery
        self._collected = threading.Condition()
        self._collections = 0
        self._read_mark = 0  # collections counted when values were last read
        meter.create_observable_gauge(
            sc.METRIC_SUMMARY_BRIDGE_PENDING,
            [self._observe],
            unit=sc.UNIT_EVENT,
            description="Summary values read from event files but not yet delivered (the state is saved at 0).",
        )
        self._finder = EventFileFinder(self.logdirs, follow_symlinks, "otel-ml tensorboard")
        self._watched: dict[str, _Watched] = {}
        self._save_failed = False
        self._elsewhere_logged: set[str] = set()
        self._forgot = False

    def _observe(self, options: metrics.CallbackOptions) -> list[metrics.Observation]:
        # Runs at every collection of every reader: for a scrape of /metrics, that is the delivery.
        with self._collected:
            self._collections += 1
            self._collected.notify_all()
        return [metrics.Observation(self.pending)]

    def collected_within(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Whether a collection (a scrape) took everything read so far; waits ``timeout`` s at most."""
        with self._collected:
            waited = 0.0
            while self._collections <= self._read_mark and waited < timeout and not (stop and stop.is_set()):
                step = min(0.2, timeout - waited)
                self._collected.wait(step)
                waited += step
            return self._collections > self._read_mark

    def close(self) -> None:
        """Release the state directory's lock."""
        self.state.close()

    def _discover(self) -> None:
        for path, directory in self._finder.new_files():
            known = self.state.exported(path)
            if known.offset is None:  # an older state: counts only, so skip that many records
                follower = FileFollower(path, skip=known.records)
            else:
                follower = FileFollower(path, known.offset, known.records, inode=known.inode, head=known.head)
            self._watched[path] = _Watched(follower, self._namer.name(directory))

    def _gone(self, path: str) -> None:
        """``path`` was deleted: forget it, and its run once no file of that run is left."""
        watched = self._watched.pop(path)
        self.state.forget(path)
        self._forgot = True
        self._finder.forget(path)
        if not any(other.run == watched.run for other in self._watched.values()):
            _LOG.warning(
                "otel-ml tensorboard: the event files of run %r are gone; the run is forgotten and its series stop",
                watched.run,
            )
            self._withdraw(watched.run)

    def _withdraw(self, run: str) -> None:
        """Stop the series of a forgotten run (through the SDK's internals; without them they stay)."""
        forget = series_forgetting() if is_sdk_meter_provider(self._provider) else None
        if forget is None:
            return
        try:
            forget(self._provider, {sc.ML_RUN_NAME: run})
        except Exception as exc:  # noqa: BLE001 - an SDK whose storage is shaped otherwise than probed
            give_up(FORGET_SERIES, exc)

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
        changed = self._forgot
        self._forgot = False
        for path, watched in list(self._watched.items()):
            follower = watched.follower
            try:
                events = follower.read()
            except FileNotFoundError:
                self._gone(path)
                continue
            except OSError as exc:
                if not watched.unreadable:
                    watched.unreadable = True
                    _LOG.warning("otel-ml tensorboard: cannot read %s (%s); tried again each poll", path, exc)
                continue
            watched.unreadable = False
            # The marker is looked for whenever the file grew: a program that instruments after creating its
            # writer marks the file only then, possibly after this bridge exported its first values.
            if watched.elsewhere or (events and self._reported_elsewhere(path, watched)):
                changed |= self.state.update(
                    path, Progress(follower.records, follower.offset, follower.inode, follower.head or None)
                )
                continue
            exported = export_events(self._exporter, follower, watched.run, events)
            watched.exported = watched.exported or exported > 0
            self._check(watched, final)
            if exported:
                self._events.add(exported, watched.attrs)
                total += exported
            changed |= self.state.update(
                path, Progress(follower.records, follower.offset, follower.inode, follower.head or None)
            )
        if changed:  # a collection must come after this read to deliver it
            with self._collected:
                self._read_mark = self._collections
        if save:
            self.save()
        return total

    def _reported_elsewhere(self, path: str, watched: _Watched) -> bool:
        """Whether the instrumented process writing ``path`` reports it itself (then this bridge does not)."""
        marker = read_marker(path)
        if marker is None:
            return False
        watched.elsewhere = True
        if watched.exported:
            # A writer created before its program called instrument(): the program follows the file from its start.
            _LOG.warning(
                "otel-ml tensorboard: %s is now reported by the instrumented process that writes it (host %r, pid "
                "%r, as ml.run.name=%r; its writer was created before otel_ml.instrument()); the bridge stops "
                "exporting it. The values this bridge exported before are counted by both.",
                path,
                marker.get("host"),
                marker.get("pid"),
                marker.get("run"),
            )
        elif watched.run not in self._elsewhere_logged:
            self._elsewhere_logged.add(watched.run)
            _LOG.warning(
                "otel-ml tensorboard: run %r is reported by the instrumented process that writes it (host %r, "
                "pid %r, as ml.run.name=%r); the bridge does not export its event files, so no value is counted "
                "twice. Logged once per run.",
                watched.run,
                marker.get("host"),
                marker.get("pid"),
                marker.get("run"),
            )
        return True

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

    def run_forever(self, interval: float, deliver: Callable[[bool], bool], stop: threading.Event) -> int:
        """Poll every ``interval`` seconds until ``stop`` is set; returns the values left undelivered.

        After each poll that read something, ``deliver(final)`` (the exporters'
        flush, or a scrape since the read) must succeed before the state is
        saved: values read but not delivered stay unsaved, are delivered by a
        later flush or scrape (the metrics are cumulative), and, if the bridge
        is killed first, are read again by the next bridge on this state.
        """
        while True:
            self.pending += self.poll(save=False)
            if self.state.dirty and deliver(False):
                self.pending = 0
                self.save()
            if stop.wait(interval):
                break
        # The last values: read, deliver, save, once more.
        self.pending += self.poll(final=True, save=False)
        if self.state.dirty and deliver(True):
            self.pending = 0
            self.save()
        return self.pending
