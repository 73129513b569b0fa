"""How fast does ``diag tui --follow`` show new steps, and answer keys, on a long run?

A trace of N steps is open in the TUI (80x24) while a writer thread appends step records at 50 per
second, flushing each one, as a training loop with a TraceWriter would. The TUI runs as in a
terminal, except that the terminal is a null one: every frame is rendered to the escape codes a
terminal would receive (Textual's headless mode skips that step), then dropped. Measured:

* write-to-screen latency: from a record's flush to the first frame that shows it (the status
  line's step count), for every record written;
* key response: from a key press (switching tabs, every 0.4 s) to the first frame that shows the
  whole effect of the key: the new tab's content drawn from the latest data, its tab highlighted
  and underlined, its table or list focused (the cursor drawn as focused) and the key bar listing
  its keys. The first frame that shows the new tab at all is printed beside it. Both while the
  records keep arriving and the diagnosis re-runs in its thread.

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

from textual.drivers.headless_driver import HeadlessDriver
from textual.widgets.tabbed_content import ContentTabs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diag.trace import Step, TraceWriter, encode_record, load_trace  # noqa: E402
from diag.trace.reader import read_records  # noqa: E402
from diag.tui.app import DiagApp  # noqa: E402
from diag.tui.widgets.key_bar import KeyBar  # noqa: E402
from tests.tui_screen import key_bar_text  # noqa: E402
from tests.tui_traces import write_run  # noqa: E402
from bench_results import publish  # noqa: E402

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


class NullTerminal(HeadlessDriver):
    """A terminal that receives every frame's escape codes and drops them.

    Textual's headless driver makes the app skip turning frames into terminal output; a real
    terminal does not, and a user waits for that too.
    """

    @property
    def is_headless(self) -> bool:
        return False

    def write(self, data: str) -> None:
        pass

    def flush(self) -> None:
        pass


class ProbedApp(DiagApp):
    """The TUI, noting when each trace snapshot and each key's effect reach a frame."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.driver_class = NullTerminal
        self.shown: list[tuple[int, float]] = []  # (last step on screen, frame time)
        self._unshown_step: int | None = None
        self.key_target: str | None = None  # the tab a pending key press switches to
        self.key_first_frame: float | None = None
        self.key_done = asyncio.Event()
        self.key_done_at: tuple[float, float] | None = None  # (monotonic, UI thread CPU) of that frame

    def on_trace_updated(self, message) -> None:
        super().on_trace_updated(message)
        self._unshown_step = self.trace.last_step

    def post_display_hook(self) -> None:
        """Called by Textual after each frame has been sent to the terminal."""
        now = time.monotonic()
        if self._unshown_step is not None:
            self.shown.append((self._unshown_step, now))
            self._unshown_step = None
        if self.key_target is not None and self.key_target_on_screen():
            if self.key_first_frame is None:
                self.key_first_frame = now
            if key_effect_complete(self, self.key_target):
                self.key_target = None
                self.key_done_at = (now, time.thread_time())  # what runs after the frame is not the key's
                self.key_done.set()

    def key_target_on_screen(self) -> bool:
        main = self.main
        return (self.screen is main and main._tabs.active == self.key_target
                and main._panes[self.key_target] in main._compositor.visible_widgets)


def key_effect_complete(app: DiagApp, tab: str) -> bool:
    """Does the frame just sent show everything a switch to ``tab`` changes?"""
    main = app.main
    pane = main._panes[tab]
    focused = main.focused
    if pane.pending or focused is None or not focused.has_focus or focused is not pane.query_one(pane.MAIN_WIDGET):
        return False
    content_tabs = main._tabs.query_one(ContentTabs)
    active_tab = content_tabs.active_tab
    underline = content_tabs.query_one("Underline")
    span = active_tab.virtual_region.shrink(active_tab.styles.gutter).column_span
    if (underline.highlight_start, underline.highlight_end) != span:
        return False
    return main.query_one(KeyBar)._diag_shown.plain == key_bar_text(app, main)


