"""This tree against an earlier commit, in the same run: do the headline overheads regress?

Each benchmark script already measures otel_ml against the program without it,
in one process, interleaved. This driver runs that script alternately from a
checkout of ``--ref`` and from a checkout of ``HEAD`` (order swapped each pair:
the second run of a pair is often the slower), each with its own ``otel_ml``
on ``PYTHONPATH``, and reports the median of each headline figure per side.
Both checkouts are temporary git worktrees, so the results files the scripts
write never touch the working tree.

    python bench/vs_previous.py --ref <commit> [--pairs 3] [--only keras,tf_summary,paddle] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _common

ROOT = Path(__file__).resolve().parent.parent


def _row(text: str, first: str, column: int) -> float | None:
    """The number in ``column`` of the markdown table row whose first cells start with ``first``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "|".join(cells).startswith(first):
            try:
                return float(cells[column].rstrip("x").replace("+", ""))
            except (IndexError, ValueError):
                return None
    return None


Extract = Callable[[str], dict[str, float | None]]


def _hooks(out: str) -> float | None:
    """``otel_ml's hooks in all: 21.3`` of ``keras_hook_cost.py``."""
    for line in out.splitlines():
        if "otel_ml's hooks in all:" in line:
            return float(line.rsplit(":", 1)[1])
    return None


BENCHES: dict[str, tuple[list[str], Extract]] = {
    "keras_hooks": (
        ["bench/keras_hook_cost.py", "--flavour", "keras", "--fits", "5"],
        lambda out: {"Keras 3: otel_ml's hooks, CPU µs per step": _hooks(out)},
    ),
    "tf_keras_hooks": (
        ["bench/keras_hook_cost.py", "--flavour", "tf_keras", "--fits", "5"],
        lambda out: {"Keras 2: otel_ml's hooks, CPU µs per step": _hooks(out)},
    ),
    "keras": (
        ["bench/bench_keras.py", "--rounds", "9", "--steps", "300", "--clock", "cpu"],
        lambda out: {
            "Keras fit, otel_ml / plain (NumPy, process CPU)": _row(out, "otel_ml|", 3),
            "Keras fit, otel_ml / plain (tf.data, process CPU)": _row(out, "otel_ml_tf_data|", 3),
        },
    ),
    "tf_keras": (
        ["bench/bench_keras.py", "--flavour", "tf_keras", "--rounds", "7", "--steps", "300"],
        lambda out: {"Keras 2 fit, otel_ml / plain (NumPy)": _row(out, "otel_ml|", 3)},
    ),
    "tf_summary": (
        ["bench/bench_tf_summary.py", "--rounds", "5", "--steps", "500", "--calls", "500"],
        lambda out: {
            "tf.summary guide step, files / plain (wall)": _row(out, "files|", 2),
            "tf.summary guide step, files / plain (CPU)": _row(out, "files|", 5),
        },
    ),
    "paddle": (
        ["bench/bench_paddle.py", "--parts", "1,2", "--rounds", "5", "--calls", "1000", "--service-rounds", "3"],
        lambda out: {
            "Paddle run() tiny, added µs": _row(out, "tiny (4-16-3, batch 4)|otel_ml|", 3),
            "Paddle run() small, added µs": _row(out, "small (64-256-256-10, batch 8)|otel_ml|", 3),
            "service throughput vs prometheus-flask-exporter": _row(out, "otel_ml|", 5),
        },
    ),
}


def _worktree(ref: str, where: str) -> Path:
    path = Path(where) / ref.replace("/", "_")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), ref], check=True)
    return path


def _run(tree: Path, argv: list[str], log: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    print(f"  {tree.name}: {' '.join(argv)} ({time.monotonic() - started:.0f} s, exit {done.returncode})", flush=True)
    if done.returncode != 0:
        print("    " + "\n    ".join(done.stderr.strip().splitlines()[-5:]), flush=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", required=True, help="the earlier commit (e.g. the previous main)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--out", default=None, help="also write the table to this results file name")
    args = parser.parse_args()
    names = [name for name in args.only.split(",") if name]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"previous": _worktree(args.ref, tmp), "this": _worktree("HEAD", tmp)}
        figures: dict[str, dict[str, list[float]]] = {}
        try:
            for name in names:
                argv, extract = BENCHES[name]
                print(f"{name}:", flush=True)
                for pair in range(args.pairs):
                    order = ("previous", "this") if pair % 2 == 0 else ("this", "previous")
                    for side in order:
                        out = _run(trees[side], argv, Path(tmp) / f"{name}-{side}-{pair}.log")
                        for label, value in extract(out).items():
                            if value is not None:
                                figures.setdefault(label, {}).setdefault(side, []).append(value)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    rows = ["| figure | previous | this | samples |", "|---|---:|---:|---|"]
    for label, sides in figures.items():
        prev, this = sides.get("previous", []), sides.get("this", [])
        med = {side: f"{statistics.median(v):.3f}" if v else "—" for side, v in (("p", prev), ("t", this))}
        samples = f"previous {', '.join(f'{v:g}' for v in prev)}; this {', '.join(f'{v:g}' for v in this)}"
        rows.append(f"| {label} | {med['p']} | {med['t']} | {samples} |")
    body = (
        f"This tree against `{args.ref}`, {args.pairs} alternating pairs per benchmark (order swapped each pair), "
        "medians of each script's own headline figure (each an otel_ml-against-plain figure measured inside one "
        f"run of the script). Load average at the end: {os.getloadavg()[0]:.1f}.\n\n" + "\n".join(rows) + "\n"
    )
    print(body)
    if args.out:
        command = "python bench/vs_previous.py " + " ".join(sys.argv[1:])
        _common.write(args.out, "otel_ml against the previous main", command, body)


if __name__ == "__main__":
    main()
