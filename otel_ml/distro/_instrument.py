"""``otel_ml.instrument()`` and ``otel_ml.uninstrument()``: compose the instrumentors.

The per-framework instrumentors do the work; this module only resolves the
providers once, parses each explicit option once (a bad one raises before anything is on), honours
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` and skips frameworks that are not
installed (quietly: a training job without paddle is normal).

The instrumentors are otel_ml's own ``opentelemetry_instrumentor`` entry
points, the very list ``opentelemetry-instrument`` reads: they are declared
once, in ``pyproject.toml``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution
from typing import Any, Final

from opentelemetry import metrics, trace

from otel_ml._core.guard import report
from otel_ml._core.instrumentor import OtelMLInstrumentor, sdk_disabled
from otel_ml._core.options import PARSED, forget_reported
from otel_ml.distro import _children
from otel_ml.distro._env_check import check_unknown_variables
from otel_ml.distro._redact import install as install_redaction
from otel_ml.distro._sdk import ensure_providers

_LOG = logging.getLogger(__name__)
_warned: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()

_DISTRIBUTION: Final = "otel_ml"
_GROUP: Final = "opentelemetry_instrumentor"


@functools.cache
def entry_points() -> tuple[EntryPoint, ...]:
    """otel_ml's own instrumentor entry points (name as in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``).

    Read from the installed distribution's metadata, once. A checkout that
    is only on ``sys.path`` has none: that is said once, as an error naming
    the fix, and nothing is instrumented.
    """
    try:
        found = distribution(_DISTRIBUTION).entry_points
    except PackageNotFoundError:
        _LOG.error(
            "otel_ml: no instrumentor is known: the %s distribution's metadata (its %s entry points) "
            "is not installed; install otel_ml (from a checkout: pip install -e .)",
            _DISTRIBUTION,
            _GROUP,
        )
        return ()
    return tuple(ep for ep in found if ep.group == _GROUP)


def _instrumentors() -> dict[str, OtelMLInstrumentor]:
    """Every instrumentor that loads; one that does not is reported once and left out."""
    found: dict[str, OtelMLInstrumentor] = {}
    for ep in entry_points():
        try:
            found[ep.name] = ep.load()()
        except Exception as exc:  # noqa: BLE001 - one broken instrumentor must not stop the others
            report(f"loading the {ep.name} instrumentor", exc)
    return found


def _disabled() -> set[str]:
    raw = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def instrument(
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    **options: Any,
) -> None:
    """Instrument every supported framework that is installed; safe to call twice.

    Call it before or after importing the framework: modules not imported yet
    are patched when the program imports them. With no providers given and
    none configured globally, metrics are served on
    ``http://127.0.0.1:9464/metrics`` (or as ``OTEL_METRICS_EXPORTER`` says).

    Args:
        meter_provider: Meter provider to use; default: the global one, created if unset.
        tracer_provider: Tracer provider to use; default: the global one, created if unset.
        **options: Instrumentor options, e.g. ``run_name="exp1"`` or
            ``slow_step_seconds=0.5``; each beats its ``OTEL_ML_*`` variable.

    Raises:
        TypeError: an option no instrumentor accepts.
        ValueError: an option with an invalid value.

    Example:
        >>> import otel_ml
        >>> otel_ml.instrument(run_name="baseline")  # doctest: +SKIP

    With ``OTEL_SDK_DISABLED=true`` it does nothing at all: no patch, no thread, no socket.
    """
    if sdk_disabled():
        return
    # A spawn worker importing again a main module that instruments at its top level: as a forked child.
    caller = sys._getframe(1)
    worker = meter_provider is None and tracer_provider is None and _children.reimported_main(caller)
    if _children.stays_off(worker):
        _LOG.debug("otel_ml: not instrumenting a multiprocessing worker whose telemetry has nowhere to go")
        return
    install_redaction()
    check_unknown_variables()
    instrumentors = _instrumentors()
    known: set[str] = set()
    for inst in instrumentors.values():
        known |= inst.options
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"otel_ml.instrument() got unknown option(s) {unknown}; accepted: {sorted(known)}")
    parsed: dict[str, Any] = {}  # each explicit option parsed once; a bad one raises before anything is on
    for table in {id(inst.option_table): inst.option_table for inst in instrumentors.values()}.values():
        parsed |= table.parse(options)
    disabled = _disabled()
    pending: dict[str, OtelMLInstrumentor] = {}
    already: dict[str, list[str]] = {}  # instrumentor already on -> the options given for it
    for name, inst in instrumentors.items():
        if name in disabled:
            continue
        if inst.is_instrumented_by_opentelemetry:
            already[name] = sorted(key for key in options if key in inst.options)
        else:
            pending[name] = inst
    _not_applied(already)
    if not pending:
        return
    with _children.push_only(worker):
        meter_provider, tracer_provider = ensure_providers(meter_provider, tracer_provider)
    for name, inst in pending.items():
        conflict = inst.dependency_conflict()
        if conflict is not None:
            _LOG.debug("otel_ml: not instrumenting %s: %s", name, conflict)
            inst.note_unsupported(conflict)
            continue
        own = {key: value for key, value in parsed.items() if key in inst.options}
        inst.instrument(
            meter_provider=meter_provider, tracer_provider=tracer_provider, skip_dep_check=True, **{PARSED: own}
        )


def _not_applied(already: dict[str, list[str]]) -> None:
    """Options for instrumentors that are already on (e.g. by ``opentelemetry-instrument``): one line, once."""
    names = tuple(name for name, given in already.items() if given)
    given = tuple(sorted({key for name in names for key in already[name]}))
    if not names or (names, given) in _warned:
        return
    _warned.add((names, given))
    _LOG.warning(
        "otel_ml: %s %s already instrumented, so the option(s) %s were validated but not applied; "
        "call otel_ml.uninstrument() first, or set them as OTEL_ML_* variables",
        ", ".join(names),
        "is" if len(names) == 1 else "are",
        ", ".join(given),
    )


def uninstrument() -> None:
    """Undo :func:`instrument`: every patched method is restored exactly; safe to call twice."""
    for inst in _instrumentors().values():
        if inst.is_instrumented_by_opentelemetry:
            inst.uninstrument()
    forget_reported()
