"""The live page: ``/`` (HTML), ``/page/data`` (its JSON) and ``/page/static/*`` (script, style, uPlot).

Everything the page shows comes from :class:`MetricHistory` (the endpoint's
own collection, sampled) and the slow-step buffer behind ``/slow-steps``:
nothing is measured for it, and nothing is computed until someone opens it.
``/page/data`` turns the history into the charts the page draws: rates from
counters, quantiles from histograms, anomalies as marks on the loss; a chart
or a panel without data is left out.

Security is the endpoint's: it binds loopback by default; answers carry a
strict Content-Security-Policy (scripts, styles and data from this origin
only, no inline script, no frames); the script writes text, never HTML; and
requests whose ``Host`` is not the address served are refused (DNS
rebinding: a web page elsewhere must not read the page through a name that
resolves to 127.0.0.1). The page shows telemetry only: no training data,
inputs, outputs or user ids are ever in it.

The charts are drawn with uPlot (MIT, shipped in ``static/`` with its
licence): about 50 KB, no dependencies, no build step, and made for many
thousands of points redrawn often on canvas.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import Any

from otel_ml._core.guard import report
from otel_ml.distro.endpoint._history import MetricHistory, SeriesKey
from otel_ml.distro.endpoint._slow_steps import SlowStepBuffer

_StartResponse = Callable[..., Any]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
]
STATIC_FILES = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "LICENSE.uPlot": "text/plain; charset=utf-8",
}
PAGE_PATHS = ("/", "/page/data", "/favicon.ico")
STATIC_PREFIX = "/page/static/"

# (section, chart title, family, what to draw, labels that make the panel, labels that name a series)
_RUN = ("ml_model_name", "ml_run_name")
_MODEL = ("ml_model_name", "ml_model_version")
CHARTS: list[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("Training", "Loss", "ml_train_loss", "value", _RUN, ("ml_phase",)),
    ("Training", "Metrics", "ml_train_metric", "value", _RUN, ("ml_metric_name", "ml_phase")),
    ("Training", "Learning rate", "ml_train_learning_rate", "value", _RUN, ("ml_optimizer_name",)),
    ("Training", "Step time (s)", "ml_train_step_duration_seconds", "p50 p95", _RUN, ()),
    ("Training", "Samples per second", "ml_train_samples", "rate", _RUN, ()),
    ("GPUs", "Utilisation", "hw_gpu_utilization", "value", (), ("hw_name", "hw_gpu_task")),
    ("GPUs", "SM activity", "hw_gpu_sm_activity", "value", (), ("hw_name",)),
    ("GPUs", "Memory used (bytes)", "hw_gpu_memory_usage_bytes", "value", (), ("hw_name",)),
    ("GPUs", "Power (W)", "hw_power_watts", "value", (), ("hw_name",)),
    ("GPUs", "Temperature (°C)", "hw_temperature_celsius", "value", (), ("hw_name",)),
    ("GPUs", "Throttling (reasons active)", "hw_gpu_throttle", "nonzero", (), ("hw_name", "hw_gpu_throttle_reason")),
    ("Inference", "Requests per second", "ml_inference_duration_seconds", "rate", _MODEL, ()),
    ("Inference", "Latency (s)", "ml_inference_duration_seconds", "p50 p99", _MODEL, ()),
    ("Inference", "Errors per second", "ml_inference_duration_seconds", "errors", _MODEL, ()),
    ("Inference", "Queue time (s)", "ml_inference_queue_duration_seconds", "p50 p99", _MODEL, ()),
    ("Inference", "Accuracy", "ml_model_outcomes", "accuracy", _MODEL, ()),
    ("tf.summary", "Scalars", "ml_tensorboard_scalar", "value", ("ml_run_name",), ("ml_summary_tag",)),
]
_DEFAULT_LABEL = {"rate": "per second", "value": "value"}
_QUANTILE_RING = {"p50": 1, "p95": 2, "p99": 3}
EMPTY_HINT = (
    "Nothing to show yet. Train a Keras model in this process (otel_ml.instrument() or opentelemetry-instrument), "
    "serve a model with otel_ml.serving, write tf.summary scalars, or run `otel-ml gpu` on a GPU host; "
    "the page fills in within one sampling interval."
)


def handles(path: str) -> bool:
    """Whether ``path`` is one of the page's."""
    return path in PAGE_PATHS or path.startswith(STATIC_PREFIX)


