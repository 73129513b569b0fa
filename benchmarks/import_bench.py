"""Importing a TensorBoard folder with 1M scalars vs the reader library's own bare load of it.

The folder is written by torch's ``SummaryWriter`` (``--tags`` tags x ``--steps`` steps, one
``add_scalar`` per value, as a training script writes them). Then, interleaved A/B in one process:

* bare load: ``tensorboard``'s ``LegacyEventFileLoader`` reads every event file to the end and
  parses every record into an ``Event`` proto (its TFRecord reader with CRC checks, and protobuf);
  with ``--compat`` also ``EventFileLoader`` (the same plus TensorBoard's compatibility layers,
  about 4x slower: the stricter comparison is the legacy loader);
* import: ``diag.adapters.importers.open_run(folder)``: detection, the same reading, the names
  mapping, and the columnar ``Trace`` built through the trace builder.

Goal: import <= 2x the bare load. Prints each time and the ratios (medians over the rounds).

    python benchmarks/import_bench.py                      # 4 tags x 250,000 steps = 1M scalars
    python benchmarks/import_bench.py --steps 25000 --rounds 2   # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

TAGS = ("train/loss", "train/grad_norm", "train/lr", "train/accuracy")


def write_folder(folder: Path, steps: int, tags: int) -> int:
    """A run folder of ``tags * steps`` scalars written by torch's SummaryWriter."""
    import math

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder), max_queue=10_000, flush_secs=3600)
    names = TAGS[:tags] + tuple(f"extra/metric_{i}" for i in range(max(0, tags - len(TAGS))))
    for step in range(steps):
        loss = 2.3 * math.exp(-step / steps) + 0.01 * math.sin(step)
        for i, name in enumerate(names):
            writer.add_scalar(name, loss * (i + 1), step)
    writer.close()
    return steps * len(names)


def bare_load(folder: Path, loader_name: str) -> int:
    from tensorboard.backend.event_processing import event_file_loader

    loader_class = getattr(event_file_loader, loader_name)
    events = 0
    for file in sorted(folder.iterdir()):
        if "tfevents" in file.name:
            for _ in loader_class(str(file)).Load():
                events += 1
    return events


def import_folder(folder: Path) -> int:
    from diag.adapters.importers import open_run

    trace = open_run(folder)
    return sum(len(trace.series(name)) for name in trace.series_names())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250_000)
    parser.add_argument("--tags", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, help="reuse (or create) the event folder here")
    parser.add_argument("--compat", action="store_true",
                        help="also time EventFileLoader (the loader plus TensorBoard's compatibility layers; slow)")
    args = parser.parse_args()

    folder = args.folder or Path(tempfile.mkdtemp(prefix="diag-import-bench-")) / "run"
    if not folder.exists() or not any(folder.iterdir()):
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        scalars = write_folder(folder, args.steps, args.tags)
        print(f"wrote {scalars:,} scalars with SummaryWriter in {time.perf_counter() - start:.1f} s: {folder}")
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"folder: {size / 1e6:.1f} MB of event files")

    sides = {"bare LegacyEventFileLoader": lambda: bare_load(folder, "LegacyEventFileLoader")}
    if args.compat:
        sides["bare EventFileLoader"] = lambda: bare_load(folder, "EventFileLoader")
    sides["diag open_run"] = lambda: import_folder(folder)
    times: dict[str, list[float]] = {name: [] for name in sides}
    counts = {}
    for _ in range(args.rounds):
        for name, side in sides.items():  # interleaved: drift on a shared machine hits every side alike
            start = time.perf_counter()
            counts[name] = side()
            times[name].append(time.perf_counter() - start)
    for name in sides:
        print(f"{name:28s} median {statistics.median(times[name]):7.2f} s  ({counts[name]:,} "
              f"{'points' if 'diag' in name else 'events'})  runs {', '.join(f'{t:.2f}' for t in times[name])}")
    diag_time = statistics.median(times["diag open_run"])
    for name in (n for n in sides if n.startswith("bare")):
        print(f"import / {name[5:]}: {diag_time / statistics.median(times[name]):.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
