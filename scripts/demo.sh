#!/usr/bin/env bash
# The demo: a real Keras training serving /metrics (with exemplars) and
# /slow-steps on http://127.0.0.1:9464 while it trains, and for 30 s after.
#   bash scripts/demo.sh [extra examples/keras_train.py arguments]
source "$(dirname "$0")/_env.sh"
pip_install -e ".[$TF_EXTRA]"
echo "==> while it runs: curl -H 'Accept: application/openmetrics-text' http://127.0.0.1:9464/metrics"
exec .venv/bin/python examples/keras_train.py --epochs 5 --hold 30 "$@"