def serve(
    history: MetricHistory, slow_steps: SlowStepBuffer, environ: dict[str, Any], start_response: _StartResponse
) -> Iterable[bytes]:
    """Answer one of the page's paths (the server has already refused a foreign ``Host``: DNS rebinding)."""
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        return _answer(start_response, "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET only\n")
    path = environ.get("PATH_INFO", "/")
    if path == "/favicon.ico":  # browsers ask for it on every page, /slow-steps' JSON included: no 404 noise
        return _answer(start_response, "204 No Content", "image/x-icon", b"")
    if path == "/":
        return _answer(start_response, "200 OK", "text/html; charset=utf-8", _static("page.html"))
    if path == "/page/data":
        try:
            body = json.dumps(page_data(history, slow_steps), allow_nan=False).encode()
        except Exception as exc:  # noqa: BLE001 - reported once as otel_ml's own error; the page retries
            report("the live page's data", exc)
            return _answer(start_response, "500 Internal Server Error", "text/plain; charset=utf-8", b"error\n")
        return _answer(start_response, "200 OK", "application/json", body)
    name = path[len(STATIC_PREFIX) :]
    if name not in STATIC_FILES:
        return _answer(start_response, "404 Not Found", "text/plain; charset=utf-8", b"not found\n")
    return _answer(start_response, "200 OK", STATIC_FILES[name], _static(name))


def _answer(start_response: _StartResponse, status: str, content_type: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *_SECURITY_HEADERS])
    return [body]


@cache
def _static(name: str) -> bytes:
    return resources.files("otel_ml.distro.endpoint").joinpath("static").joinpath(name).read_bytes()


# --- the data ----------------------------------------------------------------------------


def page_data(history: MetricHistory, slow_steps: SlowStepBuffer, now: float | None = None) -> dict[str, Any]:
    """The page's JSON: the time axis, then sections of panels of charts (only those with data)."""
    now = time.time() if now is None else now
    times, series = history.snapshot()
    sections: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {}
    for section, title, family, what, panel_by, series_by in CHARTS:
        for panel_key, drawn in _chart_series(times, series, family, what, panel_by, series_by).items():
            if not drawn:
                continue
            panel = sections.setdefault(section, {}).setdefault(
                panel_key, {"title": _panel_title(panel_by, panel_key), "facts": [], "charts": []}
            )
            # Durations on a log axis: the first step (tracing, compiling) is often 1000 times the others.
            chart: dict[str, Any] = {"title": title, "series": drawn, "marks": [], "log": what.startswith("p50")}
            if family == "ml_train_loss":
                chart["marks"] = _anomaly_marks(times, series, dict(zip(panel_by, panel_key, strict=True)))
            panel["charts"].append(chart)
    training = sections.get("Training", {})
    for panel_key, panel in training.items():
        panel["facts"] = _training_facts(history, series, dict(zip(_RUN, panel_key, strict=True)), now)
    spans = slow_steps.spans(limit=20) if training else []
    return {
        "now": now,
        "interval": history.interval,
        "capacity": history.capacity,
        "points": len(times),
        "dropped_series": history.dropped_series,
        "t": _finite_list(times),
        "sections": [{"name": name, "panels": list(panels.values())} for name, panels in sections.items() if panels],
        "slow_steps": [_slow_row(span) for span in spans],
        "empty": None if sections else EMPTY_HINT,
    }


def _panel_title(panel_by: tuple[str, ...], key: tuple[str, ...]) -> str:
    names = {"ml_model_name": "model", "ml_run_name": "run", "ml_model_version": "version"}
    parts = [f"{names.get(label, label)} {value}" for label, value in zip(panel_by, key, strict=True) if value]
    return " · ".join(parts) or "all devices"


