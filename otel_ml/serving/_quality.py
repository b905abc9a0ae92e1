"""The served model's quality: what it predicts, and how often it was right once the truth is known.

Latency says nothing about a model that answers fast and wrong. Three
counters let Prometheus compute, over any window: the prediction
distribution (``ml.model.predictions`` by ``ml.prediction.label``), accuracy
(the share of ``ml.model.outcomes`` with ``ml.prediction.correct="true"``),
per-class recall (the same share by ``ml.truth.label``), per-class precision
(right outcomes by ``ml.prediction.label`` against ``ml.model.false_positives``)
and, for up to ``MAX_CONFUSION_CLASSES`` classes, the confusion matrix (every
outcome carries its predicted class).

Every series of the declared classes exists from the moment the classes are
declared, at 0: Prometheus's ``increase()`` cannot see the first increment
of a series that appears with a value already, so lazily created series lose
a burst of feedback.

Feedback pairs a truth with its prediction in one of three ways:

- a **feedback token** (what :meth:`ModelQuality.predicted` returns): the
  predicted class, signed, carried by the client and handed back with the
  truth, in any process of the service and however late. Nothing is
  remembered per prediction; a bounded set of recently seen tokens turns a
  replayed token away;
- ``predicted=``: the caller states the predicted class itself (a pipeline
  that stored it next to the request);
- ``request_id=``: a bounded in-memory map, for one process and recent
  predictions only.

No token, request id or input reaches telemetry or logs.

A process records the quality of at most ``MAX_MODELS`` models: every label
stays bounded, and the SDK set-up otel_ml builds gives these instruments the
series limit that bound implies (:func:`series_limits`), above the SDK's
default of 2,000 that one ImageNet model already reaches.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Final

from opentelemetry import metrics

from otel_ml._core import semconv as sc
from otel_ml._core.observe import Binding, binding_for
from otel_ml.serving._common import OTHER, Callback, Tally, live_set, meter, model_attributes, render_label

MAX_CLASSES: Final = 1000
"""Declared classes at most (ImageNet's 1,000 fit): every one is a label value on three counters."""
MAX_CONFUSION_CLASSES: Final = 20
"""Up to this many classes, wrong outcomes carry the predicted class too (a confusion matrix, (n+1)² series);
beyond it, per-class true positives, false negatives (``ml.model.outcomes``) and false positives
(``ml.model.false_positives``) only: 2n+1 and n+1 series."""
MAX_MODELS: Final = 32
"""Models whose quality one process (one meter provider) records: a model is a name, version and class list;
declaring the same one again adds nothing. Past it a model's quality is not recorded (one WARNING): every label
stays bounded, and within it every series fits the limit the SDK set-up derives from these bounds
(:func:`series_limits`)."""
_LOG = logging.getLogger(__name__)
_TOKEN_VERSION: Final = 1
_TOKEN: Final = struct.Struct(">BIQ")  # version, predicted class index, nonce
_MAC_BYTES: Final = 11
_TOKEN_LENGTH: Final = 32  # base64 of 13 + 11 bytes, no padding
_PUBLIC_KEY: Final = b"otel_ml.serving.ModelQuality feedback token"


def series_limits() -> dict[str, int]:
    """The most series each quality instrument can hold in one process: ``MAX_MODELS`` times one model's most.

    One model of ``MAX_CLASSES`` classes makes 2n+1 outcome series (2,001:
    already past the OpenTelemetry SDK's default limit of 2,000 per
    instrument), a confusion matrix at most (``MAX_CONFUSION_CLASSES`` + 1)²;
    n+1 prediction and false-positive series. The providers otel_ml builds give
    these instruments these limits (:mod:`otel_ml.distro._views`).

    Example:
        >>> series_limits()[sc.METRIC_MODEL_OUTCOMES], series_limits()[sc.METRIC_MODEL_PREDICTIONS]
        (64032, 32032)
    """
    per_model = max(2 * MAX_CLASSES + 1, (MAX_CONFUSION_CLASSES + 1) ** 2)
    return {
        sc.METRIC_MODEL_OUTCOMES: MAX_MODELS * per_model,
        sc.METRIC_MODEL_FALSE_POSITIVES: MAX_MODELS * (MAX_CLASSES + 1),
        sc.METRIC_MODEL_PREDICTIONS: MAX_MODELS * (MAX_CLASSES + 1),
    }


_declared_lock = threading.Lock()
_warned: list[bool] = []


def _admitted(meter_provider: metrics.MeterProvider | None, model: tuple[Any, ...]) -> int | None:
    """Whether ``model`` (attributes and rendered classes) may be recorded on the provider: None if so, else the
    number of models it already records (``MAX_MODELS``). Declaring one model again is admitted."""
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()

    def make(binding: Binding[Any]) -> None:
        binding.bind(set())

    with _declared_lock:
        state = binding_for(provider, "ml.model.quality.declared", make).state
        declared: set[tuple[Any, ...]] = state if state is not None else set()
        if model in declared:
            return None
        if len(declared) >= MAX_MODELS:
            return len(declared)
        declared.add(model)
        return None


class ModelQuality:
    """Counts a model's predictions by class and, when the truth arrives, its outcomes.

    A prediction is one atomic counter bump (read at collection) and its
    feedback token (an HMAC-SHA256 of 13 bytes); a dict entry under a lock when it
    carries a request id.

    Args:
        model_name: ``ml.model.name``.
        classes: Every class the model predicts (1 to 1,000, compared whole as ``str()``); any
            other label counts as ``_OTHER``, and a prediction of ``_OTHER`` is never right.
            Past ``MAX_MODELS`` models (name, version, classes) per provider, a model's
            quality is not recorded (one WARNING); its tokens still work.
        version: ``ml.model.version``, or None.
        max_pending: Predictions remembered by request id for a later truth, and tokens
            remembered as already used; the oldest go first.
        secret: The key that signs feedback tokens, the same in every process of the service
            (e.g. from a Kubernetes secret). Without it tokens are checksummed, not signed:
            they survive any process and any delay, but whoever reads this code can forge one.
        meter_provider: Default: the global one.

    Raises:
        ValueError: no classes, too many, or a bad name, version, ``max_pending`` or ``secret``.

    Example:
        >>> quality = ModelQuality("iris_mlp", classes=[0, 1, 2])
        >>> token = quality.predicted(2, request_id="r1")
        >>> quality.observed(2, token=token)
        True
        >>> quality.observed(2, token=token)  # used already
        False
        >>> len(token)
        32
    """

    def __init__(
        self,
        model_name: str,
        classes: Iterable[Any],
        version: str | int | None = None,
        max_pending: int = 10_000,
        meter_provider: metrics.MeterProvider | None = None,
        secret: str | bytes | None = None,
    ) -> None:
        self._attrs = model_attributes(model_name, version)
        labels = list(dict.fromkeys(str(c) for c in classes))
        if not 1 <= len(labels) <= MAX_CLASSES:
            raise ValueError(f"classes has {len(labels)} distinct labels: expected 1 to {MAX_CLASSES}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 0:
            raise ValueError(f"max_pending={max_pending!r} is invalid: expected a whole number >= 0")
        if secret is not None and (not isinstance(secret, (str, bytes)) or not secret):
            raise ValueError("secret is invalid: expected a non-empty string or bytes, or None")
        rendered = [render_label(label) for label in labels]
        if len(set(rendered)) != len(rendered) or OTHER in labels:
            raise ValueError(f"classes are invalid: two render alike, or one is {OTHER!r}")
        self._index = {label: i for i, label in enumerate(labels)}
        self._rendered = [*rendered, OTHER]  # index len(labels): any other label
        self._confusion = len(labels) <= MAX_CONFUSION_CLASSES
        self._predicted_attrs = [{**self._attrs, sc.ML_PREDICTION_LABEL: r} for r in self._rendered]
        self._tallies = [Tally() for _ in self._rendered]
        self._pending: OrderedDict[Hashable, int] = OrderedDict()
        self._used: OrderedDict[int, None] = OrderedDict()
        self._max_pending = max_pending
        self._lock = threading.Lock()
        # The key depends on the model and its classes: a token of another model, or of a changed class list, fails.
        identity = "\0".join([model_name, str(version), *labels]).encode("utf-8", "surrogatepass")
        key = secret.encode() if isinstance(secret, str) else secret or _PUBLIC_KEY
        self._key = hmac.digest(key, identity, "sha256")
        full = _admitted(meter_provider, (tuple(sorted(self._attrs.items())), tuple(rendered)))
        self._recorded = full is None
        if full is not None:
            if not _warned:
                _warned.append(True)
                _LOG.warning(
                    "otel_ml: the quality of model %r (version %s, %d classes) is not recorded: this process "
                    "already records %d models (a model is a name, version and class list; at most %d per process, "
                    "MAX_MODELS, so that every series fits the limit otel_ml gives the SDK). Its predictions, "
                    "outcomes and false positives are dropped; its feedback tokens still work. Further models past "
                    "the limit are dropped without another warning; docs/serving.md, 'Model quality'.",
                    self._attrs[sc.ML_MODEL_NAME],
                    self._attrs.get(sc.ML_MODEL_VERSION, "none"),
                    len(labels),
                    full,
                    MAX_MODELS,
                )
            return
        m = meter(meter_provider)

        def create(callback: Callback) -> None:
            m.create_observable_counter(
                sc.METRIC_MODEL_PREDICTIONS,
                callbacks=[callback],
                unit=sc.UNIT_PREDICTION,
                description="Predictions served, by predicted class.",
            )

        live_set(meter_provider, sc.METRIC_MODEL_PREDICTIONS, create).add(self)
        self._outcomes = m.create_counter(
            sc.METRIC_MODEL_OUTCOMES,
            unit=sc.UNIT_OUTCOME,
            description="Predictions whose true class arrived, by true and predicted class and whether it was right.",
        )
        self._false_positives = m.create_counter(
            sc.METRIC_MODEL_FALSE_POSITIVES,
            unit=sc.UNIT_OUTCOME,
            description="Wrong predictions whose true class arrived, by the class wrongly predicted.",
        )
        self._outcome_attrs: dict[tuple[int, int], dict[str, Any]] = {}
        for truth in range(len(self._rendered)):  # every series at 0 now: increase() sees the first outcome
            self._false_positives.add(0, self._predicted_attrs[truth])
            guesses = range(len(self._rendered)) if self._confusion else (truth, len(labels))
            for guess in guesses:
                self._outcomes.add(0, self._outcome(truth, guess))

    def _outcome(self, truth: int, guess: int) -> dict[str, Any]:
        """The attributes of one outcome; beyond the confusion limit a wrong one does not name its guess."""
        right = truth == guess != len(self._index)  # an undeclared prediction is never right
        if not self._confusion and not right:
            guess = -1
        key = (truth, guess)
        attrs = self._outcome_attrs.get(key)
        if attrs is None:
            attrs = {**self._attrs, sc.ML_TRUTH_LABEL: self._rendered[truth], sc.ML_PREDICTION_CORRECT: right}
            if guess >= 0:
                attrs[sc.ML_PREDICTION_LABEL] = self._rendered[guess]
            self._outcome_attrs[key] = attrs
        return attrs

    def label(self, value: Any) -> str:
        """The label value ``value`` is counted under: its rendering if declared, else ``_OTHER``."""
        return self._rendered[self._index.get(str(value), -1)]

    def predicted(self, label: Any, request_id: Hashable | None = None) -> str:
        """Count one prediction; with ``request_id``, remember it for :meth:`observed`.

        Returns:
            The prediction's feedback token (URL-safe, 32 characters): hand it to the
            client with the answer, and to :meth:`observed` with the truth.
        """
        index = self._index.get(str(label), len(self._index))
        self._tallies[index].bump()
        if request_id is not None and self._max_pending:
            with self._lock:
                self._pending[request_id] = index
                self._pending.move_to_end(request_id)
                while len(self._pending) > self._max_pending:
                    self._pending.popitem(last=False)
        payload = _TOKEN.pack(_TOKEN_VERSION, index, _nonce())
        mac = hmac.digest(self._key, payload, "sha256")[:_MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).decode("ascii")

    def observe(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Predictions so far per label (read at collection), every declared one from 0."""
        for tally, attrs in zip(self._tallies, self._predicted_attrs, strict=True):
            yield tally.value(), attrs

    def observed(
        self, truth: Any, *, token: str | None = None, request_id: Hashable | None = None, predicted: Any = None
    ) -> bool:
        """Count the outcome of one prediction: found by its ``token``, its ``request_id``, or given as ``predicted``.

        Returns:
            True when counted; False for a token that is malformed, of another model or
            secret, or used already (among the last ``max_pending``), and for a request id
            that is unknown (never predicted, already observed, or forgotten as the oldest
            of more than ``max_pending``).

        Raises:
            ValueError: none of ``token``, ``request_id`` and ``predicted`` given.
        """
        if token is not None:
            found = self._verify(token)
            if found is None:
                return False
            guess = found
        elif request_id is not None:
            with self._lock:
                pending = self._pending.pop(request_id, None)
            if pending is None:
                return False
            guess = pending
        elif predicted is not None:
            guess = self._index.get(str(predicted), len(self._index))
        else:
            raise ValueError("observed() needs token= (from predicted()), request_id= or predicted=")
        if not self._recorded:
            return True
        actual = self._index.get(str(truth), len(self._index))
        attrs = self._outcome(actual, guess)
        self._outcomes.add(1, attrs)
        if not attrs[sc.ML_PREDICTION_CORRECT]:
            self._false_positives.add(1, self._predicted_attrs[guess])
        return True

    def _verify(self, token: str) -> int | None:
        """The predicted class index of a genuine, unused token, marked used; None otherwise."""
        if not isinstance(token, str) or len(token) != _TOKEN_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        payload, mac = raw[: _TOKEN.size], raw[_TOKEN.size :]
        if not hmac.compare_digest(mac, hmac.digest(self._key, payload, "sha256")[:_MAC_BYTES]):
            return None
        version, index, nonce = _TOKEN.unpack(payload)
        if version != _TOKEN_VERSION or index >= len(self._rendered):
            return None
        with self._lock:
            if nonce in self._used:
                return None
            if self._max_pending:
                self._used[nonce] = None
                while len(self._used) > self._max_pending:
                    self._used.popitem(last=False)
        return index


def _nonce() -> int:
    """A fresh 64-bit nonce from the OS for each token: never a counter, which forked workers (``--preload``) would
    share, so that one worker's genuine token is refused as a replay of another's."""
    return int.from_bytes(os.urandom(8), "big")
