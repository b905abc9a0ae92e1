"""The per-run tag tables with their cap: where a write finds its :class:`TagEntry`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from otel_ml._core import semconv as sc
from otel_ml._summary._entry import RunState, TagEntry
from otel_ml._summary._instruments import SummaryInstruments

_LOG = logging.getLogger(__name__)


class SummaryExporter:
    """Per-run tag tables with a cap; hands out :class:`TagEntry` objects.

    Args:
        instruments: Where values go.
        max_tags: Distinct tags exported per run; more are dropped and counted.
        framework: ``ml.framework`` of the training metrics fed by well-known tags.
    """

    def __init__(self, instruments: SummaryInstruments, max_tags: int, framework: str) -> None:
        self.m = instruments
        self._max = max_tags
        self._framework = framework
        self._runs: dict[str, dict[str, TagEntry]] = {}
        self._run_states: dict[str, RunState] = {}
        self._drop_attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def entry(self, run: str, tag: str, kind: str) -> TagEntry | None:
        """The entry of (run, tag), created if the run is under its cap; None if dropped."""
        tags = self._runs.get(run)
        if tags is not None:
            found = tags.get(tag)
            if found is not None and found.kind == kind:
                return found
        with self._lock:
            tags = self._runs.setdefault(run, {})
            found = tags.get(tag)
            if found is not None and found.kind == kind:
                return found
            if found is None and len(tags) >= self._max:
                return None
            state = self._run_states.get(run)
            if state is None:
                state = self._run_states[run] = RunState(run)
            # A tag reused with another kind replaces its entry; it is still one tag.
            created = TagEntry(self.m, state, tag, kind, self._framework)
            tags[tag] = created
            return created

    def drop(self, run: str, kind: str) -> None:
        """Count one dropped write; log the first drop of each run."""
        attrs = self._drop_attrs.get((run, kind))
        if attrs is None:
            with self._lock:
                first = not any(key[0] == run for key in self._drop_attrs)
                attrs = self._drop_attrs.setdefault((run, kind), {sc.ML_RUN_NAME: run, sc.ML_SUMMARY_KIND: kind})
            if first:
                _LOG.warning(
                    "otel_ml: run %r wrote more than %d distinct summary tags; writes of further tags are not "
                    "exported (counted in %s). Raise OTEL_ML_TF_SUMMARY_MAX_TAGS if these tags are not "
                    "per-step names. Logged once per run.",
                    run,
                    self._max,
                    sc.METRIC_SUMMARY_DROPPED,
                )
        self.m.dropped.add(1, attrs)

    def record(self, run: str, tag: str, kind: str, value: Any, step: int | None) -> bool:
        """Export one write.

        Returns:
            False when the write was dropped by the tag cap.

        Raises:
            ValueError, TypeError: the value does not fit its kind (see :meth:`TagEntry.record`).
        """
        found = self.entry(run, tag, kind)
        if found is None:
            self.drop(run, kind)
            return False
        found.record(value, step)
        return True
