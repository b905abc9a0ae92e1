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
import sys
from types import ModuleType
from typing import Any, ClassVar

import wrapt
from opentelemetry import metrics
from opentelemetry.instrumentation.dependencies import DependencyConflict, get_dependency_conflicts

from otel_ml import _semconv as sc
from otel_ml._base import OtelMLInstrumentor
from otel_ml.tf_summary._export import SummaryExporter
from otel_ml.tf_summary._instruments import SummaryInstruments
from otel_ml.tf_summary._options import OPTION_NAMES, SummaryOptions
from otel_ml.tf_summary._patch import SummaryWrappers
from otel_ml.tf_summary._runs import RunNamer, WriterRegistry
from otel_ml.tf_summary.package import _instruments_any, _requires_all
from otel_ml.version import __version__

_SOURCE = "tensorflow.python.ops.summary_ops_v2"
# Modules that bind write/create_file_writer by name; the source comes first.
_MODULES = (
    _SOURCE,
    "tensorflow._api.v2.summary",
    "tensorflow._api.v2.compat.v2.summary",
    "tensorflow.summary",
)
# attribute in summary_ops_v2 -> (its SummaryWrappers method, the names it has in the modules above)
_NAMES = {
    "write": ("write", ("write",)),
    "create_file_writer_v2": ("create_file_writer", ("create_file_writer_v2", "create_file_writer")),
}

__all__ = ["TfSummaryInstrumentor"]


class TfSummaryInstrumentor(OtelMLInstrumentor):
    """Exports what ``tf.summary`` writes: scalars, histogram statistics, write counts."""

    _instruments_any = _instruments_any
    options: ClassVar[frozenset[str]] = OPTION_NAMES

    def __init__(self) -> None:
        # BaseInstrumentor is a per-class singleton: set state only the first time.
        if not hasattr(self, "_originals"):
            self._originals: dict[str, Any] = {}
            self._proxies: dict[str, Any] = {}
            self._wrappers: SummaryWrappers | None = None
            self._settings: tuple[SummaryExporter, WriterRegistry, bool] | None = None

    def _check_dependency_conflicts(self) -> DependencyConflict | None:
        return super()._check_dependency_conflicts() or get_dependency_conflicts(list(_requires_all))

    def _instrument(self, **kwargs: Any) -> None:
        options = SummaryOptions.resolve(**{k: v for k, v in kwargs.items() if k in OPTION_NAMES})
        meter = metrics.get_meter(__name__, __version__, kwargs.get("meter_provider"))
        exporter = SummaryExporter(SummaryInstruments.create(meter), options.max_tags, sc.FRAMEWORK_TF_SUMMARY)
        writers = WriterRegistry(RunNamer(options.logdir_root, options.run_name_pattern))
        self._settings = (exporter, writers, options.graph_mode)
        self._active = True
        for module_name in _MODULES:
            self._when_imported(module_name)

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        if self._settings is None:
            return
        if module_name != _SOURCE:
            # The aliases import from the source, so it is loaded already.
            self._patch_module(_SOURCE, importlib.import_module(_SOURCE))
        elif not self._proxies:
            self._wrappers = SummaryWrappers(*self._settings)
            for source_name, (method, _names) in _NAMES.items():
                original = module.__dict__[source_name]
                self._originals[source_name] = original
                self._proxies[source_name] = wrapt.FunctionWrapper(original, getattr(self._wrappers, method))
        for source_name, (_method, names) in _NAMES.items():
            for name in names:
                if module.__dict__.get(name) is self._originals.get(source_name):
                    setattr(module, name, self._proxies[source_name])

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False
        for module_name in _MODULES:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            for source_name, (_method, names) in _NAMES.items():
                for name in names:
                    if self._proxies and module.__dict__.get(name) is self._proxies[source_name]:
                        setattr(module, name, self._originals[source_name])
        self._proxies.clear()
        self._originals.clear()
        self._wrappers = None
        self._settings = None