def _chart_series(
    times: list[float],
    series: dict[SeriesKey, tuple[str, list[list[float]]]],
    family: str,
    what: str,
    panel_by: tuple[str, ...],
    series_by: tuple[str, ...],
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Panel key -> the chart's series (label, values), each with at least one number."""
    grouped: dict[tuple[str, ...], dict[str, list[list[list[float]]]]] = {}
    for (name, labels), (_, rings) in series.items():
        if name != family:
            continue
        labelled = dict(labels)
        if what == "errors" and not labelled.get("error_type"):
            continue
        if what.startswith("p50") and labelled.get("error_type"):
            continue  # latency quantiles: of the answered requests (histograms cannot be merged here)
        if what == "accuracy":
            tag = "correct" if labelled.get("ml_prediction_correct") == "true" else "all"
            grouped.setdefault(tuple(labelled.get(k, "") for k in panel_by), {}).setdefault(tag, []).append(rings)
            if tag == "correct":
                grouped[tuple(labelled.get(k, "") for k in panel_by)].setdefault("all", []).append(rings)
            continue
        label = " ".join(labelled.get(k, "") for k in series_by if labelled.get(k)) or _DEFAULT_LABEL.get(what, family)
        grouped.setdefault(tuple(labelled.get(k, "") for k in panel_by), {}).setdefault(label, []).append(rings)
    out: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for key, by_label in grouped.items():
        drawn: list[tuple[str, list[float]]] = []
        if what == "accuracy":
            correct, total = _summed_rate(times, by_label.get("correct", [])), _summed_rate(times, by_label["all"])
            ratio = [c / a if a > 0 and not math.isnan(c) else math.nan for c, a in zip(correct, total, strict=True)]
            drawn.append(("accuracy", ratio))
        elif what in ("rate", "errors"):
            for label, rings_list in sorted(by_label.items()):
                drawn.append((label if what == "rate" else "errors", _summed_rate(times, rings_list)))
        elif what in ("value", "nonzero"):  # "nonzero": only series that were ever above 0 (throttle reasons)
            for label, rings_list in sorted(by_label.items()):
                for n, rings in enumerate(rings_list):  # label sets that differ elsewhere: numbered, not hidden
                    if what == "value" or any(v > 0 for v in rings[0]):
                        drawn.append((label if n == 0 else f"{label} ({n + 1})", rings[0]))
        else:  # quantiles: the first series of each label (histograms are not summed across label sets)
            for label, rings_list in sorted(by_label.items()):
                for quantile in what.split():
                    name = quantile if label == family else f"{label} {quantile}"
                    drawn.append((name, rings_list[0][_QUANTILE_RING[quantile]]))
        kept = [{"label": lbl, "values": _finite_list(vals)} for lbl, vals in drawn if _any_number(vals)]
        out[key] = kept
    return out


def _summed_rate(times: list[float], rings_list: list[list[list[float]]]) -> list[float]:
    """The sum of the series' per-second rates, as Prometheus's ``sum(rate())``: a series that is new
    in a sample adds nothing to it yet (its earlier count is unknown), instead of a jump of its whole count."""
    total = [math.nan] * len(times)
    for rings in rings_list:
        for i, value in enumerate(_rate(times, rings[0])):
            if not math.isnan(value):
                total[i] = value if math.isnan(total[i]) else total[i] + value
    return total


def _rate(times: list[float], cumulative: list[float]) -> list[float]:
    """Per-second increase between consecutive samples (NaN across a gap or a reset)."""
    if not cumulative:
        return [math.nan] * len(times)
    out = [math.nan]
    for i in range(1, len(times)):
        a, b, dt = cumulative[i - 1], cumulative[i], times[i] - times[i - 1]
        out.append((b - a) / dt if dt > 0 and b >= a else math.nan)
    return out


def _anomaly_marks(
    times: list[float], series: dict[SeriesKey, tuple[str, list[list[float]]]], panel: dict[str, str]
) -> list[dict[str, Any]]:
    """One mark per sample in which a run's anomaly counter rose: its time, kind and how many."""
    marks = []
    for (name, labels), (_, rings) in series.items():
        labelled = dict(labels)
        if name != "ml_train_anomalies" or any(labelled.get(k, "") != v for k, v in panel.items()):
            continue
        # A counter already there at the window's start rose before it: only later rises are marked.
        previous = rings[0][0] if rings[0] and not math.isnan(rings[0][0]) else 0.0
        for t, value in zip(times, rings[0], strict=True):
            if math.isnan(value):
                continue
            if value > previous:
                marks.append({"t": t, "kind": labelled.get("ml_anomaly_kind", "anomaly"), "count": value - previous})
            previous = value
    return sorted(marks, key=lambda mark: mark["t"])


def _training_facts(
    history: MetricHistory, series: dict[SeriesKey, tuple[str, list[list[float]]]], panel: dict[str, str], now: float
) -> list[list[str]]:
    """Steps, samples and epochs so far, and how long ago the last step was (the time passing in a pause)."""
    facts: list[list[str]] = []
    for family, label in (("ml_train_steps", "steps"), ("ml_train_samples", "samples"), ("ml_train_epochs", "epochs")):
        for (name, labels), (_, rings) in series.items():
            if name != family or any(dict(labels).get(k, "") != v for k, v in panel.items()):
                continue
            values = rings[0]
            numbers = [v for v in values if not math.isnan(v)]
            if not numbers:
                continue
            facts.append([label, f"{numbers[-1]:.0f}"])
            if family == "ml_train_steps":
                changed = history.changed_at((name, labels))
                if changed is not None:
                    facts.append(["last step", f"{max(0.0, now - changed):.0f} s ago"])
            break
    return facts


def _slow_row(span: dict[str, Any]) -> dict[str, Any]:
    attributes = span.get("attributes") or {}
    keep = ("ml.step", "ml.epoch", "ml.batch.loss", "ml.slow_threshold", "ml.run.name")
    return {
        "trace_id": span.get("trace_id"),
        "span_id": span.get("span_id"),
        "name": span.get("name"),
        "start": _finite((span.get("start_time_unix_nano") or 0) / 1e9),
        "duration": _finite(span.get("duration_seconds")),
        **{key: _json_value(attributes.get(key)) for key in keep},
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return _finite(value)
    return value if value is None or isinstance(value, int | str | bool) else str(value)


def _finite(value: Any) -> float | None:
    """A number JSON can carry: NaN and infinities become null (a gap in the chart)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _finite_list(values: list[float]) -> list[float | None]:
    """``_finite`` over a list, fast: ``v - v`` is 0 for a finite number, NaN for NaN and infinities."""
    return [v if v - v == 0 else None for v in values]


def _any_number(values: list[float]) -> bool:
    return any(not math.isnan(v) for v in values)
