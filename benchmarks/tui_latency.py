"""How fast does ``diag tui --follow`` show new steps, and answer keys, on a long run?

A trace of N steps is open in the TUI (headless, 80x24) while a writer thread appends step records
at 50 per second, flushing each one, as a training loop with a TraceWriter would. Measured:

* write-to-screen latency: from a record's flush to the first screen refresh that shows it
  (the status line's step count), for every record written;
* key response: from a key press (switching tabs, every 0.4 s) to the refresh that shows the
  new tab, while the records keep arriving and the diagnosis re-runs in its thread.

A (1,000-step trace) and B (100,000-step trace) run interleaved, A B A B, in one process; the
ratio B/A shows whether the cost grows with the length of the trace. Goals (issue 19), at 100,000
steps: a new record on screen within 250 ms and a key answered within 100 ms, both at the 95th
percentile. Run it with ``nice`` on a shared machine and read the load average it prints: the UI
thread's CPU per key is the figure other work moves least.

    .venv/bin/python benchmarks/tui_latency.py [--seconds 12] [--steps 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diag.trace import Step, TraceWriter, encode_record, load_trace  # noqa: E402
from diag.trace.reader import read_records  # noqa: E402
from diag.tui.app import DiagApp  # noqa: E402
from tests.tui_traces import write_run  # noqa: E402

RATE = 50.0
CPU_PER_KEY: list[float] = []
TABS = ("2", "3", "4", "1")


def build_trace(path: Path, steps: int, template: list[Step], header_lines: bytes) -> None:
    """``steps`` real step records (a real run's, repeated with increasing step numbers)."""
    with open(path, "wb") as f:
        f.write(header_lines)
        chunk = []
        for i in range(steps):
            record = template[i % len(template)]
            chunk.append(encode_record(record.model_copy(update={"step": i, "time": 1.7e9 + i * 0.02})))
            if len(chunk) == 5000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))


class StreamingWriter(threading.Thread):
    """Appends step records at ``rate`` per second; remembers when each was flushed."""

    def __init__(self, path: Path, first_step: int, template: list[Step], rate: float):
        super().__init__(daemon=True)
        self.path, self.first_step, self.template, self.rate = path, first_step, template, rate
        self.flushed: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with TraceWriter(self.path, flush_every=1) as writer:
            i = 0
            start = time.monotonic()
            while not self.stop.is_set():
                step = self.first_step + i
                record = self.template[i % len(self.template)].model_copy(update={"step": step, "time": time.time()})
                writer.write(record)
                self.flushed[step] = time.monotonic()
                i += 1
                time.sleep(max(0.0, start + i / self.rate - time.monotonic()))


