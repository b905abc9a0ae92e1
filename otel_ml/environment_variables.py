"""Every ``OTEL_ML_*`` environment variable, declared once.

Each constant is the variable's name, the string below it its documentation;
the options tables (``<target>/_options.py``) name them from here, and
``tests/test_docs.py`` checks each has its README row. Values are read when
instrumenting, never at import; an argument to :func:`otel_ml.instrument`
beats the environment, which beats the default. A value that cannot be parsed
is reported once (the variable and what is accepted) and the default used: a
typo in a deployment manifest must not stop a training job.
"""

from __future__ import annotations

from typing import Final

# --- core / Keras -------------------------------------------------------------

OTEL_ML_RUN_NAME: Final = "OTEL_ML_RUN_NAME"
"""
.. envvar:: OTEL_ML_RUN_NAME

The ``ml.run.name`` attribute of every training series. Default: the Keras
model's ``name``. The ``run_name=`` option of ``instrument()`` and the
``otel_ml.run()`` context manager override it.
"""

OTEL_ML_SLOW_STEP_SECONDS: Final = "OTEL_ML_SLOW_STEP_SECONDS"
"""
.. envvar:: OTEL_ML_SLOW_STEP_SECONDS

A fixed slow-step threshold in seconds (a positive number). A step slower than
this gets a ``keras.train_step`` span linked from the step-time histogram's
exemplar. Unset (the default): the threshold is adaptive,
``OTEL_ML_SLOW_STEP_FACTOR`` times the rolling median step time.
"""

OTEL_ML_SLOW_STEP_FACTOR: Final = "OTEL_ML_SLOW_STEP_FACTOR"
"""
.. envvar:: OTEL_ML_SLOW_STEP_FACTOR

Multiplier of the rolling median step time above which a step counts as slow,
when no fixed threshold is set. A number greater than 1. Default: ``3``.
"""

OTEL_ML_WARMUP_STEPS: Final = "OTEL_ML_WARMUP_STEPS"
"""
.. envvar:: OTEL_ML_WARMUP_STEPS

How many executions at the start of each ``fit`` are warm-up (graph tracing,
XLA compilation): they are counted but kept out of the slow-step baseline and
never reported as slow. A whole number >= 0. Default: ``1``.
"""

OTEL_ML_LOSS_SPIKE_THRESHOLD: Final = "OTEL_ML_LOSS_SPIKE_THRESHOLD"
"""
.. envvar:: OTEL_ML_LOSS_SPIKE_THRESHOLD

Robust z-score (distance from the window's median in units of 1.4826 x MAD,
both taken on ``log(loss)`` for positive losses) above which a full-size
batch's loss counts as a ``loss_spike`` anomaly, provided it is also at least
double the median. A positive number. Default: ``6``.
"""

OTEL_ML_LOSS_SPIKE_WINDOW: Final = "OTEL_ML_LOSS_SPIKE_WINDOW"
"""
.. envvar:: OTEL_ML_LOSS_SPIKE_WINDOW

How many recent full-size batch losses the spike detector compares against
(it needs ``min(window, 32)`` before it judges any). A whole number >= 8.
Default: ``64``.
"""

# --- embedded endpoint ----------------------------------------------------------

OTEL_ML_SLOW_STEP_BUFFER: Final = "OTEL_ML_SLOW_STEP_BUFFER"
"""
.. envvar:: OTEL_ML_SLOW_STEP_BUFFER

Slow-step spans the embedded endpoint keeps for ``/slow-steps`` (>= 1). Default: ``256``.
"""

OTEL_ML_EXIT_TIMEOUT: Final = "OTEL_ML_EXIT_TIMEOUT"
"""
.. envvar:: OTEL_ML_EXIT_TIMEOUT

The most seconds a finishing program waits at exit for the exporters of the
providers otel_ml created to deliver what is left (a number from 0 to 600).
When the collector is down or never answers, the program exits after this
long and says in one line what was not delivered. Default: ``3``.
"""

# --- Paddle inference -------------------------------------------------------------

OTEL_ML_MODEL_NAME: Final = "OTEL_ML_MODEL_NAME"
"""
.. envvar:: OTEL_ML_MODEL_NAME

The ``ml.model.name`` attribute of every Paddle inference series. Default: from
the model path of the predictor's ``Config``: ``<name>/<version>/<file>``
(Triton layout) gives ``name``, else the file's stem unless generic
(``inference``, ``model``, ...: then the directory's name); ``unknown`` for a
model loaded from memory.
Set it only in a service that serves one model: it names every predictor in
the process (``otel_ml.paddle.set_model`` names one predictor or ``Config``).
"""

OTEL_ML_MODEL_VERSION: Final = "OTEL_ML_MODEL_VERSION"
"""
.. envvar:: OTEL_ML_MODEL_VERSION

The ``ml.model.version`` attribute of every Paddle inference series. Default:
the version directory of the Triton layout ``<name>/<version>/<file>``, else
no version attribute. At most 8 versions per model name are told apart.
"""

OTEL_ML_INFERENCE_WARMUP_RUNS: Final = "OTEL_ML_INFERENCE_WARMUP_RUNS"
"""
.. envvar:: OTEL_ML_INFERENCE_WARMUP_RUNS

How many first ``run()`` calls of each predictor (clones included) are
warm-up: their durations carry ``ml.inference.warmup=true`` so p99 queries can
leave out engine building (TensorRT, oneDNN kernel caches), and they are never
reported as slow. A whole number >= 0. Default: ``1``.
"""

