"""What the tf.summary instrumentor and the TensorBoard bridge share (internal).

One implementation for both paths: the instruments and the per-run tag
tables (:class:`SummaryExporter`), run names and phases, the pure-Python
event-file reader (:mod:`otel_ml._summary._records`) and the file follower
that turns appended records into exported values. Neither path imports
another's private modules; both import from here.
"""

from __future__ import annotations

from otel_ml._summary._discover import EventFileFinder, is_event_file
from otel_ml._summary._entry import CONTENT_KINDS, PLUGIN_KINDS, TagEntry
from otel_ml._summary._exporter import SummaryExporter
from otel_ml._summary._follow import FileFollower
from otel_ml._summary._instruments import SummaryInstruments
from otel_ml._summary._options import MAX_TAGS, RUN_NAME_PATTERN
from otel_ml._summary._records import CORRUPT, END, PARTIAL
from otel_ml._summary._runs import RunNamer, run_phase
from otel_ml._summary._values import export_events

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
