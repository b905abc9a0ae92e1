"""Two ImageNet-sized models on otel_ml's default SDK set-up: the program tests/test_quality_cardinality.py scrapes.

``python tests/_quality_program.py WORKDIR one``: one process declares both
models (``classes=range(1000)``), serves the predictions of :func:`plan` and
their feedback through feedback tokens, prints ``READY`` and serves its
embedded ``/metrics`` until ``WORKDIR/stop`` exists.

``... workers``: under multiprocess mode (``OTEL_ML_MULTIPROCESS_DIR`` set by
the test), two forked workers each declare both models and serve half of the
plan (as the workers of a pre-fork server do), then exit; the deployment's
endpoint process serves their sum. Extra arguments ``N``: ``N`` models
instead of 2 (the third past a lowered bound, for the warning).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

CLASSES = 1000
KEPT: list[Any] = []  # a service keeps its models (a module global of its app): their predictions are read then


def model_name(m: int) -> str:
    return f"imagenet_{'abcdefghijklmnopqrstuvwxyz'[m]}"


def plan(m: int) -> list[tuple[int, int]]:
    """Model ``m``'s (predicted, true) pairs: right for k % 3 == m, wrong (true k + 1) for k % 7 == m."""
    pairs = [(k, k) for k in range(CLASSES) if k % 3 == m]
    pairs += [(k, (k + 1) % CLASSES) for k in range(CLASSES) if k % 7 == m]
    return pairs


def serve(models: int, worker: int | None) -> list[Any]:
    """Declare the models and serve their plans (``worker``'s half, or all of it); the models, kept by the caller."""
    from otel_ml.serving import ModelQuality

    qualities = [ModelQuality(model_name(m), classes=range(CLASSES)) for m in range(models)]
    for m, quality in enumerate(qualities):
        for predicted, truth in plan(m):
            if worker is None or predicted % 2 == worker:
                assert quality.observed(truth, token=quality.predicted(predicted))
    return qualities


def main() -> None:
    logging.basicConfig(stream=sys.stderr, format="LOG %(name)s %(levelname)s %(message)s", level=logging.WARNING)
    workdir, mode = Path(sys.argv[1]), sys.argv[2]
    models = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    import otel_ml

    otel_ml.instrument()
    if mode == "one":
        KEPT.extend(serve(models, None))
    else:
        for worker in (0, 1):
            child = os.fork()
            if child == 0:  # pragma: no cover - the worker
                code = 1
                try:
                    KEPT.extend(serve(models, worker))
                    code = 0
                except BaseException:  # noqa: BLE001 - the worker reports and exits 1
                    traceback.print_exc()
                # A worker's normal exit: the at-exit shutdown publishes its last points.
                sys.exit(code)
            _, status = os.waitpid(child, 0)
            assert status == 0, status
    print("READY", flush=True)
    while not (workdir / "stop").exists():
        time.sleep(0.1)


if __name__ == "__main__":
    main()
