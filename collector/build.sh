#!/usr/bin/env bash
# Builds the otelcol-ml collector distribution from builder-config.yaml with the
# pinned OpenTelemetry Collector Builder (ocb).
#   bash collector/build.sh          # build if missing or out of date
#   bash collector/build.sh --force  # rebuild
# Idempotent and cached: the binary collector/build/otelcol-ml carries a stamp
# (sha256 of the manifest, the builder version and the Go version); when the
# stamp matches, nothing is done. The binary is never committed (.gitignore).
set -euo pipefail
OCB_VERSION="v0.159.0"   # keep in step with the component versions in builder-config.yaml

HERE="$(cd "$(dirname "$0")" && pwd)"
BUILD="$HERE/build"
BIN="$BUILD/otelcol-ml"
STAMP="$BUILD/.stamp"

command -v go >/dev/null || { echo "collector/build.sh: 'go' not found on PATH; install Go >= 1.24" >&2; exit 1; }

want="$( { cat "$HERE/builder-config.yaml"; echo "$OCB_VERSION"; go env GOVERSION; } | sha256sum | cut -d' ' -f1)"
if [ "${1:-}" != "--force" ] && [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "==> collector: $BIN is up to date (stamp ${want:0:12})"
  exit 0
fi

mkdir -p "$BUILD"
GOBIN_DIR="$BUILD/tools"
OCB="$GOBIN_DIR/builder-$OCB_VERSION"
if [ ! -x "$OCB" ]; then
  echo "==> collector: installing the collector builder $OCB_VERSION"
  GOBIN="$GOBIN_DIR" go install -v "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
  mv "$GOBIN_DIR/builder" "$OCB"
fi

echo "==> collector: building otelcol-ml (first build fetches modules and compiles for several minutes)"
start=$(date +%s)
rm -f "$STAMP"
# The builder prints its phases (generate, download modules, compile) but is
# silent while 'go build' runs; a heartbeat shows the build is alive.
( while sleep 30; do echo "    ... still compiling ($(( $(date +%s) - start ))s)"; done ) &
beat=$!
trap 'kill "$beat" 2>/dev/null || true' EXIT
( cd "$HERE" && "$OCB" --config builder-config.yaml )
kill "$beat" 2>/dev/null || true
"$BIN" --version
echo "$want" > "$STAMP"
echo "==> collector: built $BIN in $(( $(date +%s) - start ))s"
