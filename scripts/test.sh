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
# Keras 2 (the tf_keras extra). Its wheel requires the full `tensorflow` wheel,
# the same code as tensorflow-cpu: beside tensorflow-cpu it goes in without dependencies.
if [ "$TF_EXTRA" = tensorflow-cpu ]; then pip_install --no-deps tf-keras; else pip_install -e ".[tf_keras]"; fi

# The bundled collector (cached in collector/build/ between runs).
if [ -x collector/build.sh ] && command -v go >/dev/null; then
  bash collector/build.sh
fi

run_pytest() {  # [--python PATH] pytest arguments
  local python=.venv/bin/python
  if [ "${1:-}" = --python ]; then python=$2; shift 2; fi
  set +e
  "$python" -m pytest "$@"
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
# The oldest supported TensorFlow + Keras pair (requirements/oldest.txt), in a
# second virtualenv made once and reused while that file is unchanged: a move
# of a private Keras module that otel_ml patches fails a test, not a user.
if [ ! -x .venv-oldest/bin/python ] || ! cmp -s requirements/oldest.txt .venv-oldest/installed.txt; then
  echo "==> creating .venv-oldest (requirements/oldest.txt)"
  rm -rf .venv-oldest
  "$PY" -m venv .venv-oldest
  .venv-oldest/bin/pip install -q --disable-pip-version-check -c requirements/oldest.txt \
    "$TF_EXTRA" keras pytest opentelemetry-test-utils -e .
  .venv-oldest/bin/pip install -q --disable-pip-version-check --no-deps -c requirements/oldest.txt tf-keras
  cp requirements/oldest.txt .venv-oldest/installed.txt
fi
echo "==> pytest (oldest supported pair: $(.venv-oldest/bin/python -c 'import importlib.metadata as m; print(*(d + " " + m.version(d) for d in ("'"$TF_EXTRA"'", "keras", "tf-keras")), sep=", ")'))"
run_pytest --python .venv-oldest/bin/python -p no:cacheprovider tests/test_keras_counts.py tests/test_tf_keras.py -m "not slow" \
  tests/test_keras_safety.py::test_uninstrument_restores_the_exact_originals "$@"
if [ -d tests/paddle ]; then
  echo "==> pytest (Paddle, separate process)"
  run_pytest tests/paddle "$@"
fi
