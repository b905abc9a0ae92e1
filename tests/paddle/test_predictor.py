"""Exact counts, error attribution, spans and undo, with a real Paddle predictor."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import paddle.inference as pi
import pytest
from opentelemetry import trace

import otel_ml
from otel_ml._core import guard as _guard
from otel_ml._core import semconv as sc
from otel_ml.paddle import PaddleInstrumentor
from tests.paddle._helpers import new_predictor, run_list, run_zero_copy

MODEL = "iris_mlp"
BASE = {sc.ML_FRAMEWORK: "paddle", sc.ML_MODEL_NAME: MODEL}
NEVER_SLOW = 10.0  # a fixed threshold no run here reaches: no slow-run spans


def _instrument(telemetry, **options):  # type: ignore[no-untyped-def]
    options.setdefault("slow_run_seconds", NEVER_SLOW)
    telemetry.instrument(PaddleInstrumentor, **options)


def _key(**attrs):  # type: ignore[no-untyped-def]
    return tuple(sorted({**BASE, **attrs}.items()))


def test_both_run_forms_count_exactly(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry)
    predictor = new_predictor(model_prefix)
    plain = run_zero_copy(predictor, 3)
    for _ in range(4):
        assert np.array_equal(run_zero_copy(predictor, 3), plain)
    for _ in range(4):
        outputs = run_list(predictor, 5)
        assert list(outputs[0].shape) == [5, 3]

    durations = telemetry.points_by(sc.METRIC_INFERENCE_DURATION)
    assert set(durations) == {_key(**{sc.ML_INFERENCE_WARMUP: True}), _key(**{sc.ML_INFERENCE_WARMUP: False})}
    assert durations[_key(**{sc.ML_INFERENCE_WARMUP: True})].count == 1
    assert durations[_key(**{sc.ML_INFERENCE_WARMUP: False})].count == 8
    batches = telemetry.points_by(sc.METRIC_INFERENCE_BATCH_SIZE)
    assert list(batches) == [_key()]
    assert batches[_key()].count == 9
    assert batches[_key()].sum == 5 * 3 + 4 * 5
    assert (batches[_key()].min, batches[_key()].max) == (3, 5)
    active = telemetry.points_by(sc.METRIC_INFERENCE_ACTIVE)
    assert active[_key()].value == 0
    assert telemetry.finished() == []  # no active span, nothing slow: metrics only


def test_clone_keeps_model_and_warms_up_on_its_own(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry, inference_warmup_runs=2)
    parent = new_predictor(model_prefix)
    clone = parent.clone()
    assert type(clone) is pi.Predictor
    for predictor in (parent, clone):
        for _ in range(3):
            run_zero_copy(predictor, 2)
    durations = telemetry.points_by(sc.METRIC_INFERENCE_DURATION)
    assert durations[_key(**{sc.ML_INFERENCE_WARMUP: True})].count == 4  # 2 per predictor
    assert durations[_key(**{sc.ML_INFERENCE_WARMUP: False})].count == 2


def test_a_run_that_raises_reaches_the_caller_and_is_counted(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as plain:
        run_list(new_predictor(model_prefix), 5, features=3)
    _instrument(telemetry, inference_warmup_runs=0)
    predictor = new_predictor(model_prefix)
    with pytest.raises(ValueError) as instrumented:
        run_list(predictor, 5, features=3)
    assert type(instrumented.value) is type(plain.value) and str(instrumented.value) == str(plain.value)
    run_list(predictor, 2)

    durations = telemetry.points_by(sc.METRIC_INFERENCE_DURATION)
    error_key = _key(**{sc.ML_INFERENCE_WARMUP: False, sc.ERROR_TYPE: "ValueError"})
    assert set(durations) == {error_key, _key(**{sc.ML_INFERENCE_WARMUP: False})}
    assert durations[error_key].count == 1
    assert durations[_key(**{sc.ML_INFERENCE_WARMUP: False})].count == 1
    # error.type is on the duration only; the batch histogram has served batches only: not the failed run's 5.
    batches = telemetry.points_by(sc.METRIC_INFERENCE_BATCH_SIZE)
    assert list(batches) == [_key()] and batches[_key()].count == 1 and batches[_key()].sum == 2
    assert telemetry.points_by(sc.METRIC_INFERENCE_ACTIVE)[_key()].value == 0


def test_uninstrument_restores_the_originals(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    originals = {name: pi.Predictor.__dict__[name] for name in ("run", "clone")}
    create = pi.create_predictor
    _instrument(telemetry)
    _instrument(telemetry)  # twice: harmless, wrapped once
    assert pi.Predictor.__dict__["run"].__wrapped__ is originals["run"]
    assert pi.create_predictor.__wrapped__ is create
    predictor = new_predictor(model_prefix)
    run_zero_copy(predictor, 1)
    otel_ml.uninstrument()
    for name, original in originals.items():
        assert pi.Predictor.__dict__[name] is original
    assert pi.create_predictor is create
    run_zero_copy(predictor, 1)
    run_list(predictor.clone(), 1)
    assert sum(p.count for p in telemetry.points(sc.METRIC_INFERENCE_DURATION)) == 1
    assert telemetry.points(sc.METRIC_INFERENCE_ACTIVE) == []  # the callback reports nothing once undone


def test_active_span_gets_a_child_run_span_and_the_exemplar(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry, inference_warmup_runs=0)
    predictor = new_predictor(model_prefix)
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        run_zero_copy(predictor, 4)
    [run_span] = telemetry.finished(sc.SPAN_PADDLE_RUN)
    assert run_span.parent is not None and run_span.parent.span_id == request.get_span_context().span_id
    assert run_span.context.trace_id == request.get_span_context().trace_id
    assert dict(run_span.attributes) == {
        **BASE,
        sc.ML_PADDLE_GPU: False,
        sc.ML_PADDLE_TENSORRT: False,
        sc.ML_PADDLE_MKLDNN: pi.Config(model_prefix + ".json", model_prefix + ".pdiparams").mkldnn_enabled(),
        sc.ML_BATCH_SIZE: 4,
    }
    # One collection for both: exemplars are kept per collection interval.
    data = telemetry.reader.get_metrics_data()
    found = {m.name: m.data.data_points for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    [point] = found[sc.METRIC_INFERENCE_DURATION]
    [exemplar] = point.exemplars
    assert (exemplar.trace_id, exemplar.span_id) == (run_span.context.trace_id, run_span.context.span_id)
    # The batch size is recorded outside any span: no exemplar pointing at the request span.
    [batch] = found[sc.METRIC_INFERENCE_BATCH_SIZE]
    assert batch.count == 1 and batch.exemplars == []


def test_slow_run_without_a_span_gets_one_after_the_fact(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry, inference_warmup_runs=1, slow_run_seconds=1e-9)
    predictor = new_predictor(model_prefix)
    run_zero_copy(predictor, 2)  # warm-up: never slow
    assert telemetry.finished() == []
    run_zero_copy(predictor, 2)
    [span] = telemetry.finished(sc.SPAN_PADDLE_RUN)
    assert span.parent is None
    assert span.attributes[sc.ML_SLOW_THRESHOLD] == 1e-9
    assert span.attributes[sc.ML_BATCH_SIZE] == 2
    assert span.end_time - span.start_time == pytest.approx(span.attributes[sc.ML_INFERENCE_RUN_DURATION] * 1e9, abs=1)
    durations = telemetry.points_by(sc.METRIC_INFERENCE_DURATION)
    slow_point = durations[_key(**{sc.ML_INFERENCE_WARMUP: False})]
    [exemplar] = slow_point.exemplars
    assert (exemplar.trace_id, exemplar.span_id) == (span.context.trace_id, span.context.span_id)
    assert durations[_key(**{sc.ML_INFERENCE_WARMUP: True})].exemplars == []  # fast run: no exemplar


def test_many_threads_count_exactly(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry, inference_warmup_runs=0)
    base = new_predictor(model_prefix)
    clones = [base.clone() for _ in range(6)]
    runs_each = 150
    errors: list[BaseException] = []

    def work(predictor) -> None:  # type: ignore[no-untyped-def]
        try:
            for i in range(runs_each):
                run_zero_copy(predictor, 1 + i % 4)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    [point] = telemetry.model_points(sc.METRIC_INFERENCE_DURATION, MODEL)
    assert point.count == 6 * runs_each
    [batch] = telemetry.model_points(sc.METRIC_INFERENCE_BATCH_SIZE, MODEL)
    assert batch.sum == 6 * sum(1 + i % 4 for i in range(runs_each))
    assert telemetry.points_by(sc.METRIC_INFERENCE_ACTIVE)[_key()].value == 0


def test_model_name_from_environment_and_pool_members(telemetry, model_prefix, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_ML_MODEL_NAME", "ocr")
    _instrument(telemetry, inference_warmup_runs=0)
    run_zero_copy(new_predictor(model_prefix), 1)
    config = pi.Config(model_prefix + ".json", model_prefix + ".pdiparams")
    config.disable_glog_info()
    pool = pi.PredictorPool(config, 2)
    run_zero_copy(pool.retrieve(1), 1)  # made by the pool, not create_predictor: named from the option
    [point] = telemetry.points(sc.METRIC_INFERENCE_DURATION)
    assert dict(point.attributes)[sc.ML_MODEL_NAME] == "ocr" and point.count == 2


def test_predictor_made_before_instrumenting_is_counted(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    predictor = new_predictor(model_prefix)
    _instrument(telemetry, inference_warmup_runs=0)
    run_zero_copy(predictor, 1)
    [point] = telemetry.points(sc.METRIC_INFERENCE_DURATION)
    assert dict(point.attributes)[sc.ML_MODEL_NAME] == "unknown" and point.count == 1


def test_otel_ml_instrument_composes_and_validates(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="inference_warmup_runs=-1 is invalid: expected a whole number >= 0"):
        otel_ml.instrument(telemetry.meter_provider, telemetry.tracer_provider, inference_warmup_runs=-1)
    otel_ml.instrument(telemetry.meter_provider, telemetry.tracer_provider, model_name="tiny", inference_warmup_runs=0)
    assert PaddleInstrumentor().is_instrumented_by_opentelemetry
    run_zero_copy(new_predictor(model_prefix), 1)
    [point] = telemetry.points(sc.METRIC_INFERENCE_DURATION)
    assert dict(point.attributes)[sc.ML_MODEL_NAME] == "tiny"


@pytest.mark.internal_errors_expected
def test_our_failure_never_breaks_the_run(telemetry, model_prefix, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry)
    predictor = new_predictor(model_prefix)
    expected = run_zero_copy(predictor, 2)
    hooks = PaddleInstrumentor()._hooks

    def broken(_predictor):  # type: ignore[no-untyped-def]
        raise RuntimeError("bug in otel_ml")

    monkeypatch.setattr(hooks.registry, "facts", broken)
    before = _guard.error_counts().get(("paddle.Predictor.run", RuntimeError), 0)
    assert np.array_equal(run_zero_copy(predictor, 2), expected)
    assert _guard.error_counts()[("paddle.Predictor.run", RuntimeError)] == before + 1
    assert sum(p.count for p in telemetry.points(sc.METRIC_INFERENCE_DURATION)) == 1  # the broken run is not counted


def test_trace_context_untouched(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry)
    predictor = new_predictor(model_prefix)
    run_zero_copy(predictor, 1)
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_slow_run_spans_are_capped_per_second_but_every_run_is_counted(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    from otel_ml.paddle._registry import MAX_SLOW_SPANS_PER_SECOND

    _instrument(telemetry, inference_warmup_runs=0, slow_run_seconds=1e-9)  # every run is slow
    predictor = new_predictor(model_prefix)
    for _ in range(3 * MAX_SLOW_SPANS_PER_SECOND):
        run_zero_copy(predictor, 1)
    assert sum(p.count for p in telemetry.points(sc.METRIC_INFERENCE_DURATION)) == 3 * MAX_SLOW_SPANS_PER_SECOND
    per_second = Counter(span.end_time // 1_000_000_000 for span in telemetry.finished(sc.SPAN_PADDLE_RUN))
    assert max(per_second.values()) == MAX_SLOW_SPANS_PER_SECOND  # 30 runs span at most 2 seconds here
    assert all(n <= MAX_SLOW_SPANS_PER_SECOND for n in per_second.values())


def _two_input_model(directory: str, scale_shape: list[int | None], name: str = "scaled") -> str:
    """A model whose first input is not batch-major: ``(scale[...], x[N, 16])``; returns its path prefix."""
    import paddle
    from paddle.static import InputSpec

    class ScaledLinear(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.fc = paddle.nn.Linear(16, 3)

        def forward(self, scale, x):  # type: ignore[no-untyped-def]
            return self.fc(x) * scale.sum()

    paddle.seed(3)
    net = ScaledLinear()
    net.eval()
    prefix = f"{directory}/{name}"
    specs = [InputSpec(scale_shape, "float32", "scale"), InputSpec([None, 16], "float32", "x")]
    paddle.jit.save(net, prefix, input_spec=specs)
    return prefix


def _run_two(predictor, rows: int, scale_len: int, listed: bool) -> None:  # type: ignore[no-untyped-def]
    import paddle

    scale = np.ones((scale_len,), dtype="float32")
    x = np.full((rows, 16), 0.5, dtype="float32")
    if listed:
        [out] = predictor.run([paddle.to_tensor(scale), paddle.to_tensor(x)])
    else:
        for name, value in zip(predictor.get_input_names(), (scale, x), strict=True):
            handle = predictor.get_input_handle(name)
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(value)
        predictor.run()
        out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    assert out.shape == (rows, 3)


def test_batch_size_comes_from_the_input_that_declares_a_batch_dimension(telemetry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """(scale[1], x[N,16]) with 35 rows is a batch of 35, not 1; unsure (nothing declared) is no batch at all."""
    _instrument(telemetry, inference_warmup_runs=0)
    prefix = _two_input_model(str(tmp_path), [1])
    predictor = new_predictor(prefix)
    _run_two(predictor, 35, 1, listed=False)
    _run_two(predictor, 35, 1, listed=False)
    _run_two(predictor, 7, 1, listed=True)
    clone = predictor.clone()
    _run_two(clone, 9, 1, listed=False)
    [batch] = telemetry.model_points(sc.METRIC_INFERENCE_BATCH_SIZE, "scaled")
    assert (batch.count, batch.sum, batch.min, batch.max) == (4, 35 + 35 + 7 + 9, 7, 35)
    # Both inputs variable in their leading dimension: the first that declares it (here "scale", 5 long).
    both = _two_input_model(str(tmp_path), [None], name="both")
    _run_two(new_predictor(both), 12, 5, listed=False)
    # A predictor made before instrumenting (no program read): several inputs, nothing known, no batch size.
    PaddleInstrumentor().uninstrument()
    unseen = new_predictor(prefix)
    _instrument(telemetry, inference_warmup_runs=0, model_name="unseen")
    _run_two(unseen, 35, 1, listed=False)
    points = telemetry.points(sc.METRIC_INFERENCE_BATCH_SIZE)
    batches = {p.attributes[sc.ML_MODEL_NAME]: (p.count, p.sum) for p in points}
    assert batches == {"scaled": (4, 86), "both": (1, 5)}
    runs = {p.attributes[sc.ML_MODEL_NAME]: p.count for p in telemetry.points(sc.METRIC_INFERENCE_DURATION)}
    assert runs == {"scaled": 4, "both": 1, "unseen": 1}  # runs are counted whatever their batch


def test_a_failed_run_neither_counts_its_batch_nor_uses_up_the_warm_up(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry, inference_warmup_runs=1)
    predictor = new_predictor(model_prefix)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape([6, 5])  # 5 features where the model takes 4: run() raises
    handle.copy_from_cpu(np.zeros((6, 5), dtype="float32"))
    with pytest.raises(Exception) as caught:
        predictor.run()
    run_zero_copy(predictor, 2)  # the first run that works: still the warm-up
    run_zero_copy(predictor, 3)
    durations = telemetry.points_by(sc.METRIC_INFERENCE_DURATION)
    failed = _key(**{sc.ML_INFERENCE_WARMUP: True, sc.ERROR_TYPE: type(caught.value).__qualname__})
    assert {k: p.count for k, p in durations.items()} == {
        failed: 1,
        _key(**{sc.ML_INFERENCE_WARMUP: True}): 1,
        _key(**{sc.ML_INFERENCE_WARMUP: False}): 1,
    }
    [batch] = telemetry.points(sc.METRIC_INFERENCE_BATCH_SIZE)
    assert (batch.count, batch.sum) == (2, 5)  # 2 + 3: the failed run's 6 rows are not a served batch


def test_pool_members_are_named_from_set_model_and_keep_their_warm_up(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    """An OCR pipeline: a detector pool and a recogniser pool of one model file, two series, two loads."""
    from otel_ml.paddle import set_model

    _instrument(telemetry, inference_warmup_runs=1)
    pools = {}
    for name in ("ocr_det", "ocr_rec"):
        config = pi.Config(model_prefix + ".json", model_prefix + ".pdiparams")
        config.disable_glog_info()
        set_model(config, name, version=2)
        pools[name] = pi.PredictorPool(config, 2)
    for _ in range(3):  # a fresh Python object per retrieve(): the member's warm-up is not repeated
        run_zero_copy(pools["ocr_det"].retrieve(0), 2)
    run_zero_copy(pools["ocr_det"].retrieve(1), 1)
    run_zero_copy(pools["ocr_rec"].retrieve(1), 4)
    keys = (sc.ML_MODEL_NAME, sc.ML_MODEL_VERSION, sc.ML_INFERENCE_WARMUP)
    runs = {tuple(p.attributes[k] for k in keys): p.count for p in telemetry.points(sc.METRIC_INFERENCE_DURATION)}
    assert runs == {("ocr_det", "2", True): 2, ("ocr_det", "2", False): 2, ("ocr_rec", "2", True): 1}
    loads = {(p.attributes[sc.ML_MODEL_NAME], p.count) for p in telemetry.points(sc.METRIC_MODEL_LOAD_DURATION)}
    assert loads == {("ocr_det", 1), ("ocr_rec", 1)}
    assert all(p.sum > 0 for p in telemetry.points(sc.METRIC_MODEL_LOAD_DURATION))
    batches = {p.attributes[sc.ML_MODEL_NAME]: p.sum for p in telemetry.points(sc.METRIC_INFERENCE_BATCH_SIZE)}
    assert batches == {"ocr_det": 2 * 3 + 1, "ocr_rec": 4}
    PaddleInstrumentor().uninstrument()
    assert not hasattr(pi.PredictorPool.__init__, "__wrapped__")
    assert not hasattr(pi.PredictorPool.retrieve, "__wrapped__")
