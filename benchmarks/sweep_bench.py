"""Sweep benchmark: a fleet of small real runs, diagnosed on 1 and 2 local workers, then from the cache.

The fleet: ``--templates`` real training runs (the numpy two-layer network of tests/numpy_training.py,
40 steps each, at learning rates from healthy to diverging, some with NaN planted in the inputs),
copied to ``--runs`` trace files (default 10,000), each with its own run id so that every file has
its own bytes and its own cache key. Three sweeps of the whole fleet run in one process, in turn,
``--rounds`` times:

* cold, 1 worker (``jobs=1``, an empty cache folder);
* cold, 2 workers (``jobs=2``, another empty cache folder);
* cached, 2 workers (the second sweep's cache, nothing changed).

Printed: the median of each, the scaling of 2 workers over 1 as a share of linear
(``t1 / (2 * t2)``, goal >= 85%), and cold over cached (goal >= 20x), with the load average
before and after, since absolute times drift on a shared machine.

On a machine other work keeps busy the wall-clock scaling measures the contention more than the
sweep, so the CPU time of each sweep is printed too (this process plus its finished worker
processes, ``getrusage``): 1-worker CPU over 2-worker CPU is the share of the work that stays
useful when it is split (fork, pickling, the parent's merging and cache writes are the rest),
the most the wall-clock scaling can reach on two free cores.

    python benchmarks/sweep_bench.py                 # the issue's size: 10,000 runs
    python benchmarks/sweep_bench.py --runs 1000     # a quick look
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.numpy_training


def make_fleet(root: Path, runs: int, templates: int) -> None:
    """Train ``templates`` real runs and copy them, each with a new run id, to ``runs`` files."""
    from tests.numpy_training import train_softmax_regression

    sources = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # diverging runs overflow, as they should
        for i in range(templates):
            path = root / f"template{i}.jsonl"
            lr = (0.05, 0.1, 0.2, 5.0)[i % 4]
            train_softmax_regression(path, steps=40, lr=lr, seed=i, nan_at=20 if i % 7 == 6 else None)
            sources.append(path.read_bytes())
            path.unlink()
    for n in range(runs):
        text = sources[n % templates]
        template_id = f'"run_id":"numpy-softmax-{n % templates}"'.encode()
        assert template_id in text, "the template's header changed: update the run-id rewrite"
        folder = root / f"group{n // 1000:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"run{n:05d}.jsonl").write_bytes(text.replace(template_id, f'"run_id":"fleet-{n}"'.encode(), 1))


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished (reaped) children, user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


CPU: dict[int, list[float]] = {1: [], 2: []}  # jobs -> CPU seconds of each cold sweep


def timed_sweep(root: Path, jobs: int, cache_dir: Path, cold: bool = True) -> tuple[float, object]:
    from diag.sweep import SweepStats, sweep

    stats = SweepStats()
    cpu = _cpu_seconds()
    start = time.perf_counter()
    report = sweep(root, jobs=jobs, cache_dir=cache_dir, use_env=False, stats=stats)
    elapsed = time.perf_counter() - start
    if cold:
        CPU[jobs].append(_cpu_seconds() - cpu)
    return elapsed, (report, stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--templates", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="diag-sweep-bench-") as tmp:
        root = Path(tmp) / "fleet"
        root.mkdir()
        start = time.perf_counter()
        make_fleet(root, args.runs, args.templates)
        print(f"fleet: {args.runs} runs from {args.templates} real training runs, written in "
              f"{time.perf_counter() - start:.1f} s")
        load_before = os.getloadavg()
        cold1, cold2, cached = [], [], []
        for round_ in range(args.rounds):
            t1, (report1, _) = timed_sweep(root, 1, Path(tmp) / f"cache1-{round_}")
            t2, (report2, _) = timed_sweep(root, 2, Path(tmp) / f"cache2-{round_}")
            t3, (report3, stats3) = timed_sweep(root, 2, Path(tmp) / f"cache2-{round_}", cold=False)
            assert report1.to_json() == report2.to_json() == report3.to_json(), "the three sweeps disagree"
            assert stats3.cached == args.runs and stats3.diagnosed == 0, stats3
            cold1.append(t1)
            cold2.append(t2)
            cached.append(t3)
            print(f"round {round_ + 1}: cold 1 worker {t1:.1f} s, cold 2 workers {t2:.1f} s, cached {t3:.2f} s")
        load_after = os.getloadavg()
        counts = report1.counts()
        t1, t2, t3 = (statistics.median(x) for x in (cold1, cold2, cached))
        print(f"runs by status: {counts}")
        print(f"cold, 1 worker:   {t1:8.2f} s  ({1000 * t1 / args.runs:.1f} ms per run)")
        print(f"cold, 2 workers:  {t2:8.2f} s")
        print(f"cached:           {t3:8.2f} s  ({1e6 * t3 / args.runs:.0f} us per run)")
        print(f"scaling 1 -> 2 workers: {t1 / (2 * t2):.0%} of linear (goal >= 85%)")
        print(f"cold / cached: {t2 / t3:.1f}x (2 workers; goal >= 20x); {t1 / t3:.1f}x against 1 worker")
        c1, c2 = statistics.median(CPU[1]), statistics.median(CPU[2])
        print(f"CPU time, cold: 1 worker {c1:.1f} s, 2 workers {c2:.1f} s (parent and workers): the split keeps "
              f"{c1 / c2:.0%} of the work useful, the most the scaling can reach on 2 free cores")
        print(f"load average (1, 5, 15 min) before {tuple(round(x, 1) for x in load_before)}, "
              f"after {tuple(round(x, 1) for x in load_after)} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