class ProbedApp(DiagApp):
    """The TUI, noting when each trace snapshot has been painted."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shown: list[tuple[int, float]] = []  # (last step on screen, refresh time)

    def on_trace_updated(self, message) -> None:
        super().on_trace_updated(message)
        last = self.trace.last_step
        self.call_after_refresh(lambda: self.shown.append((last, time.monotonic())))


async def measure(path: Path, steps: int, template: list[Step], seconds: float, interval: float = 0.1) -> dict:
    app = ProbedApp(path, follow=True, poll_interval=interval)
    shown = app.shown
    keys: list[float] = []
    opened = time.monotonic()
    async with app.run_test(size=(80, 24)) as pilot:
        while app.trace.num_steps < steps:
            await pilot.pause(0.02)
        open_seconds = time.monotonic() - opened
        while not app.settled:  # the first diagnosis (and the knowledge base load) has finished
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        idle_keys = [await press_tab(app, i) for i in range(8)]  # nothing arriving: the baseline
        writer = StreamingWriter(path, steps, template, RATE)
        writer.start()
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            await asyncio.sleep(0.4)
            keys.append(await press_tab(app, i))
            i += 1
        writer.stop.set()
        writer.join()
        await pilot.pause(1.0)
    latencies = []
    for step, flushed in writer.flushed.items():
        seen = next((t for last, t in shown if last is not None and last >= step and t >= flushed), None)
        if seen is not None:
            latencies.append(seen - flushed)
    missing = len(writer.flushed) - len(latencies)
    return {"open": open_seconds, "latency": latencies, "keys": keys, "idle_keys": idle_keys,
            "written": len(writer.flushed), "missing": missing}


async def press_tab(app, i: int) -> float:
    """Seconds from a key press (switch to the next tab) to the paint that shows the new tab.

    The key goes through the app's own event queue, like a real key press; Pilot.press would also
    wait for the tab underline animation, which is not what a user waits for.
    """
    key = TABS[i % len(TABS)]
    target = ("metrics", "layers", "rules", "overview")[TABS.index(key)]
    refreshed = asyncio.Event()
    t0, c0 = time.monotonic(), time.thread_time()
    app.simulate_key(key)
    while app.main.query_one("#tabs").active != target:
        await asyncio.sleep(0.001)
    app.call_after_refresh(refreshed.set)
    await refreshed.wait()
    # The UI thread's own CPU time over the same interval: what the answer costs on a machine
    # that is not shared (this one may run other work on its cores).
    CPU_PER_KEY.append(time.thread_time() - c0)
    return time.monotonic() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the long trace (B)")
    parser.add_argument("--short", type=int, default=1_000, help="steps of the short trace (A)")
    parser.add_argument("--seconds", type=float, default=12.0, help="streaming time per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.1, help="the TUI's poll interval (diag tui --interval)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="diag-tui-bench-"))
    real = write_run(folder / "real.jsonl", lr=0.05, steps=500, eval_every=0, run_id="bench")
    records = read_records(real).records
    template = [r for r in records if isinstance(r, Step)]
    header = encode_record(records[0])
    print(f"load average at the start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    results: dict[str, list[dict]] = {"A": [], "B": []}
    sizes = {"A": args.short, "B": args.steps}
    for round_ in range(args.rounds):
        for name in ("A", "B"):
            path = folder / f"{name}{round_}.jsonl"
            build_trace(path, sizes[name], template, header)
            size_mb = path.stat().st_size / 1e6
            t = time.perf_counter()
            load_trace(path)
            load_s = time.perf_counter() - t
            CPU_PER_KEY.clear()
            result = asyncio.run(measure(path, sizes[name], template, args.seconds, args.interval))
            result.update(size_mb=size_mb, load=load_s, key_cpu=list(CPU_PER_KEY))
            results[name].append(result)
            print(f"round {round_} {name}: {sizes[name]:>7} steps ({size_mb:.0f} MB; load_trace {load_s:.2f} s; "
                  f"TUI open {result['open']:.2f} s) latency p50 {pct(result['latency'], .5) * 1e3:.0f} ms "
                  f"p95 {pct(result['latency'], .95) * 1e3:.0f} ms max {max(result['latency']) * 1e3:.0f} ms; "
                  f"keys p50 {pct(result['keys'], .5) * 1e3:.0f} ms p95 {pct(result['keys'], .95) * 1e3:.0f} ms "
                  f"max {max(result['keys']) * 1e3:.0f} ms (idle p50 {pct(result['idle_keys'], .5) * 1e3:.0f} ms); "
                  f"{result['written']} written, "
                  f"{result['missing']} never seen", flush=True)

    def pooled(name, key):
        return [v for r in results[name] for v in r[key]]

    print(f"\nsummary (pooled over rounds; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for name in ("A", "B"):
        lat, keys = pooled(name, "latency"), pooled(name, "keys")
        print(f"  {name} {sizes[name]:>7} steps: write-to-screen p50 {pct(lat, .5) * 1e3:.0f} ms, "
              f"p95 {pct(lat, .95) * 1e3:.0f} ms; key response p50 {pct(keys, .5) * 1e3:.0f} ms, "
              f"p95 {pct(keys, .95) * 1e3:.0f} ms (no records arriving: p50 "
              f"{pct(pooled(name, 'idle_keys'), .5) * 1e3:.0f} ms); UI-thread CPU per key p50 "
              f"{pct(pooled(name, 'key_cpu'), .5) * 1e3:.0f} ms, p95 {pct(pooled(name, 'key_cpu'), .95) * 1e3:.0f} ms; open {statistics.mean(r['open'] for r in results[name]):.2f} s")
    for label, key, q in (("latency p50", "latency", .5), ("latency p95", "latency", .95),
                          ("key p50", "keys", .5), ("key p95", "keys", .95)):
        a, b = pct(pooled("A", key), q), pct(pooled("B", key), q)
        print(f"  ratio B/A {label}: {b / a:.2f}")
    lat_b, keys_b = pooled("B", "latency"), pooled("B", "keys")
    print(f"\ngoals at {sizes['B']} steps: new steps visible within 250 ms: p95 {pct(lat_b, .95) * 1e3:.0f} ms "
          f"({'met' if pct(lat_b, .95) <= 0.25 else 'missed'}); keys within 100 ms: p95 "
          f"{pct(keys_b, .95) * 1e3:.0f} ms ({'met' if pct(keys_b, .95) <= 0.1 else 'missed'})")


if __name__ == "__main__":
    main()