async def measure(path: Path, steps: int, template: list[Step], seconds: float, interval: float = 0.1) -> dict:
    app = ProbedApp(path, follow=True, poll_interval=interval)
    shown = app.shown
    keys: list[tuple[float, float]] = []  # (first frame with the tab, frame with the whole effect)
    opened = time.monotonic()
    async with app.run_test(size=(80, 24), headless=False) as pilot:
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
    return {"open": open_seconds, "latency": latencies, "keys": [k[1] for k in keys],
            "keys_first": [k[0] for k in keys], "idle_keys": [k[1] for k in idle_keys],
            "written": len(writer.flushed), "missing": missing}


async def press_tab(app: ProbedApp, i: int) -> tuple[float, float]:
    """Seconds from a key press (switch to the next tab) to the first frame showing the new tab, and
    to the first frame showing the whole effect of the key (see ``key_effect_complete``).

    The key goes through the app's own event queue, like a key a terminal sends.
    """
    key = TABS[i % len(TABS)]
    app.key_target = ("metrics", "layers", "rules", "overview")[TABS.index(key)]
    app.key_first_frame = None
    app.key_done.clear()
    t0, c0 = time.monotonic(), time.thread_time()
    app.simulate_key(key)
    await asyncio.wait_for(app.key_done.wait(), timeout=10)
    done, cpu = app.key_done_at
    # The UI thread's own CPU time over the same interval: what the answer costs on a machine
    # that is not shared (this one may run other work on its cores).
    CPU_PER_KEY.append(cpu - c0)
    return app.key_first_frame - t0, done - t0


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
                  f"max {max(result['keys']) * 1e3:.0f} ms (tab first on screen p95 "
                  f"{pct(result['keys_first'], .95) * 1e3:.0f} ms; idle p50 {pct(result['idle_keys'], .5) * 1e3:.0f} ms); "
                  f"{result['written']} written, "
                  f"{result['missing']} never seen", flush=True)

    def pooled(name, key):
        return [v for r in results[name] for v in r[key]]

    print(f"\nsummary (pooled over rounds; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for name in ("A", "B"):
        lat, keys = pooled(name, "latency"), pooled(name, "keys")
        print(f"  {name} {sizes[name]:>7} steps: write-to-screen p50 {pct(lat, .5) * 1e3:.0f} ms, "
              f"p95 {pct(lat, .95) * 1e3:.0f} ms; key response p50 {pct(keys, .5) * 1e3:.0f} ms, "
              f"p95 {pct(keys, .95) * 1e3:.0f} ms (first frame with the tab p50 {pct(pooled(name, 'keys_first'), .5) * 1e3:.0f}, "
              f"p95 {pct(pooled(name, 'keys_first'), .95) * 1e3:.0f} ms; no records arriving: p50 "
              f"{pct(pooled(name, 'idle_keys'), .5) * 1e3:.0f} ms); UI-thread CPU per key p50 "
              f"{pct(pooled(name, 'key_cpu'), .5) * 1e3:.0f} ms, p95 {pct(pooled(name, 'key_cpu'), .95) * 1e3:.0f} ms; open {statistics.mean(r['open'] for r in results[name]):.2f} s")
    for label, key, q in (("latency p50", "latency", .5), ("latency p95", "latency", .95),
                          ("key p50", "keys", .5), ("key p95", "keys", .95)):
        a, b = pct(pooled("A", key), q), pct(pooled("B", key), q)
        print(f"  ratio B/A {label}: {b / a:.2f}")
    lat_b, keys_b = pooled("B", "latency"), pooled("B", "keys")
    publish("tui_latency", key_p95_ms=pct(keys_b, .95) * 1e3, record_p95_ms=pct(lat_b, .95) * 1e3,
            key_p50_ms=pct(keys_b, .5) * 1e3, record_p50_ms=pct(lat_b, .5) * 1e3)
    print(f"\ngoals at {sizes['B']} steps: new steps visible within 250 ms: p95 {pct(lat_b, .95) * 1e3:.0f} ms "
          f"({'met' if pct(lat_b, .95) <= 0.25 else 'missed'}); keys within 100 ms: p95 "
          f"{pct(keys_b, .95) * 1e3:.0f} ms ({'met' if pct(keys_b, .95) <= 0.1 else 'missed'})")


if __name__ == "__main__":
    main()
