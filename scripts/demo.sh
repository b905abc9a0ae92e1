#!/usr/bin/env bash
# The demo: a real Keras training with its live page on http://127.0.0.1:9464/
# (loss, step times, the slow step and its trace, anomalies), /metrics (with
# exemplars) and /slow-steps on the same port, while it trains and for two
# minutes after. Nothing else to install: open the printed address.
#   bash scripts/demo.sh [extra examples/keras_train.py arguments]
host="${OTEL_EXPORTER_PROMETHEUS_HOST:-127.0.0.1}"
[[ "$host" == *:* ]] && host="[$host]"
echo "==> the live page: http://${host}:${OTEL_EXPORTER_PROMETHEUS_PORT:-9464}/ (open it in a browser; it fills in as the training runs)"
source "$(dirname "$0")/_env.sh"
pip_install -e ".[$TF_EXTRA]"
# A sample a second (the default is 5 s): a short demo draws enough points.
export OTEL_ML_PAGE_INTERVAL="${OTEL_ML_PAGE_INTERVAL:-1}"
echo "==> while it runs: curl -H 'Accept: application/openmetrics-text' http://${host}:${OTEL_EXPORTER_PROMETHEUS_PORT:-9464}/metrics"
exec .venv/bin/python examples/keras_train.py --epochs 30 --hold 120 "$@"
