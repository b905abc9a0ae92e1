"""The registry: what otel_ml knows about each predictor and each model, kept beside them rather than on them.

Paddle's predictor is a pybind11 class whose instances take no attributes, so
per-predictor facts live in a weak-keyed map: an entry goes away with its
predictor. The map is filled by the ``create_predictor`` and ``clone`` wrappers
from the ``Config``; a predictor that arrives without facts (a
``PredictorPool`` member) gets them on its first ``run()`` from what
:mod:`otel_ml.paddle._identity` knows of it, else from the options.

Per-model state (attribute dicts built once, the runs in flight) is shared by
every predictor of one model and bounded in number, so that a service that
loads models by user-supplied path cannot grow the label set without limit.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Final

from opentelemetry.metrics import CallbackOptions, Observation

from otel_ml._core import semconv as sc
from otel_ml._core.slow import SlowDetector
from otel_ml.paddle._identity import UNKNOWN_MODEL, Identity, identity_of_config, known, remember
from otel_ml.paddle._options import PaddleOptions

_LOG = logging.getLogger(__name__)
_ref = weakref.ref

OTHER: Final = "_OTHER"
MAX_MODELS: Final = 64
"""Distinct (name, version) pairs per process; more are reported as ``_OTHER``."""
MAX_VERSIONS: Final = 8
"""Distinct versions per model name; more are reported as version ``_OTHER``."""
MAX_ERROR_TYPES: Final = 16
MAX_SLOW_SPANS_PER_SECOND: Final = 10
"""Per model: on a busy host many runs can cross 3x the median; the histogram still counts them all."""


class ModelState:
    """Attribute dicts, runs in flight and measurements not yet handed to the SDK, of one model and version.

    Runs in flight are two monotonic counters (``next()`` on an
    ``itertools.count`` is one atomic C call under the GIL) rather than an int
    behind a lock: a lock taken twice per run cost more than the rest of the
    hook. ``pending`` and ``pending_batches`` hold fast-run durations and batch
    sizes until the next flush: ``list.append`` is atomic under the GIL, and
    only the flusher, one at a time, removes from the front.
    """

    __slots__ = (
        "_errors",
        "_slow_count",
        "_slow_second",
        "attrs",
        "batch_attrs",
        "finished",
        "name",
        "pending",
        "pending_batches",
        "started",
        "version",
        "warm_attrs",
    )

    def __init__(self, name: str, version: str | None = None) -> None:
        self.name = name
        self.version = version
        self.batch_attrs: dict[str, Any] = {sc.ML_FRAMEWORK: sc.FRAMEWORK_PADDLE, sc.ML_MODEL_NAME: name}
        if version is not None:
            self.batch_attrs[sc.ML_MODEL_VERSION] = version
        self.attrs = {**self.batch_attrs, sc.ML_INFERENCE_WARMUP: False}
        self.warm_attrs = {**self.batch_attrs, sc.ML_INFERENCE_WARMUP: True}
        self._errors: dict[tuple[type, bool], dict[str, Any]] = {}
        self.started = itertools.count()
        self.finished = itertools.count()
        # Durations of warm, successful runs outside any span that got no span of their own.
        self.pending: list[float] = []
        self.pending_batches: list[int] = []
        self._slow_second = -1
        self._slow_count = 0

    def allow_slow_span(self, now_ns: int) -> bool:
        """At most ``MAX_SLOW_SPANS_PER_SECOND`` after-the-fact spans per wall-clock second.

        Unlocked on purpose: a race can let one span too many through, never block a run.
        """
        second = now_ns // 1_000_000_000
        if second != self._slow_second:
            self._slow_second = second
            self._slow_count = 0
        if self._slow_count >= MAX_SLOW_SPANS_PER_SECOND:
            return False
        self._slow_count += 1
        return True

    def inflight(self) -> int:
        """Runs started and not yet finished; exact whenever no run starts or ends during the read.

        Reading ``finished`` before ``started`` can only over-count a run that
        starts meanwhile, never go negative. Each read advances both counters
        by one, which leaves their difference as it was.
        """
        finished = next(self.finished)
        return next(self.started) - finished

    def error_attrs(self, exc_type: type, warm: bool) -> dict[str, Any]:
        """Attributes of a run that raised ``exc_type``; at most ``MAX_ERROR_TYPES`` distinct names."""
        key = (exc_type, warm)
        attrs = self._errors.get(key)
        if attrs is None:
            name = exc_type.__qualname__
            if len({k[0] for k in self._errors}) >= MAX_ERROR_TYPES:
                name = OTHER
            attrs = {**(self.warm_attrs if warm else self.attrs), sc.ERROR_TYPE: name}
            self._errors[key] = attrs
        return attrs


def series_limits() -> dict[str, int]:
    """The most ``ml.inference.duration`` series one registry makes: above the SDK's default limit of 2,000.

    ``MAX_MODELS`` models and ``_OTHER``, each cold and warm, each without an
    error or with one of ``MAX_ERROR_TYPES`` names or ``_OTHER``: 65 x 2 x 18
    = 2,340. The providers otel_ml builds give the histogram this limit
    (:mod:`otel_ml.distro._views`), so no error type of a busy model folds into
    ``otel.metric.overflow``; the other Paddle instruments stay far below 2,000.
    """
    return {sc.METRIC_INFERENCE_DURATION: (MAX_MODELS + 1) * 2 * (MAX_ERROR_TYPES + 2)}


UNSET: Final = -1
"""``PredictorFacts.batch_input`` before the first run looked at the predictor's inputs."""
_MAX_PROGRAM_BYTES: Final = 64 << 20


