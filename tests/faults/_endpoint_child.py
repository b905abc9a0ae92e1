"""A program with otel_ml's embedded endpoint, driven by lines on stdin (tests/faults/test_endpoint_bounds.py).

Its descriptor limit is the common default soft limit (1,024), as on most
machines, so a server that leaks descriptors shows as a failing ``open()``.
Commands: ``fds`` prints how many descriptors are open; ``open`` opens 100
files at once and prints ``opened 100`` or ``failed <errno>``; ``exit`` ends
the program normally (its exit then runs otel_ml's bounded shutdown).
"""

from __future__ import annotations

import os
import resource
import sys

_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))

from opentelemetry import metrics  # noqa: E402

import otel_ml  # noqa: E402 - after the limit, as a program started under it

otel_ml.instrument()
counter = metrics.get_meter("child").create_counter("child.series")
for index in range(int(os.environ.get("CHILD_SERIES", "10"))):
    counter.add(1, {"index": f"{index:06d}-padding-that-makes-each-line-longer-than-a-hundred-bytes"})
print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "fds":
        print(len(os.listdir("/proc/self/fd")), flush=True)
    elif command == "open":
        files = []
        try:
            for _ in range(100):
                files.append(open(os.devnull))
            print("opened", len(files), flush=True)
        except OSError as exc:
            print("failed", exc.errno, flush=True)
        finally:
            for file in files:
                file.close()
    elif command == "exit":
        break
