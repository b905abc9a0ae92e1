"""tf.summary instrumentation: every scalar written for TensorBoard becomes an OTel metric.

Usage::

    from otel_ml.tf_summary import TfSummaryInstrumentor
    TfSummaryInstrumentor().instrument()      # before or after ``import tensorflow``
    writer = tf.summary.create_file_writer("logs/exp1")
    with writer.as_default(step=step):
        tf.summary.scalar("loss", loss)       # -> ml.summary.scalar{ml.run.name="logs/exp1"}

Configuration: the ``summary_logdir_root``, ``summary_run_name_pattern``,
``summary_max_tags`` and ``summary_graph_mode`` options or their
``OTEL_ML_TF_SUMMARY_*`` variables (see :mod:`otel_ml.environment_variables`).

Every ``tf.summary`` op ends in ``summary_ops_v2.write``, which several
modules bind by name (``summary_ops_v2``, ``tf.summary``,
``tf.compat.v2.summary`` and ``tensorflow.summary``, the module that
``import tensorflow.summary`` creates afresh, as Keras's TensorBoard callback
does). The function is patched in ``summary_ops_v2`` first, so a module
created later imports the patched one, and in every alias present; a
post-import hook covers aliases imported later. ``create_file_writer`` is
wrapped the same way to learn each writer's logdir.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from opentelemetry.instrumentation.dependencies import DependencyConflict, get_dependency_conflicts
from opentelemetry.metrics import Meter
from opentelemetry.trace import Tracer

from otel_ml import _semconv as sc
from otel_ml._base import OtelMLInstrumentor
from otel_ml.tf_summary._export import SummaryExporter
from otel_ml.tf_summary._instruments import SummaryInstruments
from otel_ml.tf_summary._options import OPTIONS, SummaryOptions
from otel_ml.tf_summary._patch import SummaryWrappers
from otel_ml.tf_summary._runs import RunNamer, WriterRegistry
from otel_ml.tf_summary.package import _instruments_any, _requires_all

_SOURCE = "tensorflow.python.ops.summary_ops_v2"
# attribute in summary_ops_v2 -> (its SummaryWrappers method, the names it has in the modules below)
_NAMES = {
    "write": ("write", ("write",)),
    "create_file_writer_v2": ("create_file_writer", ("create_file_writer_v2", "create_file_writer")),
}

__all__ = ["TfSummaryInstrumentor"]


class TfSummaryInstrumentor(OtelMLInstrumentor):
    """Exports what ``tf.summary`` writes: scalars, histogram statistics, write counts."""

    _instruments_any = _instruments_any
    option_table = OPTIONS
    # Modules that bind write/create_file_writer by name; the source comes first.
    _modules = (
        _SOURCE,
        "tensorflow._api.v2.summary",
        "tensorflow._api.v2.compat.v2.summary",
        "tensorflow.summary",
    )
    _settings: tuple[SummaryExporter, WriterRegistry, bool] | None = None
    _wrappers: SummaryWrappers | None = None

    def _check_dependency_conflicts(self) -> DependencyConflict | None:
        return super()._check_dependency_conflicts() or get_dependency_conflicts(list(_requires_all))

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> None:
        opts = SummaryOptions(**options)
        exporter = SummaryExporter(SummaryInstruments.create(meter), opts.summary_max_tags, sc.FRAMEWORK_TF_SUMMARY)
        writers = WriterRegistry(RunNamer(opts.summary_logdir_root, opts.summary_run_name_pattern))
        self._settings = (exporter, writers, opts.summary_graph_mode)

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        if self._settings is None:
            return
        if self._wrappers is None:  # built once TensorFlow is imported: they need it
            self._wrappers = SummaryWrappers(*self._settings)
        wrappers = self._wrappers
        source = module if module_name == _SOURCE else importlib.import_module(_SOURCE)
        for source_name, (method, names) in _NAMES.items():
            # The source first: a module created later imports the replacement from it.
            self._wrap(source, source_name, getattr(wrappers, method))
            replacement = source.__dict__.get(source_name)
            original = getattr(replacement, "__wrapped__", None)
            for name in names:
                current = module.__dict__.get(name)
                if current is not None and (current is original or current is replacement):
                    self._wrap(module, name, getattr(wrappers, method))

    def _teardown(self) -> None:
        self._settings = None
        self._wrappers = None
