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

The state directory records how far each file was *delivered*: the state is
saved only after the exporters delivered what was read (a flush that
succeeded for a push exporter, a scrape for the embedded ``/metrics``), so a
bridge killed in between (SIGKILL, or SIGTERM while the collector is down)
sends those values again when restarted on the same ``--state-dir``, and
nothing appended since is skipped. One bridge per state directory (a lock).

Exit codes: 0 done; 1 values read could not be delivered (the state keeps
them unexported); 2 bad arguments; 3 the state directory cannot be used (or
another bridge holds it); 4 nowhere to deliver (the ``/metrics`` port is taken
and no push exporter is set).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
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
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symbolic links, to real paths under the LOGDIRs only (default: links are not followed)",
    )
    parser.set_defaults(handler=bridge_command)


def bridge_command(args: argparse.Namespace, meter_provider: Any = None) -> int:
    """The ``tensorboard`` subcommand; returns the exit code (see the module's docstring)."""
    from otel_ml.distro._sdk import pushes_metrics
    from otel_ml.distro.tensorboard_bridge._bridge import Bridge, check_logdirs
    from otel_ml.distro.tensorboard_bridge._state import StateError

    own_providers = meter_provider is None
    try:
        try:
            interval = _parse_interval(args.interval)
        except ValueError as exc:
            raise ValueError(f"--interval={args.interval!r} is invalid: expected {exc}") from None
        max_tags = MAX_TAGS.resolve(args.max_tags, "--max-tags")
        pattern = RUN_NAME_PATTERN.resolve(args.run_name_pattern, "--run-name-pattern")
        check_logdirs(args.logdirs)
        push = own_providers and pushes_metrics()
        if args.once and own_providers and not push:
            raise ValueError(_ONCE_NEEDS_PUSH)
        state_dir = args.state_dir or default_state_dir(args.logdirs)
        if own_providers:
            meter_provider = _own_providers(push)
            if meter_provider is None:
                return 4
        bridge = Bridge(
            args.logdirs,
            state_dir,
            meter_provider,
            max_tags,
            pattern,
            follow_symlinks=bool(getattr(args, "follow_symlinks", False)),
        )
    except ValueError as exc:
        sys.stderr.write(f"otel-ml tensorboard: {exc}\n")
        return 2
    except StateError as exc:
        sys.stderr.write(f"otel-ml tensorboard: {exc}\n")
        return 3
    try:
        deliver = _delivery(bridge, meter_provider, pull=own_providers and not push, interval=interval)
        if args.once:
            return _once(bridge, deliver)
        return _follow(bridge, deliver, interval)
    finally:
        bridge.close()


def _own_providers(push: bool) -> Any:
    """The global providers (built from the environment); None, after one line, when nothing could deliver."""
    from otel_ml.distro._sdk import ensure_providers
    from otel_ml.distro.endpoint import embedded_url

    with _endpoint_errors() as errors:
        meter_provider, _ = ensure_providers()
    if push or embedded_url() is not None:
        for message in errors:  # an endpoint beside a push exporter: say it, go on
            _LOG.warning("%s", message)
        return meter_provider
    reason = errors[0] if errors else "no metrics exporter is configured"
    sys.stderr.write(
        f"otel-ml tensorboard: nowhere to deliver the values: {reason.split('. ')[0].removeprefix('otel_ml: ')}. "
        "Nothing is read and no file is marked exported; free the port, choose another with "
        "OTEL_EXPORTER_PROMETHEUS_PORT, or push with OTEL_METRICS_EXPORTER=otlp.\n"
    )
    return None


@contextlib.contextmanager
def _endpoint_errors() -> Iterator[list[str]]:
    """Hold back the endpoint's "cannot serve" error: the command says it in its own words."""
    caught: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        caught.append(record.getMessage())
        return False

    logger = logging.getLogger("otel_ml.distro.endpoint._server")
    logger.addFilter(keep)
    try:
        yield caught
    finally:
        logger.removeFilter(keep)


def _delivery(bridge: Any, meter_provider: Any, pull: bool, interval: float) -> Callable[[bool], bool]:
    """``deliver(final)``: delivers what was read and says whether it was delivered.

    Push exporters: a flush, then no export may have failed (a flush's own
    result says nothing about the export). The embedded ``/metrics`` alone: a
    scrape must have collected after the latest read (the last time, on
    stopping, one interval is waited for it).
    """
    from otel_ml.distro._exit import delivery

    if pull:
        return lambda final: bool(bridge.collected_within(interval if final else 0.0))

    def flush(final: bool) -> bool:
        failed = delivery.metric_exports_failed
        flushed = getattr(meter_provider, "force_flush", None)
        ok = flushed is None or flushed() is not False
        return ok and delivery.metric_exports_failed == failed

    return flush


_stop = threading.Event()


def _once(bridge: Any, deliver: Callable[[bool], bool]) -> int:
    """Export everything, deliver it, and only then save the state."""
    count = bridge.poll(final=True, save=False)
    if not deliver(True):
        sys.stderr.write(
            f"otel-ml tensorboard: {count} summary values could not be delivered by the metrics exporter; "
            "the state is not saved, so the next run exports them again\n"
        )
        return 1
    if not bridge.save():
        return 3
    _LOG.info("otel-ml tensorboard: exported %d summary values", count)
    return 0


def _follow(bridge: Any, deliver: Callable[[bool], bool], interval: float) -> int:
    """Follow until SIGTERM or Ctrl-C; non-zero when values read were not delivered by then."""
    _stop.clear()
    previous = {sig: signal.signal(sig, _on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        pending = bridge.run_forever(interval, deliver, _stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        sys.stderr.write(
            f"otel-ml tensorboard: stopped with {pending} summary values read but not delivered; the state "
            f"keeps them unexported, so a restart with --state-dir {bridge.state.directory} sends them\n"
        )
        return 1
    return 0


def _on_stop(signum: int, frame: Any) -> None:
    _stop.set()
