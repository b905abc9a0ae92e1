"""``run(inputs=[...])`` by keyword: the same result as positionally, and the batch size of the inputs passed."""

from __future__ import annotations

import numpy as np
import paddle

from otel_ml._core import semconv as sc
from otel_ml.paddle import PaddleInstrumentor
from tests.paddle._helpers import new_predictor, run_list, run_zero_copy

MODEL = "iris_mlp"


def test_inputs_by_keyword_count_their_own_batch(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    telemetry.instrument(PaddleInstrumentor, slow_run_seconds=10.0, inference_warmup_runs=0)
    predictor = new_predictor(model_prefix)
    run_zero_copy(predictor, 2)  # the input handle now holds a batch of 2
    outputs = predictor.run(inputs=[paddle.to_tensor(np.full((5, 4), 0.5, dtype="float32"))])
    expected = run_list(predictor, 5)
    assert np.array_equal(outputs[0].numpy(), expected[0].numpy())
    [batch] = telemetry.model_points(sc.METRIC_INFERENCE_BATCH_SIZE, MODEL)
    assert (batch.count, batch.sum) == (3, 2 + 5 + 5)
