#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs it.
#   bash scripts/test.sh [extra pytest arguments]
# TensorFlow and Paddle tests run in separate pytest processes: importing
# paddle after tensorflow crashes the interpreter.
source "$(dirname "$0")/_env.sh"

# Prometheus 2.42 with promtool, Alertmanager 0.25 with amtool (Debian's
# packages, binaries prometheus, promtool, prometheus-alertmanager, amtool);
# the tests start their own on free ports.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
   || ! command -v prometheus-alertmanager >/dev/null || ! command -v amtool >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "==> apt-get install prometheus prometheus-alertmanager"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager >/dev/null
fi
# Debian starts the packaged services; the tests never use them, so stop them to free :9090 and :9093.
for service in prometheus prometheus-alertmanager; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
  fi
done

pip_install -e ".[test,$TF_EXTRA,paddle,flask,gpu]"

# The bundled collector (cached in collector/build/ between runs).
if [ -x collector/build.sh ] && command -v go >/dev/null; then
  bash collector/build.sh
fi

run_pytest() {
  set +e
  .venv/bin/python -m pytest "$@"
  local rc=$?
  set -e
  # Exit code 5 means "no tests collected" (e.g. a filter matched nothing): not a failure here.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
}
echo "==> ruff, ruff format, mypy"
.venv/bin/ruff check otel_ml tests examples bench
.venv/bin/ruff format --check otel_ml tests examples bench
.venv/bin/mypy otel_ml
echo "==> pytest (core, Keras, tf.summary, exporter, GPU, collector)"
run_pytest --doctest-modules otel_ml  # the examples in the package's docstrings
run_pytest --ignore=tests/paddle "$@"
if [ -d tests/paddle ]; then
  echo "==> pytest (Paddle, separate process)"
  run_pytest tests/paddle "$@"
fi
