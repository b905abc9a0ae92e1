"""Every ``OTEL_ML_*`` environment variable, with its documentation.

Each constant is the variable's name; the string below it is its
documentation, whose first paragraph is a one-line summary. Each variable is
read by exactly one :class:`~otel_ml._core.options.Option` declaration
(``<target>/_options.py`` and the distro's exit and endpoint), which holds the
``otel_ml.instrument()`` keyword, the parser with its bounds and the default;
``docs/configuration.md`` is generated from both (``scripts/configuration_doc.py``),
and ``tests/test_options.py`` checks that it is up to date.

Values are read when instrumenting, never at import, and an explicit argument
to :func:`otel_ml.instrument` beats the environment, which beats the default.
A value that cannot be parsed is reported once in a log line that names the
variable and what is accepted, and the default is used instead: a typo in a
deployment manifest must not stop a training job.
"""

from __future__ import annotations

from typing import Final

# --- training: Keras 3 and Keras 2 (tf_keras) alike ------------------------------

OTEL_ML_RUN_NAME: Final = "OTEL_ML_RUN_NAME"
"""
.. envvar:: OTEL_ML_RUN_NAME

The ``ml.run.name`` attribute of every training series.

Unset: the Keras model's ``name``. The ``otel_ml.run()`` context manager
overrides it for the fits inside it.
"""

OTEL_ML_SLOW_STEP_SECONDS: Final = "OTEL_ML_SLOW_STEP_SECONDS"
"""
.. envvar:: OTEL_ML_SLOW_STEP_SECONDS

A fixed slow-step threshold in seconds.

A training step slower than this gets a ``keras.train_step`` span carrying
``ml.slow_threshold``, linked from the step-time histogram's exemplar. Unset:
the threshold is adaptive, :envvar:`OTEL_ML_SLOW_STEP_FACTOR` times the
rolling median step time.
"""

OTEL_ML_SLOW_STEP_FACTOR: Final = "OTEL_ML_SLOW_STEP_FACTOR"
"""
.. envvar:: OTEL_ML_SLOW_STEP_FACTOR

The adaptive slow-step threshold, as a multiple of the rolling median step time.

Used when :envvar:`OTEL_ML_SLOW_STEP_SECONDS` is unset. The median is over a
rolling window of recent steps (warm-up steps left out), so the threshold
follows a model that speeds up or slows down over a run.
"""

OTEL_ML_WARMUP_STEPS: Final = "OTEL_ML_WARMUP_STEPS"
"""
.. envvar:: OTEL_ML_WARMUP_STEPS

How many executions at the start of each ``fit`` are warm-up.

Warm-up steps (graph tracing, XLA compilation) are counted like any other,
but they are kept out of the slow-step baseline and never reported as slow.
"""

OTEL_ML_LOSS_SPIKE_THRESHOLD: Final = "OTEL_ML_LOSS_SPIKE_THRESHOLD"
"""
.. envvar:: OTEL_ML_LOSS_SPIKE_THRESHOLD

The robust z-score above which a batch loss that also doubled is a ``loss_spike`` anomaly.

The z-score is the distance from the window's median in units of
1.4826 x MAD (median absolute deviation), both taken on ``log(loss)`` for
positive losses. Only full-size batches are judged, and the loss must also be
at least double the median, so that a loss that is merely noisy near zero
never counts.
"""

OTEL_ML_LOSS_SPIKE_WINDOW: Final = "OTEL_ML_LOSS_SPIKE_WINDOW"
"""
.. envvar:: OTEL_ML_LOSS_SPIKE_WINDOW

How many recent full-size batch losses the spike detector compares against.

It needs ``min(window, 32)`` losses before it judges any.
"""

# --- the distro: embedded endpoint and exit -------------------------------------

OTEL_ML_SLOW_STEP_BUFFER: Final = "OTEL_ML_SLOW_STEP_BUFFER"
"""
.. envvar:: OTEL_ML_SLOW_STEP_BUFFER

How many recent slow-step spans the embedded endpoint keeps for its ``/slow-steps`` view.

With the embedded endpoint there is often no trace backend, so an
exemplar's ``trace_id`` would lead nowhere; ``/slow-steps`` shows the spans
themselves as JSON, the oldest falling out first.
"""

