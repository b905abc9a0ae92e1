"""Run corpus programs one after another in this process, then save what the embedded endpoint serves.

Usage: ``[opentelemetry-instrument] python tests/programs/run.py PROGRAM.py ...``. One
process for several programs keeps the corpus fast (TensorFlow is imported
once). With ``CORPUS_METRICS`` set, the process scrapes its own embedded
``/metrics`` endpoint at the end and writes the text there.
"""

import os
import runpy
import sys
import urllib.request
from pathlib import Path

from _truth import keras

# Keras 2 (CORPUS_KERAS=tf_keras) names itself, whatever its backend (TensorFlow).
print("keras backend", keras.backend.backend() if hasattr(keras, "ops") else keras.__name__, flush=True)
for program in sys.argv[1:]:
    print("===", Path(program).stem, flush=True)
    runpy.run_path(program, run_name="__main__")

if os.environ.get("CORPUS_METRICS"):
    url = f"http://127.0.0.1:{os.environ['OTEL_EXPORTER_PROMETHEUS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        Path(os.environ["CORPUS_METRICS"]).write_bytes(response.read())
