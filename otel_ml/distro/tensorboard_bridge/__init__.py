"""``otel-ml tensorboard LOGDIR [LOGDIR...]``: export TensorBoard event files as OTel metrics.

For runs that cannot be instrumented in-process: other frameworks that write
tfevents (PyTorch's ``SummaryWriter``), XLA-compiled loops, finished runs.
Event files are read with the reader the tf.summary instrumentor uses too
(:mod:`otel_ml._summary`: pure Python, every record header and checksum
checked, so a corrupt file cannot crash it) and exported with the same
instruments (``ml.tensorboard.*`` and, for loss/accuracy/learning_rate, the
``ml.train.*`` metrics); ``ml.run.name`` is the run as TensorBoard names it,
the event file's directory relative to the logdir.

Usage::

    OTEL_METRICS_EXPORTER=otlp otel-ml tensorboard logs/ --once   # export everything, deliver, exit
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

from otel_ml._core.options import parse_float
from otel_ml._summary import MAX_TAGS, RUN_NAME_PATTERN

_LOG = logging.getLogger(__name__)
_parse_interval = parse_float(0.01, maximum=86_400.0)
_ONCE_NEEDS_PUSH = (
    "--once exports and exits at once, but the only metrics exporter is the embedded /metrics endpoint, which "
    "ends with the process: nothing would be delivered. Set OTEL_METRICS_EXPORTER=otlp (or console), or follow "
    "the logdirs without --once so that /metrics can be scraped."
)

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
    parser.set_defaults(handler=bridge_command)


def bridge_command(args: argparse.Namespace, meter_provider: Any = None) -> int:
    """The ``tensorboard`` subcommand; returns the exit code.

    Exit codes: 0 done, 1 the values could not be delivered (``--once``; the
    state is not saved, so the next run exports them again), 2 bad arguments,
    3 the state directory or file cannot be used.
    """
    from otel_ml.distro._sdk import ensure_providers, pushes_metrics
    from otel_ml.distro.tensorboard_bridge._bridge import Bridge, check_logdirs
    from otel_ml.distro.tensorboard_bridge._state import StateError

    try:
        try:
            interval = _parse_interval(args.interval)
        except ValueError as exc:
            raise ValueError(f"--interval={args.interval!r} is invalid: expected {exc}") from None
        max_tags = MAX_TAGS.resolve(args.max_tags, "--max-tags")
        pattern = RUN_NAME_PATTERN.resolve(args.run_name_pattern, "--run-name-pattern")
        check_logdirs(args.logdirs)
        if args.once and meter_provider is None and not pushes_metrics():
            raise ValueError(_ONCE_NEEDS_PUSH)
        if meter_provider is None:
            meter_provider, _ = ensure_providers()
        bridge = Bridge(
            args.logdirs, args.state_dir or default_state_dir(args.logdirs), meter_provider, max_tags, pattern
        )
    except ValueError as exc:
        sys.stderr.write(f"otel-ml tensorboard: {exc}\n")
        return 2
    except StateError as exc:
        sys.stderr.write(f"otel-ml tensorboard: {exc}\n")
        return 3
    if args.once:
        return _once(bridge, meter_provider)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        bridge.run_forever(interval)
    except KeyboardInterrupt:
        pass
    return 0


def _once(bridge: Any, meter_provider: Any) -> int:
    """Export everything, deliver it, and only then save the state."""
    count = bridge.poll(final=True, save=False)
    flush = getattr(meter_provider, "force_flush", None)
    if flush is not None and flush() is False:
        sys.stderr.write(
            f"otel-ml tensorboard: {count} summary values could not be delivered by the metrics exporter; "
            "the state is not saved, so the next run exports them again\n"
        )
        return 1
    if not bridge.save():
        return 3
    _LOG.info("otel-ml tensorboard: exported %d summary values", count)
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
