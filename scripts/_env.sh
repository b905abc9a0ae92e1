# Shared set-up for scripts/demo.sh and scripts/test.sh: a virtualenv in .venv
# with otel_ml installed from this checkout, dependency versions from
# requirements/lock.txt. Sourced, not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# TensorFlow's CPU-only wheel is half the size, but exists only for x86_64 Linux/Windows.
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) TF_EXTRA=tensorflow-cpu ;;
  *) TF_EXTRA=tensorflow ;;
esac
pip_install() {
  echo "==> pip install $*"
  .venv/bin/pip install -q --disable-pip-version-check -c requirements/lock.txt "$@"
}
