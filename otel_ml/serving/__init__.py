"""Helpers for serving code: where a request's time goes before the model runs, and how good the model is.

Usage::

    from otel_ml.serving import ModelQuality, QueueTimer, instrument_flask_app, uninstrument_flask_app

    instrument_flask_app(app)                  # http.server.* (stable conventions) at a small cost per request
    uninstrument_flask_app(app)                # and undone: app.wsgi_app is exactly what it was

    waits = QueueTimer("resnet", version="3")
    with waits.waiting():                      # around the wait for a free predictor
        predictor = free_predictors.get()

    quality = ModelQuality("resnet", classes=["cat", "dog"], version="3", secret=key)
    token = quality.predicted("cat")           # when answering: the client keeps the token
    quality.observed("dog", token=token)       # when the ground truth arrives, in any process

Configuration: arguments only. All three take an optional ``meter_provider``
(default: the global one, which ``otel_ml.instrument()`` sets up). None puts
inputs, outputs, request ids or feedback tokens into telemetry: labels are the model's name and
version, the classes declared up front, and for HTTP the bounded attributes of
the stable conventions (no ``Host`` header, no URL).

API: :func:`instrument_flask_app` / :func:`uninstrument_flask_app` (as the
contrib Flask instrumentation's ``instrument_app`` / ``uninstrument_app``),
:class:`QueueTimer`, :class:`ModelQuality`.
"""

from __future__ import annotations

from otel_ml.serving._http import instrument_flask_app, uninstrument_flask_app
from otel_ml.serving._quality import ModelQuality
from otel_ml.serving._queue import QueueTimer

__all__ = ["ModelQuality", "QueueTimer", "instrument_flask_app", "uninstrument_flask_app"]