OTEL_ML_ENDPOINT_ALLOWED_HOSTS: Final = "OTEL_ML_ENDPOINT_ALLOWED_HOSTS"
"""
.. envvar:: OTEL_ML_ENDPOINT_ALLOWED_HOSTS

Other host names the embedded endpoint answers to (comma-separated; ``*``: any).

By default it answers requests whose ``Host`` is its own address, this
machine's host name, a loopback name (``localhost``) or an IP literal.

A request whose ``Host`` header names another host is refused with 403: a
web page open in the user's browser cannot read ``/metrics`` or
``/slow-steps`` by pointing a name it owns at 127.0.0.1 (DNS rebinding).
Prometheus scrapes by IP address and is always answered; name here the DNS
names a scraper uses, e.g. a Kubernetes Service (``trainer.ml.svc``).
"""

OTEL_ML_EXIT_TIMEOUT: Final = "OTEL_ML_EXIT_TIMEOUT"
"""
.. envvar:: OTEL_ML_EXIT_TIMEOUT

The most seconds a finishing program waits at exit for its exporters to deliver what is left.

It bounds the shutdown of the providers otel_ml created, which the SDK alone
would let each exporter wait out with its own timeout and retries. When the
collector is down or never answers, the program exits after this long and
says in one WARNING line what was not delivered.
"""

OTEL_ML_PAGE_INTERVAL: Final = "OTEL_ML_PAGE_INTERVAL"
"""
.. envvar:: OTEL_ML_PAGE_INTERVAL

Seconds between two samples of the live page's history (``http://127.0.0.1:9464/``); 0 turns the page off.

The embedded endpoint samples its own ``/metrics`` this often into fixed-size
rings, so the page can show the last hour without a second measurement path
and with nothing done per training step.
"""

OTEL_ML_PAGE_POINTS: Final = "OTEL_ML_PAGE_POINTS"
"""
.. envvar:: OTEL_ML_PAGE_POINTS

How many samples of each series the live page keeps (720 at 5 s: the last hour).

Each of at most 256 series takes this many 8-byte numbers (four for a
histogram), allocated once: under 7 MB at the defaults, whatever the run's length.
"""

# --- Paddle inference ---------------------------------------------------------------

OTEL_ML_MODEL_NAME: Final = "OTEL_ML_MODEL_NAME"
"""
.. envvar:: OTEL_ML_MODEL_NAME

The ``ml.model.name`` attribute of every Paddle inference series.

Unset: from the model path the predictor's ``Config`` names:
``<name>/<version>/<file>`` (Triton layout) gives ``name``; otherwise the
file's stem (``ocr.json`` -> ``ocr``) unless it is generic (``inference``,
``model``, ``__model__``, ...), then the directory's name; ``unknown`` when
the model was loaded from memory. Set it only in a service that serves one
model: it names every predictor in the process (``otel_ml.paddle.set_model``
names one predictor or ``Config``).
"""

OTEL_ML_MODEL_VERSION: Final = "OTEL_ML_MODEL_VERSION"
"""
.. envvar:: OTEL_ML_MODEL_VERSION

The ``ml.model.version`` attribute of every Paddle inference series.

Unset: the version directory of the Triton layout ``<name>/<version>/<file>``,
else no version attribute. At most 8 versions per model name are told apart.
"""

OTEL_ML_INFERENCE_WARMUP_RUNS: Final = "OTEL_ML_INFERENCE_WARMUP_RUNS"
"""
.. envvar:: OTEL_ML_INFERENCE_WARMUP_RUNS

How many first ``run()`` calls of each Paddle predictor (clones included) are warm-up.

Their durations carry ``ml.inference.warmup=true``, so that p99 queries can
leave out engine building (TensorRT, oneDNN kernel caches), and they are
never reported as slow.
"""

