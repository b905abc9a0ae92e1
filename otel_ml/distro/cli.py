"""The ``otel-ml`` console command; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``otel-ml SUBCOMMAND ...``; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="otel-ml", description="otel_ml command-line tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    _register(sub)
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


def _register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Each subcommand module adds its parser here (GPU exporter, TensorBoard bridge)."""
    from otel_ml.distro import gpu_command, tensorboard_bridge

    gpu_command.register(sub)
    tensorboard_bridge.register(sub)


if __name__ == "__main__":
    sys.exit(main())
