"""What the serving helpers share: their meter and the model's attributes, validated once."""

from __future__ import annotations

from typing import Any, Final

from opentelemetry import metrics

from otel_ml import _semconv as sc
from otel_ml.version import __version__

MAX_LABEL_LENGTH: Final = 128
OTHER: Final = "_OTHER"


def meter(meter_provider: metrics.MeterProvider | None) -> metrics.Meter:
    """The ``otel_ml.serving`` meter of ``meter_provider`` (default: the global provider, even if set later)."""
    return metrics.get_meter("otel_ml.serving", __version__, meter_provider)


def model_attributes(model_name: str, version: str | int | None) -> dict[str, Any]:
    """``ml.model.name`` (and ``ml.model.version``); raises ValueError naming what is accepted."""
    if not isinstance(model_name, str) or not model_name.strip() or len(model_name) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"model_name {model_name!r} is invalid: expected a non-empty string of at most {MAX_LABEL_LENGTH}"
        )
    attrs: dict[str, Any] = {sc.ML_MODEL_NAME: model_name}
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version).strip():
            raise ValueError(f"version {version!r} is invalid: expected a non-empty string, a whole number or None")
        attrs[sc.ML_MODEL_VERSION] = str(version)[:MAX_LABEL_LENGTH]
    return attrs