OTEL_ML_SLOW_RUN_SECONDS: Final = "OTEL_ML_SLOW_RUN_SECONDS"
"""
.. envvar:: OTEL_ML_SLOW_RUN_SECONDS

A fixed slow-run threshold in seconds for a Paddle ``run()``.

A slower ``run()`` gets a ``paddle.predictor.run`` span carrying
``ml.slow_threshold``, linked from the duration histogram's exemplar. Unset:
the threshold is adaptive, :envvar:`OTEL_ML_SLOW_RUN_FACTOR` times the
predictor's rolling median run time.
"""

OTEL_ML_SLOW_RUN_FACTOR: Final = "OTEL_ML_SLOW_RUN_FACTOR"
"""
.. envvar:: OTEL_ML_SLOW_RUN_FACTOR

The adaptive slow-run threshold, as a multiple of the predictor's rolling median run time.

Used when :envvar:`OTEL_ML_SLOW_RUN_SECONDS` is unset.
"""

# --- GPU (NVML) -------------------------------------------------------------------

OTEL_ML_GPU_ALL_DEVICES: Final = "OTEL_ML_GPU_ALL_DEVICES"
"""
.. envvar:: OTEL_ML_GPU_ALL_DEVICES

Whether to report every GPU on the host, not only those this process may use.

Off: only the devices ``CUDA_VISIBLE_DEVICES`` lists (indices or UUIDs;
unset means all). The ``otel-ml gpu`` command reports every device unless
given ``--visible-only``.
"""

OTEL_ML_GPU_ALL_PROCESSES: Final = "OTEL_ML_GPU_ALL_PROCESSES"
"""
.. envvar:: OTEL_ML_GPU_ALL_PROCESSES

Whether to report per-process GPU memory and utilisation for every process, not only this one.

On: ``ml.gpu.process.memory.usage`` and ``ml.gpu.process.utilization`` for
every process on the reported GPUs, by ``process.pid``. The ``otel-ml gpu``
command always reports every process.
"""

OTEL_ML_GPU_IDENTITY_ON_SERIES: Final = "OTEL_ML_GPU_IDENTITY_ON_SERIES"
"""
.. envvar:: OTEL_ML_GPU_IDENTITY_ON_SERIES

Whether to put each GPU's identity attributes on every GPU series, not only on ``hw.gpu.info``.

The identity attributes are ``hw.vendor``, ``hw.model``,
``hw.driver_version``, ``hw.serial_number``, ``hw.firmware_version``,
``ml.gpu.index`` and ``ml.gpu.mig.index``; on every series they serve backends
that cannot join series. Off by default, because the SDK cleans and hashes
every attribute of every data point on every collection (about 40 data
points per GPU).
"""

OTEL_ML_GPU_NVML_MODULE: Final = "OTEL_ML_GPU_NVML_MODULE"
"""
.. envvar:: OTEL_ML_GPU_NVML_MODULE

For tests only: the importable name of a module to use instead of ``pynvml``.

The test suite's fake NVML, so that ``otel-ml gpu`` can be tested in a
subprocess on a machine without a GPU. Never set it in production.
"""

# --- tf.summary and the TensorBoard bridge ----------------------------------------

OTEL_ML_TF_SUMMARY_LOGDIR_ROOT: Final = "OTEL_ML_TF_SUMMARY_LOGDIR_ROOT"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_LOGDIR_ROOT

The directory that ``ml.run.name`` of a ``tf.summary`` write is relative to.

The run is the writer's logdir relative to this root, as TensorBoard names
runs relative to its ``--logdir``. Unset: the working directory (a logdir
outside it keeps its absolute path).
"""

OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN: Final = "OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN

A regular expression whose first group (or whole match) picks ``ml.run.name`` out of the logdir.

It is searched in the root-relative logdir (with ``/`` separators). For
``logs/fit/exp_lr_0.01/20241015-143000``, ``fit/([^/]+)`` gives
``exp_lr_0.01``. No match keeps the relative logdir. Also the TensorBoard
bridge's ``--run-name-pattern``.
"""

OTEL_ML_TF_SUMMARY_MAX_TAGS: Final = "OTEL_ML_TF_SUMMARY_MAX_TAGS"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_MAX_TAGS

The most distinct summary tags exported per run.

