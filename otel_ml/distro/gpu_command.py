"""``otel-ml gpu``: the GPU gauges as a node-level exporter, beside the jobs instead of inside them.

It serves the same metrics as the in-process instrumentor, on the embedded
``/metrics`` endpoint or wherever ``OTEL_METRICS_EXPORTER`` says (``otlp``
pushes every ``OTEL_METRIC_EXPORT_INTERVAL``), until SIGINT or SIGTERM. Unlike
the instrumentor it reports every GPU on the host (``--visible-only`` follows
``CUDA_VISIBLE_DEVICES``) and the memory of every process on them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from types import FrameType

from opentelemetry.sdk.metrics import MeterProvider

from otel_ml.distro._resource import build_resource
from otel_ml.distro._sdk import metric_readers

_LOG = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``gpu`` subcommand to ``otel-ml``."""
    parser = sub.add_parser(
        "gpu",
        help="serve GPU metrics (NVML) as a node-level exporter",
        description="Serve the hw.* GPU metrics of this host until interrupted: on the embedded "
        "/metrics endpoint by default, or as OTEL_METRICS_EXPORTER says (e.g. otlp).",
    )
    parser.add_argument(
        "--host",
        help="interface of the /metrics endpoint (default: "
        "OTEL_EXPORTER_PROMETHEUS_HOST or 127.0.0.1; 0.0.0.0 to be scraped from elsewhere)",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="port of the /metrics endpoint (default: OTEL_EXPORTER_PROMETHEUS_PORT or 9464; 0 picks a free one)",
    )
    parser.add_argument(
        "--visible-only",
        action="store_true",
        help="report only the GPUs CUDA_VISIBLE_DEVICES names (default: every GPU on the host)",
    )
    parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 1 when there is no GPU, no exporter or the port is taken."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.port is not None and not 0 <= args.port <= 65535:
        _LOG.error("otel-ml gpu: --port %s is invalid: expected a whole number from 0 to 65535", args.port)
        return 2
    # The embedded reader reads its address from these; the command line beats the environment.
    if args.host is not None:
        os.environ["OTEL_EXPORTER_PROMETHEUS_HOST"] = args.host
    if args.port is not None:
        os.environ["OTEL_EXPORTER_PROMETHEUS_PORT"] = str(args.port)
    from otel_ml.distro.endpoint import EndpointUnavailable, serving_only

    try:
        with serving_only("otel-ml gpu"):
            readers = metric_readers()
    except EndpointUnavailable as exc:
        _LOG.error("%s", exc)  # the one line: the port is taken (or the address wrong); serving nothing is no use
        return 1
    if not readers:
        _LOG.error(
            "otel-ml gpu: no metrics exporter (OTEL_METRICS_EXPORTER=%r); nothing to do",
            os.environ.get("OTEL_METRICS_EXPORTER"),
        )
        return 1
    provider = MeterProvider(resource=build_resource(), metric_readers=readers)
    from otel_ml.gpu import GpuInstrumentor

    instrumentor = GpuInstrumentor()
    instrumentor.instrument(meter_provider=provider, gpu_all_devices=not args.visible_only, gpu_all_processes=True)
    try:
        # A driver whose nvmlInit takes longer than instrument() waits (large hosts without persistence
        # mode): this command exists to report GPUs, so it waits for NVML's answer before deciding.
        while instrumentor.sampler is None and instrumentor.starting:
            time.sleep(0.2)
        if instrumentor.sampler is None:
            _LOG.error("otel-ml gpu: no GPU to report (see the line above); exiting")
            return 1
        from otel_ml.distro.endpoint import embedded_url

        url = embedded_url()
        _LOG.info(
            "otel-ml gpu: serving %d device(s)%s; stop with Ctrl-C or SIGTERM",
            len(instrumentor.sampler.devices),
            f" on {url}" if url else "",
        )
        _wait_for_signal()
        return 0
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        del frame
        _LOG.info("otel-ml gpu: signal %d, stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
