"""Trace-load benchmark: end-to-end load into a columnar Trace vs the bare JSON parse of the same lines.

A generated trace of N steps x L layers (default 100,000 x 64) with three per-layer statistics per
step (grad norm, param norm, update ratio), plus scalars, written once to a temporary file. Both
sides run in this process, interleaved (A, B, A, B, ...), and the ratio of medians is printed, since
absolute times drift on a shared machine. Peak memory of the load (tracemalloc) is compared with the
size of the columnar arrays it produces.

    python benchmarks/trace_load.py                 # the full size of the issue
    python benchmarks/trace_load.py --steps 10000   # a quick look
    python benchmarks/trace_load.py --linearity     # load time at 1/4, 1/2 and all of --steps

The baseline reads the file line by line, as the simplest program that parses every line would.
(Until 2026-12-07 it read the whole file into one buffer and split it first: at 100,000 x 64 that
costs about 1.5x the CPU time of reading line by line, page faults on 800 MB of buffers, and made
every ratio printed here look about a third better than it was.)

``--linearity`` checks that loading is linear in the trace's size: it loads traces of a quarter,
a half and all of ``--steps`` (interleaved, medians) and prints the time per 1,000 records and the
exponent of a log-log fit (1.0 is linear; a quadratic step would show as 2).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import tracemalloc

import numpy as np
import orjson

from bench_results import publish


def generate(path: str, steps: int, layers: int, seed: int = 0) -> int:
    """Write a realistic trace (values with float32 precision, like real adapters) and return its size."""
    from diag.trace.records import Header, LayerInfo, ParamInfo
    from diag.trace.writer import encode_record

    rng = np.random.default_rng(seed)
    header = Header(run_id="bench", framework="flax", layers=[
        LayerInfo(name=f"blocks/{i}", type="Linear", params=[ParamInfo(name="kernel", shape=[256, 256], dtype="float32")])
        for i in range(layers)
    ])
    with open(path, "wb") as f:
        f.write(encode_record(header))
        chunk = 1000
        for start in range(0, steps, chunk):
            n = min(chunk, steps - start)
            g = rng.lognormal(0, 1, (n, layers)).astype(np.float32)
            p = rng.lognormal(3, 0.1, (n, layers)).astype(np.float32)
            u = (g / p * 1e-3).astype(np.float32)
            lines = []
            for i in range(n):
                step = start + i
                record = {
                    "kind": "step", "step": step, "loss": float(np.float32(2.3 / (1 + step / 1000))),
                    "lr": 1e-3, "grad_norm": float(g[i].sum()),
                    "layers": {"grad_norm": g[i].tolist(), "param_norm": p[i].tolist(), "update_ratio": u[i].tolist()},
                }
                lines.append(orjson.dumps(record))
            f.write(b"\n".join(lines) + b"\n")
    return os.path.getsize(path)


def bare_parse(path: str) -> int:
    """``orjson.loads`` of every line, the file read line by line: the parse alone, the floor of a load."""
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.isspace():
                orjson.loads(line)
                n += 1
    return n


def full_load(path: str):
    from diag.trace import load_trace

    return load_trace(path)


def columnar_bytes(trace) -> int:
    arrays = [trace.steps, *trace.columns.values(), *trace.present.values(), *trace.layer_columns.values(),
              *trace.layer_present.values()]
    return sum(a.nbytes for a in arrays)


def linearity(steps: int, layers: int, repeats: int) -> None:
    import math

    sizes = [steps // 4, steps // 2, steps]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n in sizes:
            paths.append(os.path.join(tmp, f"bench{n}.jsonl"))
            generate(paths[-1], n, layers)
        times: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(repeats):
            for n, path in zip(sizes, paths):
                gc.collect()
                t0 = time.perf_counter(); full_load(path); times[n].append(time.perf_counter() - t0)
    medians = [statistics.median(times[n]) for n in sizes]
    print(f"load_trace of {layers}-layer traces, median of {repeats} interleaved")
    for n, t in zip(sizes, medians):
        print(f"  {n:>9,} records: {t:7.3f} s   {1e3 * t / n * 1000:7.3f} ms per 1,000 records")
    xs, ys = [math.log(n) for n in sizes], [math.log(t) for t in medians]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    print(f"log-log exponent: {slope:.2f}   (1.0 is linear in the number of records)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--linearity", action="store_true", help="time loads at 1/4, 1/2 and 1x --steps")
    args = parser.parse_args()
    if args.linearity:
        linearity(args.steps, args.layers, args.repeats)
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.jsonl")
        t0 = time.perf_counter()
        size = generate(path, args.steps, args.layers)
        print(f"trace: {args.steps:,} steps x {args.layers} layers, {size / 1e6:.0f} MB "
              f"(generated in {time.perf_counter() - t0:.1f} s)")
        parse_times, load_times, parse_cpu, load_cpu = [], [], [], []
        for _ in range(args.repeats):
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            bare_parse(path)
            parse_times.append(time.perf_counter() - t0); parse_cpu.append(time.process_time() - c0)
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            trace = full_load(path)
            load_times.append(time.perf_counter() - t0); load_cpu.append(time.process_time() - c0)
            del trace
        parse, load = statistics.median(parse_times), statistics.median(load_times)
        print(f"bare orjson parse of every line : {parse:6.2f} s (median of {args.repeats})")
        print(f"load_trace -> columnar Trace    : {load:6.2f} s")
        print(f"ratio load / bare parse         : {load / parse:6.2f}x   (goal <= 1.5x)")
        # On a shared machine the wall-clock ratio drifts with the load; CPU time drifts less.
        cpu_ratio = statistics.median(load_cpu) / statistics.median(parse_cpu)
        print(f"same in CPU time                : {cpu_ratio:6.2f}x   ({statistics.median(load_cpu):.2f} s vs "
              f"{statistics.median(parse_cpu):.2f} s)")

        gc.collect()
        tracemalloc.start()
        trace = full_load(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        arrays = columnar_bytes(trace)
        print(f"columnar arrays                 : {arrays / 1e6:6.0f} MB")
        print(f"peak memory during load         : {peak / 1e6:6.0f} MB")
        print(f"ratio peak / columnar           : {peak / arrays:6.2f}x   (goal <= 1.1x)")
        publish("trace_load", wall_ratio=load / parse, cpu_ratio=cpu_ratio, peak_ratio=peak / arrays,
                load_cpu_s=statistics.median(load_cpu), parse_cpu_s=statistics.median(parse_cpu))


if __name__ == "__main__":
    main()
