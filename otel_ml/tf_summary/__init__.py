"""tf.summary instrumentation: every value written for TensorBoard becomes an OTel metric.

Usage::

    from otel_ml.tf_summary import TfSummaryInstrumentor
    TfSummaryInstrumentor().instrument()      # before or after ``import tensorflow``
    writer = tf.summary.create_file_writer("logs/exp1")
    with writer.as_default(step=step):
        tf.summary.scalar("loss", loss)       # -> ml.tensorboard.scalar{ml.run.name="logs/exp1"}

Configuration: the ``summary_logdir_root``, ``summary_run_name_pattern``,
``summary_max_tags``, ``summary_flush_seconds``, ``summary_per_write`` and
``summary_graph_mode`` options or their ``OTEL_ML_TF_SUMMARY_*`` variables
(see :mod:`otel_ml.environment_variables`).

API: :class:`TfSummaryInstrumentor` (``instrument(meter_provider=...,
**options)``, ``uninstrument()``, which restores the very originals; the
values already exported stay).

By default nothing is added to a write. ``create_file_writer`` is wrapped to
learn which logdirs this process writes (and to give writers a shorter
``flush_millis`` when the program set none), and a background thread reads
back what TensorFlow wrote there, with the TensorBoard bridge's reader
(:mod:`otel_ml.tf_summary._watch`). A writer's ``close()`` and the end of the
program read once more, so a short run loses nothing.

With ``summary_per_write=True`` every write is exported as it is made
instead (:mod:`otel_ml.tf_summary._patch`): ``summary_ops_v2.write``, which
several modules bind by name (``tf.summary``, ``tf.compat.v2.summary``,
``tensorflow.summary``, the module ``import tensorflow.summary`` creates
afresh), is wrapped in each; a post-import hook covers aliases imported later.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.trace import Tracer

from otel_ml._core import semconv as sc
from otel_ml._core.guard import guarded
from otel_ml._core.instrumentor import OtelMLInstrumentor
from otel_ml._summary import RunNamer, SummaryExporter, SummaryInstruments
from otel_ml._training.instruments import TrainingInstruments
from otel_ml.tf_summary._options import OPTIONS, SummaryOptions
from otel_ml.tf_summary._patch import SummaryWrappers
from otel_ml.tf_summary._watch import LogdirWatcher
from otel_ml.tf_summary._writers import UNKNOWN_RUN, WriterHooks, WriterRegistry
from otel_ml.tf_summary.package import _instruments_all, _instruments_any

_SOURCE = "tensorflow.python.ops.summary_ops_v2"
# attribute in summary_ops_v2 -> the names it has in the modules below
_ALIASES = {"write": ("write",), "create_file_writer_v2": ("create_file_writer_v2", "create_file_writer")}

__all__ = ["TfSummaryInstrumentor"]
_LOG = logging.getLogger(__name__)


class TfSummaryInstrumentor(OtelMLInstrumentor):
    """Exports what ``tf.summary`` writes: scalars, histogram statistics, write counts."""

    _instruments_any = _instruments_any
    _instruments_all = _instruments_all
    _imports = ("tensorflow",)
    option_table = OPTIONS
    # Modules that bind write/create_file_writer by name; the source comes first.
    _modules = (
        _SOURCE,
        "tensorflow._api.v2.summary",
        "tensorflow._api.v2.compat.v2.summary",
        "tensorflow.summary",
    )
    _options: SummaryOptions | None = None
    _exporter: SummaryExporter | None = None
    _writers: WriterRegistry | None = None
    _watcher: LogdirWatcher | None = None
    _hooks: dict[str, Any] | None = None  # attribute of summary_ops_v2 -> its wrapt wrapper

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> None:
        opts = self._options = SummaryOptions(**options)
        # The ml.train.* instruments are the Keras instrumentors' own (one scope for one name).
        instruments = SummaryInstruments.create(meter, TrainingInstruments.shared(kwargs.get("meter_provider")))
        self._exporter = SummaryExporter(instruments, opts.summary_max_tags, sc.FRAMEWORK_TF_SUMMARY)
        self._writers = WriterRegistry(RunNamer(opts.summary_logdir_root, opts.summary_run_name_pattern))
        self._watcher = None
        if not opts.summary_per_write:
            self._watcher = LogdirWatcher(self._exporter, opts.summary_flush_seconds, self._flush_writers)
        self._hooks = None

    def _make_hooks(self) -> dict[str, Any]:
        """The wrappers, built once TensorFlow is imported (the per-write path needs it)."""
        assert self._options is not None and self._exporter is not None and self._writers is not None
        watcher = self._watcher
        if watcher is None:
            writer_hooks = WriterHooks(self._writers, None, None, None)
            per_write = SummaryWrappers(self._exporter, self._writers, self._options.summary_graph_mode)
            return {"create_file_writer_v2": writer_hooks.create_file_writer, "write": per_write.write}
        flush_millis = round(self._options.summary_flush_seconds * 1000)
        writer_hooks = WriterHooks(self._writers, flush_millis, watcher.watch, watcher.read, watcher.names)
        return {"create_file_writer_v2": writer_hooks.create_file_writer, "close": writer_hooks.close}

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        if self._exporter is None:
            return
        if self._hooks is None:
            self._hooks = self._make_hooks()
            # Run our exit hook before TensorFlow's, which were registered when it was imported.
            self._exit_first()
        source = module if module_name == _SOURCE else importlib.import_module(_SOURCE)
        if module_name == _SOURCE:
            guarded("tf_summary.earlier_writers")(self._earlier_writers)(source)
        close = self._hooks.get("close")
        if close is not None:
            self._wrap(source._ResourceSummaryWriter, "close", close)
        for source_name, names in _ALIASES.items():
            wrapper = self._hooks.get(source_name)
            if wrapper is None:
                continue
            # The source first: a module created later imports the replacement from it.
            self._wrap(source, source_name, wrapper)
            replacement = source.__dict__.get(source_name)
            original = getattr(replacement, "__wrapped__", None)
            for name in names:
                current = module.__dict__.get(name)
                if current is not None and (current is original or current is replacement):
                    self._wrap(module, name, wrapper)

    def _earlier_writers(self, source: ModuleType) -> None:
        """Writers created before instrumenting: follow their files, or say once that they are not followed."""
        watcher, writers = self._watcher, self._writers
        if writers is None:
            return
        if watcher is not None:
            logdirs = watcher.adopt_open_writers(writers.namer.name)
            if logdirs:
                _LOG.info(
                    "otel_ml: following %d event file(s) of tf.summary writers created before instrumenting, in %s",
                    len(logdirs),
                    ", ".join(sorted(set(logdirs))),
                )
                return
        default = getattr(getattr(source, "_summary_state", None), "writer", None)
        if default is None or writers.logdir_of(default) is not None:
            return
        if watcher is not None:
            _LOG.warning(
                "otel_ml: the default tf.summary writer was created before instrumenting and its event file is not "
                "a local file this process holds open, so its logdir is unknown and its values are not exported. "
                "Instrument before creating writers."
            )
        else:
            _LOG.warning(
                "otel_ml: the default tf.summary writer was created before instrumenting; its logdir is unknown, "
                "so its writes are exported under ml.run.name=%r. Instrument before creating writers.",
                UNKNOWN_RUN,
            )

    def _flush_writers(self) -> None:
        """Flush the writers the program still holds (a closed one returns at once)."""
        writers = self._writers
        for writer in writers.alive() if writers is not None else ():
            guarded("tf_summary.flush")(writer.flush)()  # type: ignore[attr-defined]

    def _at_exit(self) -> None:
        """Flush the writers still open and read their files once more, before the providers shut down."""
        watcher = self._watcher
        if watcher is None or not watcher.owned():
            return  # a forked child exits without touching its parent's writers
        watcher.stop()
        self._flush_writers()
        watcher.read()

    def _teardown(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self._options = self._exporter = self._writers = self._watcher = None
        self._hooks = None
