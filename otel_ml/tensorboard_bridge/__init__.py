"""``otel-ml tensorboard LOGDIR [LOGDIR...]``: export TensorBoard event files as OTel metrics.

For runs that cannot be instrumented in-process: other frameworks that write
tfevents (PyTorch's ``SummaryWriter``), XLA-compiled loops, finished runs.
Event files are read with TensorBoard's own reader and exported with the same
instruments as :mod:`otel_ml.tf_summary` (``ml.summary.*`` and, for
loss/accuracy/learning_rate, the ``ml.train.*`` metrics); ``ml.run.name`` is
the run as TensorBoard names it, the event file's directory relative to the
logdir.

Usage::

    otel-ml tensorboard logs/ --once                 # export everything, exit
    otel-ml tensorboard logs/ --interval 10          # follow live runs; /metrics on 127.0.0.1:9464

The state directory records how far each file was exported: restarting with
the same ``--state-dir`` exports only what was appended since.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import sys
from typing import Any

from otel_ml.tf_summary._options import MAX_TAGS, RUN_NAME_PATTERN

_LOG = logging.getLogger(__name__)

__all__ = ["register"]


def default_state_dir(logdirs: list[str]) -> str:
    """``~/.cache/otel_ml/tensorboard/<hash of the logdirs>``: one state per set of logdirs."""
    key = "\n".join(sorted(os.path.abspath(d) for d in logdirs)).encode()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "otel_ml", "tensorboard", hashlib.sha256(key).hexdigest()[:16])


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``tensorboard`` subcommand to the ``otel-ml`` parser."""
    parser = sub.add_parser(
        "tensorboard",
        help="export the scalars of TensorBoard event files as OpenTelemetry metrics",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("logdirs", nargs="+", metavar="LOGDIR", help="TensorBoard log directories to watch")
    parser.add_argument("--state-dir", help="where progress is kept (default: ~/.cache/otel_ml/tensorboard/<hash>)")
    parser.add_argument("--once", action="store_true", help="export what is there now, then exit")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    parser.add_argument("--max-tags", type=int, help=f"distinct tags per run (default {MAX_TAGS.default})")
    parser.add_argument("--run-name-pattern", help="regex whose first group picks ml.run.name out of the run path")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, meter_provider: Any = None) -> int:
    """The ``tensorboard`` subcommand; returns the exit code (2: bad arguments)."""
    from otel_ml._sdk import ensure_providers
    from otel_ml.tensorboard_bridge._bridge import Bridge, check_logdirs

    try:
        if args.interval <= 0:
            raise ValueError(f"--interval={args.interval} is invalid: expected a number > 0")
        max_tags = MAX_TAGS.resolve(args.max_tags, "--max-tags")
        pattern = RUN_NAME_PATTERN.resolve(args.run_name_pattern, "--run-name-pattern")
        check_logdirs(args.logdirs)
        if meter_provider is None:
            meter_provider, _ = ensure_providers()
        bridge = Bridge(
            args.logdirs, args.state_dir or default_state_dir(args.logdirs), meter_provider, max_tags, pattern
        )
    except ValueError as exc:
        sys.stderr.write(f"otel-ml tensorboard: {exc}\n")
        return 2
    if args.once:
        count = bridge.poll(final=True)
        _LOG.info("otel-ml tensorboard: exported %d summary values", count)
        return 0
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        bridge.run_forever(args.interval)
    except KeyboardInterrupt:
        pass
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
