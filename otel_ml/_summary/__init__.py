"""What the tf.summary instrumentor and the TensorBoard bridge share (internal).

One implementation for both paths. Neither path imports another's private
modules; both import from here:

- :mod:`._export`: a value -> metric points (:class:`TagEntry`), the per-run
  tag tables with their cap (:class:`SummaryExporter`), batches of events read
  back (:func:`export_events`);
- :mod:`._files`: finding event files under logdirs and following each one;
- :mod:`._records`: TFRecord framing, read in pure Python;
- :mod:`._runs`: run names and phases;
- :mod:`._instruments`: the ``ml.tensorboard.*`` instruments;
- :mod:`._options`: the option rows both paths read.
"""

from __future__ import annotations

from otel_ml._summary._export import CONTENT_KINDS, PLUGIN_KINDS, SummaryExporter, TagEntry, export_events
from otel_ml._summary._files import EventFileFinder, FileFollower, is_event_file
from otel_ml._summary._instruments import SummaryInstruments
from otel_ml._summary._options import MAX_TAGS, RUN_NAME_PATTERN
from otel_ml._summary._records import CORRUPT, END, PARTIAL
from otel_ml._summary._runs import RunNamer, run_phase

__all__ = [
    "CONTENT_KINDS",
    "CORRUPT",
    "END",
    "MAX_TAGS",
    "PARTIAL",
    "PLUGIN_KINDS",
    "RUN_NAME_PATTERN",
    "EventFileFinder",
    "FileFollower",
    "RunNamer",
    "SummaryExporter",
    "SummaryInstruments",
    "TagEntry",
    "export_events",
    "is_event_file",
    "run_phase",
]
