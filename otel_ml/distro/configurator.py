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

from otel_ml._core.instrumentor import sdk_disabled
from otel_ml.distro._env_check import check_unknown_variables
from otel_ml.distro._redact import install as install_redaction
from otel_ml.distro._sdk import ensure_providers


class OtelMLConfigurator:
    """Creates global SDK providers unless the program already set its own.

    ``opentelemetry-instrument`` loads the ``opentelemetry_configurator`` entry
    point and calls ``configure(auto_instrumentation_version=...)`` on an
    instance; that is the whole contract (the SDK's own configurators share a
    private base class, which otel_ml does not need).
    """

    def configure(self, **kwargs: Any) -> None:
        """Install SDK providers unless there are some already (idempotent); nothing with ``OTEL_SDK_DISABLED``."""
        if sdk_disabled():
            return
        install_redaction()
        check_unknown_variables()
        ensure_providers()
