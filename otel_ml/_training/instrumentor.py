"""The one training instrumentor; the ``keras`` and ``tf_keras`` targets only say where to patch.

Keras 3 and Keras 2 (``tf_keras``) train the same way: ``fit``, ``evaluate``
and ``predict`` on one class per backend, and one function that makes each
call's data adapter. A target subclasses :class:`TrainingInstrumentor` and
declares its distributions (``package.py``), its options, its
:class:`~otel_ml._training.flavour.Flavour`, its trainer classes and its data
function; everything else (the wrappers, the instruments, patching when the
program imports the modules, restoring the originals) is here, once.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

from opentelemetry.metrics import Meter
from opentelemetry.trace import Tracer

from otel_ml._core import cardinality
from otel_ml._core.instrumentor import OtelMLInstrumentor
from otel_ml._training.flavour import Flavour
from otel_ml._training.instruments import TrainingInstruments
from otel_ml._training.options import TrainingOptions
from otel_ml._training.wrappers import TrainingWrappers

METHODS = ("fit", "evaluate", "predict")


class TrainingInstrumentor(OtelMLInstrumentor):
    """Wraps ``fit``/``evaluate``/``predict`` of a Keras flavour's trainer classes, and its data function.

    A subclass sets ``_flavour``, ``_trainers`` (module -> the class defining
    the three methods there), ``_data`` (module, function that makes a call's
    data adapter) and ``_modules`` (every module named in those two).
    """

    _flavour: ClassVar[Flavour]
    _trainers: ClassVar[dict[str, str]]
    _data: ClassVar[tuple[str, str]]
    _wrappers: TrainingWrappers | None = None

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> None:
        instruments = TrainingInstruments.shared(kwargs.get("meter_provider"))
        resolved = TrainingOptions(**options)
        cardinality.reset(resolved.max_runs)
        self._wrappers = TrainingWrappers(instruments, tracer, resolved, self._flavour)

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        wrappers = self._wrappers
        if wrappers is None:
            return
        data_module, data_function = self._data
        if module_name == data_module:
            self._wrap(module, data_function, wrappers.get_data_adapter)
            return
        cls = getattr(module, self._trainers[module_name])
        for method in METHODS:
            self._wrap(cls, method, getattr(wrappers, method))

    def _teardown(self) -> None:
        self._wrappers = None
