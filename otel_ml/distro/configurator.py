"""The ``opentelemetry-instrument`` configurator shipped with otel_ml.

Without a configurator, ``opentelemetry-instrument`` leaves the global
providers as proxies and nothing is exported. This one installs SDK providers
that honour the standard ``OTEL_*`` variables and default to the embedded
``/metrics`` endpoint, so ``opentelemetry-instrument python train.py`` exports
with only otel_ml installed. If ``opentelemetry-distro`` is installed as well,
select this one with ``OTEL_PYTHON_CONFIGURATOR=otel_ml``.

In a process ``multiprocessing`` started, it makes the forked child's choice
(:mod:`otel_ml.distro._children`): no embedded endpoint, push exporters kept,
and nothing at all when nothing pushes.
"""

from __future__ import annotations

from typing import Any

from otel_ml._core.instrumentor import sdk_disabled, stay_off_in_this_process
from otel_ml.distro import _children


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
        worker = _children.is_worker()
        if _children.stays_off(worker):  # a multiprocessing worker with nowhere to send telemetry: quick and quiet
            stay_off_in_this_process()
            return
        # Imported here: a process otel_ml stays out of does not pay for the SDK's import.
        from otel_ml.distro._env_check import check_unknown_variables
        from otel_ml.distro._redact import install as install_redaction
        from otel_ml.distro._sdk import ensure_providers

        install_redaction()
        check_unknown_variables()
        with _children.push_only(worker):
            ensure_providers()
