"""Runs a script (``sys.argv[1]``) and reports this process's peak RSS at exit.

The collector outage test runs the Keras example through this wrapper, under
``opentelemetry-instrument``, to show that memory stays bounded while the
exporters cannot reach the collector. The report is registered before the
script runs, so it prints after the SDK's own exit handlers have flushed.
"""

from __future__ import annotations

import atexit
import resource
import runpy
import sys


def _report() -> None:
    sys.stderr.write(f"OTEL_ML_TEST_MAXRSS_KB={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\n")


atexit.register(_report)
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