OTEL_ML_SLOW_RUN_SECONDS: Final = "OTEL_ML_SLOW_RUN_SECONDS"
"""
.. envvar:: OTEL_ML_SLOW_RUN_SECONDS

A fixed slow-run threshold in seconds (a positive number): a slower Paddle
``run()`` gets a ``paddle.predictor.run`` span (``ml.slow_threshold``), linked
from the duration histogram's exemplar. Unset (the default): adaptive,
``OTEL_ML_SLOW_RUN_FACTOR`` times the predictor's rolling median run time.
"""

OTEL_ML_SLOW_RUN_FACTOR: Final = "OTEL_ML_SLOW_RUN_FACTOR"
"""
.. envvar:: OTEL_ML_SLOW_RUN_FACTOR

Multiplier of the rolling median run time above which a Paddle ``run()``
counts as slow, when no fixed threshold is set. A number greater than 1.
Default: ``3``.
"""

# --- GPU (NVML) -------------------------------------------------------------------

OTEL_ML_GPU_ALL_DEVICES: Final = "OTEL_ML_GPU_ALL_DEVICES"
"""
.. envvar:: OTEL_ML_GPU_ALL_DEVICES

``true`` to report every GPU on the host. Default: ``false``, only the devices
this process may use, as ``CUDA_VISIBLE_DEVICES`` lists them (indices or
UUIDs; unset means all). The ``gpu_all_devices`` option overrides it; the
``otel-ml gpu`` command reports every device unless given ``--visible-only``.
"""

OTEL_ML_GPU_ALL_PROCESSES: Final = "OTEL_ML_GPU_ALL_PROCESSES"
"""
.. envvar:: OTEL_ML_GPU_ALL_PROCESSES

``true`` to report ``ml.gpu.process.memory.usage`` and
``ml.gpu.process.utilization`` for every process on the reported GPUs, by
``process.pid``. Default: ``false``, only this process. The
``gpu_all_processes`` option overrides it; the ``otel-ml gpu`` command always
reports every process.
"""

OTEL_ML_GPU_IDENTITY_ON_SERIES: Final = "OTEL_ML_GPU_IDENTITY_ON_SERIES"
"""
.. envvar:: OTEL_ML_GPU_IDENTITY_ON_SERIES

``true`` to put each GPU's identity attributes (those of ``hw.gpu.info``:
vendor, model, driver, serial, firmware, indices) on every GPU series too, for
backends that cannot join series. Default: ``false``, on ``hw.gpu.info`` only:
the SDK hashes every attribute of every data point (about 40 per GPU) on every
collection. The ``gpu_identity_on_series`` option overrides it.
"""

OTEL_ML_GPU_NVML_MODULE: Final = "OTEL_ML_GPU_NVML_MODULE"
"""
.. envvar:: OTEL_ML_GPU_NVML_MODULE

For tests only (never in production): a module to import instead of
``pynvml``, the suite's fake NVML for ``otel-ml gpu`` in a subprocess on a
machine without a GPU. Default: ``pynvml``.
"""

# --- tf.summary and the TensorBoard bridge ----------------------------------------

OTEL_ML_TF_SUMMARY_LOGDIR_ROOT: Final = "OTEL_ML_TF_SUMMARY_LOGDIR_ROOT"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_LOGDIR_ROOT

The directory that ``ml.run.name`` of a ``tf.summary`` write is relative to:
the run is the writer's logdir relative to this root, as TensorBoard names
runs relative to ``--logdir``. Default: the working directory (a logdir
outside it keeps its absolute path). The ``summary_logdir_root=`` option
overrides it.
"""

OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN: Final = "OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN

A Python regular expression searched in the root-relative logdir (``/``
separators); its first group (or the whole match, without groups) becomes
``ml.run.name``. For ``logs/fit/exp_lr_0.01/20241015-143000``,
``fit/([^/]+)`` gives ``exp_lr_0.01``. No match keeps the relative logdir.
Default: unset. Also the bridge's ``--run-name-pattern``.
"""

OTEL_ML_TF_SUMMARY_MAX_TAGS: Final = "OTEL_ML_TF_SUMMARY_MAX_TAGS"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_MAX_TAGS

The most distinct summary tags exported per run (a whole number >= 1).
Writes of further tags are not exported: they are counted in
``ml.tensorboard.dropped`` and logged once per run. Default: ``100``.
"""

OTEL_ML_TF_SUMMARY_GRAPH_MODE: Final = "OTEL_ML_TF_SUMMARY_GRAPH_MODE"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_GRAPH_MODE

With :envvar:`OTEL_ML_TF_SUMMARY_PER_WRITE` only: whether summaries written
inside ``tf.function`` are exported on every step, through a
``tf.py_function`` added when the function is traced (true/false).
Default: ``true``. The default file-following path reads graph-mode writes
from the event files like any other.
"""

OTEL_ML_TF_SUMMARY_FLUSH_SECONDS: Final = "OTEL_ML_TF_SUMMARY_FLUSH_SECONDS"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_FLUSH_SECONDS

The ``flush_millis`` (in seconds) given to ``tf.summary.create_file_writer``
when the program passes none (TensorFlow's default: 120 s). A write is exported
within this time plus at most 1 s, or when its writer closes or the program
exits. A number from 0.05 to 3600. Default: ``10``.
"""

OTEL_ML_TF_SUMMARY_PER_WRITE: Final = "OTEL_ML_TF_SUMMARY_PER_WRITE"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_PER_WRITE

Export each ``tf.summary`` write as it is made (true/false), wrapping
``summary_ops_v2.write``, instead of reading the event files back. Lower
latency, but every write pays (a ``tf.py_function`` per write inside
``tf.function``: about 1.5x on a small step). Default: ``false``.
"""