Writes of further tags are not exported: they are counted in
``ml.tensorboard.dropped`` and logged once per run. Also the TensorBoard
bridge's ``--max-tags``.
"""

OTEL_ML_TF_SUMMARY_FLUSH_SECONDS: Final = "OTEL_ML_TF_SUMMARY_FLUSH_SECONDS"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_FLUSH_SECONDS

The ``flush_millis``, in seconds, given to ``tf.summary.create_file_writer`` when the program passes none.

TensorFlow's own default is 120 s. A value written is exported within this
time plus one read of the event files (at most 1 s later), and at the latest
when its writer is closed or the program exits.
"""

OTEL_ML_TF_SUMMARY_PER_WRITE: Final = "OTEL_ML_TF_SUMMARY_PER_WRITE"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_PER_WRITE

Whether to export each ``tf.summary`` write as it is made instead of reading the event files back.

On: ``summary_ops_v2.write`` is wrapped. Lower latency, but it costs every
write (inside ``tf.function`` a ``tf.py_function`` per write; measured in
``bench/results/tf_summary.md``). Off: a background thread reads the writers'
event files back, and no write pays anything.
"""

OTEL_ML_TF_SUMMARY_GRAPH_MODE: Final = "OTEL_ML_TF_SUMMARY_GRAPH_MODE"
"""
.. envvar:: OTEL_ML_TF_SUMMARY_GRAPH_MODE

With :envvar:`OTEL_ML_TF_SUMMARY_PER_WRITE` only: whether writes made inside ``tf.function`` are exported.

They are exported on every step through a ``tf.py_function`` added when the
function is traced. The default file-following path reads graph-mode writes
from the event files like any other.
"""

# --- Pre-fork servers (gunicorn, uWSGI) ------------------------------------------------

OTEL_ML_MULTIPROCESS: Final = "OTEL_ML_MULTIPROCESS"
"""
.. envvar:: OTEL_ML_MULTIPROCESS

Whether the processes of a pre-fork server share one embedded ``/metrics`` that sums them.

``auto`` (the default) turns it on under gunicorn and uWSGI, and wherever
:envvar:`OTEL_ML_MULTIPROCESS_DIR` is set. Each process then publishes its
points into a shared directory and one small endpoint process per deployment
serves their sum on ``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``: exact counts
whatever worker served a request, a recycled or crashed worker's totals kept,
and a scrape never waits for a busy worker. ``off``: each process serves its
own endpoint (the first to bind the port wins), as a plain program does.
"""

OTEL_ML_MULTIPROCESS_DIR: Final = "OTEL_ML_MULTIPROCESS_DIR"
"""
.. envvar:: OTEL_ML_MULTIPROCESS_DIR

The directory where the processes of a pre-fork deployment publish their telemetry.

Unset: a private directory in the temporary directory, named after the
server's master process and removed when it exits. Set it to share one
endpoint between processes that no server starts together (for example
``multiprocessing`` workers forked from one parent); files of an earlier deployment are ignored and
removed.
"""

OTEL_ML_MULTIPROCESS_INTERVAL: Final = "OTEL_ML_MULTIPROCESS_INTERVAL"
"""
.. envvar:: OTEL_ML_MULTIPROCESS_INTERVAL

Seconds between two publications of one process's telemetry in multiprocess mode.

A scrape sees each worker's measurements at most this old (and a worker's
final ones when it exits, including when it is recycled). A worker killed
with ``SIGKILL`` loses what it measured since its last publication.
"""

OTEL_ML_MAX_RUNS: Final = "OTEL_ML_MAX_RUNS"
"""
.. envvar:: OTEL_ML_MAX_RUNS

How many distinct (``ml.model.name``, ``ml.run.name``) pairs of training series one process reports at a time.

When a new pair arrives past the limit, the series of the least recently
finished pair with no fit running are released from ``/metrics`` and OTLP
(one WARNING), so the newest trials are reported exactly under their own
names; where series cannot be released (a meter provider you built, an SDK
whose internals otel_ml does not know, every pair still running) the fits of
further pairs are reported under ``ml.model.name`` and ``ml.run.name``
``"_overflow"`` (one WARNING). Either way a sweep of hundreds of trials in one
process keeps a bounded number of series. See docs/keras.md, "Sweeps".
"""
