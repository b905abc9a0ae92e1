"""Shared benchmark helpers: machine description, interleaved rounds, medians, result files."""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import statistics
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """CPU model, core count and Python version, for the results header."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def interleave(variants: dict[str, Callable[[], float]], rounds: int, seed: int = 0) -> dict[str, list[float]]:
    """Run each variant once per round, in a shuffled order each round; returns every sample."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            samples[name].append(variants[name]())
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def write(name: str, title: str, command: str, body: str) -> Path:
    """Write ``bench/results/<name>.md`` with date, machine and the command that produced it."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    header = (
        f"# {title}\n\n"
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}\n"
        f"- machine: {machine()}\n"
        f"- command: `{command}`\n\n"
    )
    path.write_text(header + body)
    return path
