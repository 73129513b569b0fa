"""Where a benchmark script leaves its figures, for ``benchmarks/figures.py`` to put in the README.

A script calls ``publish("trace_load", cpu_ratio=1.31, ...)`` once it has its medians. Run by hand,
nothing happens: the script's printed report is what a person reads. Run by ``figures.py``, the
environment variable ``DIAG_BENCH_RESULTS`` names a JSONL file, and one line is appended with the
figures, the command line and the machine's state while it ran (the load average when the script
started and when it published: figures from a busy machine are read differently).
"""

from __future__ import annotations

import json
import os
import sys
import time

RESULTS_ENV = "DIAG_BENCH_RESULTS"

# Imported at a script's start: the load the script began under, before its own work adds to it.
_LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def publish(benchmark: str, **figures: float) -> None:
    """Append this run's figures to the file named by ``DIAG_BENCH_RESULTS``, if it is set."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    record = {
        "benchmark": benchmark,
        "argv": sys.argv[1:],
        "figures": {name: float(value) for name, value in figures.items()},
        "load_average": [_LOAD_AT_START, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "cpus": os.cpu_count(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
