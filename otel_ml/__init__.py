"""otel_ml: OpenTelemetry metrics and traces for machine-learning workloads.

Usage::

    import otel_ml
    otel_ml.instrument()        # Keras (and the other installed frameworks)
    model.fit(...)              # served on http://127.0.0.1:9464/metrics

or, with no code change: ``opentelemetry-instrument python train.py``.
Importing otel_ml imports no ML framework.
"""

from typing import TYPE_CHECKING, Any

from otel_ml._core.run_name import run
from otel_ml.gpu import GpuInstrumentor
from otel_ml.keras import KerasInstrumentor
from otel_ml.paddle import PaddleInstrumentor
from otel_ml.process import ProcessInstrumentor
from otel_ml.tf_keras import TfKerasInstrumentor
from otel_ml.tf_summary import TfSummaryInstrumentor
from otel_ml.version import __version__

if TYPE_CHECKING:
    from otel_ml.distro._instrument import instrument, uninstrument


def __getattr__(name: str) -> Any:
    # instrument/uninstrument live in the distro layer (SDK set-up), loaded on
    # first use: importing otel_ml, or an instrumentor, loads no SDK module.
    if name in ("instrument", "uninstrument"):
        from otel_ml.distro import _instrument

        return getattr(_instrument, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GpuInstrumentor",
    "KerasInstrumentor",
    "PaddleInstrumentor",
    "ProcessInstrumentor",
    "TfKerasInstrumentor",
    "TfSummaryInstrumentor",
    "__version__",
    "instrument",
    "run",
    "uninstrument",
]