def declared_input_shapes(config: Any) -> dict[str, list[int]] | None:
    """The shapes a PIR program (``*.json``) declares for its inputs, by name; None when unreadable.

    Read once per model at load: the ``data`` ops of the program carry each
    input's name and shape (``-1`` for a dimension given at run time). A
    legacy ``*.pdmodel`` or a model from memory gives None.
    """
    try:
        path = config.prog_file()
        if not path or not str(path).endswith(".json") or os.path.getsize(path) > _MAX_PROGRAM_BYTES:
            return None
        with open(path, "rb") as f:
            program = json.load(f)
        shapes: dict[str, list[int]] = {}
        stack: list[Any] = [program]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if str(node.get("#", "")).endswith(".data"):
                    found = {a.get("N"): a.get("AT", {}).get("D") for a in node.get("A", []) if isinstance(a, dict)}
                    if isinstance(found.get("name"), str) and isinstance(found.get("shape"), list):
                        shapes[found["name"]] = [int(d) for d in found["shape"]]
                    continue
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        return shapes
    except Exception:  # noqa: BLE001 - a program we cannot read declares nothing we know
        return None


def batch_input_of(predictor: Any, config: Any) -> int | None:
    """The position of the input whose declared leading dimension is -1; the only input; else None.

    A model whose first input is not batch-major (``(scale[1], x[N, 16])``)
    must not report the first input's length as its batch size: with several
    inputs the batch input is the first that declares a variable leading
    dimension in the program, and none is reported when the program says
    nothing (a legacy ``.pdmodel``) or no input declares one.
    """
    if predictor is None:
        return UNSET
    try:
        names = list(predictor.get_input_names())
    except Exception:  # noqa: BLE001
        return None
    if len(names) <= 1:
        return 0 if names else None
    shapes = declared_input_shapes(config)
    if not shapes:
        return None
    for index, name in enumerate(names):
        shape = shapes.get(name)
        if shape and shape[0] == -1:
            return index
    return None


def engine_flags(config: Any) -> dict[str, bool]:
    """Whether the config enabled GPU, TensorRT and MKLDNN (oneDNN); a flag it cannot tell is left out."""
    flags: dict[str, bool] = {}
    for attr, getter in (
        (sc.ML_PADDLE_GPU, "use_gpu"),
        (sc.ML_PADDLE_TENSORRT, "tensorrt_engine_enabled"),
        (sc.ML_PADDLE_MKLDNN, "mkldnn_enabled"),
    ):
        try:
            flags[attr] = bool(getattr(config, getter)())
        except Exception:  # noqa: BLE001 - older or newer Config without this getter
            continue
    return flags


