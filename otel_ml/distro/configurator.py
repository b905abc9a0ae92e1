"""The ``opentelemetry-instrument`` configurator shipped with otel_ml.

Without a configurator, ``opentelemetry-instrument`` leaves the global
providers as proxies and nothing is exported. This one installs SDK providers
that honour the standard ``OTEL_*`` variables and default to the embedded
``/metrics`` endpoint, so ``opentelemetry-instrument python train.py`` exports
with only otel_ml installed. If ``opentelemetry-distro`` is installed as well,
select this one with ``OTEL_PYTHON_CONFIGURATOR=otel_ml``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_ml.distro._sdk import ensure_providers


class OtelMLConfigurator(_BaseConfigurator):
    """Creates global SDK providers unless the program already set its own."""

    def _configure(self, **kwargs: Any) -> None:
        ensure_providers()