class PredictorFacts:
    """One predictor's model, engine flags, warm-up count and slow-run baseline."""

    __slots__ = (
        "batch_input",
        "detector",
        "engine",
        "handle",
        "identity",
        "input_shape",
        "model",
        "runs",
        "span_attrs",
    )

    def __init__(self, model: ModelState, identity: Identity, options: PaddleOptions) -> None:
        self.model = model
        self.identity = identity
        self.engine = identity.engine
        self.runs = identity.runs
        # Which input's leading dimension is the batch size: its position among the inputs, None when
        # unknown (a model with several inputs and no declared -1 leading dimension), UNSET until the
        # first run looks (a predictor that no wrapper saw being made).
        self.batch_input: int | None = identity.batch_input
        self.handle: Any = None  # the batch input's handle, once looked up
        # Its bound ``shape`` (a live read: later reshapes show), so that a run does no attribute lookup on it.
        self.input_shape: Callable[[], list[int]] | None = None
        self.detector = SlowDetector(options.slow_run_seconds, options.slow_run_factor)
        self.span_attrs: dict[str, Any] = {**model.batch_attrs, **identity.engine}


class Registry:
    """The weak map predictor -> facts, and the bounded set of models.

    The map is a plain dict keyed by ``id(predictor)`` and holding a weak
    reference beside the facts, so that :meth:`facts`, called on every run, is
    one frame, one dict lookup on an int and one identity check (a
    ``WeakKeyDictionary`` makes, hashes and compares a new weak reference per
    lookup). The reference's callback removes the entry when the predictor
    dies, before its address can be reused.
    """

    def __init__(self, options: PaddleOptions) -> None:
        self.options = options
        self._facts: dict[int, tuple[weakref.ref[Any], PredictorFacts]] = {}
        self._models: dict[tuple[str, str | None], ModelState] = {}
        self._versions: dict[str, int] = {}
        self._pools: weakref.WeakKeyDictionary[Any, list[PredictorFacts]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def model(self, name: str, version: str | None = None) -> ModelState:
        """The state of ``name`` at ``version``; at most ``MAX_MODELS`` pairs and ``MAX_VERSIONS`` per name."""
        state = self._models.get((name, version))
        if state is None:
            with self._lock:
                state = self._models.get((name, version)) or self._new_model(name, version)
        return state

    def _new_model(self, name: str, version: str | None) -> ModelState:
        if version is not None and (name, version) not in self._models and self._versions.get(name, 0) >= MAX_VERSIONS:
            _LOG.warning("otel_ml: more than %d versions of Paddle model %r; reported as %r", MAX_VERSIONS, name, OTHER)
            version = OTHER
        if (name, version) not in self._models and len(self._models) >= MAX_MODELS:
            _LOG.warning("otel_ml: more than %d Paddle models; model %r is reported as %r", MAX_MODELS, name, OTHER)
            name, version = OTHER, None
        state = self._models.get((name, version))
        if state is None:
            state = ModelState(name, version)
            self._models[(name, version)] = state
            if version is not None:
                self._versions[name] = self._versions.get(name, 0) + 1
        return state

    def identity(self, config: Any) -> Identity:
        """What ``config`` says: an explicit name, else the options, else the model's path."""
        explicit = known(config)
        if explicit is not None:
            return Identity(explicit.name, explicit.version, engine_flags(config))
        name, version = identity_of_config(config)
        if self.options.model_name:
            name = self.options.model_name
        if self.options.model_version:
            version = self.options.model_version
        return Identity(name, version, engine_flags(config))

    def register(self, predictor: Any, config: Any, identity: Identity | None = None) -> PredictorFacts:
        """Record what ``config`` says about ``predictor`` (called by the ``create_predictor`` wrapper)."""
        if identity is None:
            identity = self.identity(config)
            identity.batch_input = batch_input_of(predictor, config)
        return self._attach(predictor, identity)

    def derive(self, clone: Any, parent: Any) -> PredictorFacts:
        """Give a ``clone()`` its parent's model and flags, with its own warm-up and baseline."""
        base = self.facts(parent).identity
        identity = Identity(base.name, base.version, base.engine, fallback=base.fallback)
        identity.batch_input = base.batch_input
        return self._attach(clone, identity)

    def pool_created(self, pool: Any, config: Any, size: int) -> ModelState:
        """Name the members of a ``PredictorPool`` from its ``Config``: each is tracked by its index.

        A member is a new Python object at every ``retrieve()`` (the pool keeps the C++ predictor, not
        the wrapper), so each index keeps one :class:`PredictorFacts`, handed to every wrapper of it:
        its warm-up count and slow-run baseline carry over.
        """
        identity = self.identity(config)
        members: list[PredictorFacts] = []
        for index in range(size):
            member = Identity(identity.name, identity.version, identity.engine)
            predictor = pool.retrieve(index) if index == 0 else None
            member.batch_input = batch_input_of(predictor, config) if index == 0 else members[0].batch_input
            members.append(PredictorFacts(self.model(member.name, member.version), member, self.options))
        self._pools[pool] = members
        return members[0].model if members else self.model(identity.name, identity.version)

    def retrieved(self, pool: Any, index: Any, predictor: Any) -> None:
        """A ``retrieve()`` result: the member's facts, kept across its wrappers."""
        members = self._pools.get(pool)
        if members is None or not isinstance(index, int) or not 0 <= index < len(members):
            return
        facts = members[index]
        remember(predictor, facts.identity)
        key = id(predictor)
        self._facts[key] = (_ref(predictor, lambda gone: self._drop(key, gone)), facts)

    def facts(self, predictor: Any) -> PredictorFacts:
        """``predictor``'s facts, made on its first run when no wrapper recorded them (a pool member)."""
        entry = self._facts.get(id(predictor))
        if entry is not None and entry[0]() is predictor:
            return entry[1]
        identity = known(predictor)
        if identity is None or identity.fallback:
            runs = identity.runs if identity is not None else 0
            name = self.options.model_name or UNKNOWN_MODEL
            identity = Identity(name, self.options.model_version, {}, runs, fallback=True)
        return self._attach(predictor, identity)

    def forget(self, predictor: Any) -> None:
        """Drop ``predictor``'s facts (it was renamed): its next run starts from its identity, runs kept."""
        entry = self._facts.get(id(predictor))
        if entry is None or entry[0]() is not predictor:  # never tracked (or takes no weak reference)
            return
        facts = self._facts.pop(id(predictor), entry)[1]
        identity = known(predictor)
        if facts is not None and identity is not None:
            identity.runs = facts.runs

    def save(self) -> None:
        """Keep each live predictor's run count with its identity (at uninstrument): no second warm-up."""
        for _, facts in list(self._facts.values()):
            facts.identity.runs = facts.runs

    def _attach(self, predictor: Any, identity: Identity) -> PredictorFacts:
        remember(predictor, identity)
        facts = PredictorFacts(self.model(identity.name, identity.version), identity, self.options)
        key = id(predictor)
        self._facts[key] = (_ref(predictor, lambda gone: self._drop(key, gone)), facts)
        return facts

    def _drop(self, key: int, gone: weakref.ref[Any]) -> None:
        """A predictor died: its entry goes, unless a newer predictor at the same address replaced it."""
        entry = self._facts.get(key)
        if entry is not None and entry[0] is gone:
            self._facts.pop(key, None)

    def observe_active(self, options: CallbackOptions) -> Iterator[Observation]:
        for state in self.models():
            yield Observation(state.inflight(), state.batch_attrs)

    def models(self) -> list[ModelState]:
        """A snapshot of the models (``list()`` of a dict view is one C call: safe beside inserts)."""
        return list(self._models.values())
