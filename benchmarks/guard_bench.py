"""Guard benchmark: does it stop doomed runs early and never a healthy one, and what do the
framework callbacks cost per step beside the PyTorch bridge?

Part 1 (stops): real small fits (tests/guard_runs.py: a 3-layer MLP on a generated 4-class
problem), healthy and doomed, with the default guard (``guard=True``):

* plain PyTorch loop (TorchRecorder): every fault, ``--seeds`` seeds (initialization, batch order);
* Lightning, Hugging Face Trainer, Keras 3 (JAX backend): every fault, one seed.

Faults: ``healthy``; ``lr_too_high`` (SGD at lr 50: the fault is there from step 0, so the onset is
step 0); ``nan_data`` (every batch from step 100 holds NaN: onset 100). Printed: each run's stop
step and cause, the number of healthy runs stopped (must be 0) and the median stop delay (stop
step minus onset) over the doomed runs (the goal: within 20 steps).

Part 2 (overhead): per-step wall time, median of the step intervals after a warm-up, A/B
interleaved in one process over ``--rounds`` rounds of ``--steps`` healthy steps (and, beside it,
the mean CPU time per step of this process, which counts the guard's periodic diagnoses and is not
inflated by other processes on a shared machine): each
framework's fit without diag against the same fit with its DiagCallback (guard on); the plain
loop without diag against TorchRecorder (the bridge) and TorchRecorder with the guard. Ratios
print; the machine's load average is printed with them.

    .venv/bin/python benchmarks/guard_bench.py                      # everything
    .venv/bin/python benchmarks/guard_bench.py --part stops --frameworks torch --seeds 5
    .venv/bin/python benchmarks/guard_bench.py --part overhead --rounds 3 --steps 150
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/guard_runs.py
os.environ.setdefault("KERAS_BACKEND", "jax")
warnings.filterwarnings("ignore")

from diag import TrainingDoomed, load_trace  # noqa: E402
from diag.guard import guard_notes  # noqa: E402
from tests import guard_runs  # noqa: E402

ONSET = {"lr_too_high": 0, "nan_data": guard_runs.NAN_ONSET}
FRAMEWORKS = ("torch", "lightning", "huggingface", "keras")


def _quietly(fn, *args, **kwargs):
    """Run a fit with the frameworks' own chatter (progress, tips, eval dicts) kept off screen."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def run_once(framework: str, fault: str, path: Path, seed: int = 0) -> tuple[int | None, str | None, int]:
    """One guarded fit: ``(stop step or None, stop cause or None, steps recorded)``."""
    path.unlink(missing_ok=True)
    steps = 200
    if framework == "torch":
        try:
            _quietly(guard_runs.fit_torch, path, fault, steps, seed=seed)
        except TrainingDoomed:
            pass
    else:
        fit = {"lightning": guard_runs.fit_lightning, "huggingface": guard_runs.fit_huggingface,
               "keras": guard_runs.fit_keras}[framework]
        _quietly(fit, path, fault, steps)
    trace = load_trace(path)
    notes = [e for e in trace.events if getattr(e, "event", None) == "note" and e.message in guard_notes(trace.events)]
    if not notes:
        return None, None, trace.num_steps
    reason = notes[0].message
    cause = reason.split(": ", 2)[2].split(" (")[0]
    return notes[0].step, cause, trace.num_steps


def part_stops(frameworks, seeds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="guard_bench_"))
    delays, healthy_stops, doomed_missed = [], 0, 0
    print(f"{'framework':<12} {'fault':<12} {'seed':>4} {'steps':>5} {'stop':>5} {'delay':>5}  cause")
    for framework in frameworks:
        for seed in range(seeds if framework == "torch" else 1):
            for fault in guard_runs.FAULTS:
                stop, cause, steps = run_once(framework, fault, folder / f"{framework}_{fault}_{seed}.jsonl", seed)
                delay = None if stop is None or fault == "healthy" else stop - ONSET[fault]
                if fault == "healthy":
                    healthy_stops += stop is not None
                elif stop is None:
                    doomed_missed += 1
                else:
                    delays.append(delay)
                print(f"{framework:<12} {fault:<12} {seed:>4} {steps:>5} {stop if stop is not None else '-':>5} "
                      f"{delay if delay is not None else '-':>5}  {cause or '-'}", flush=True)
    print(f"\nhealthy runs stopped: {healthy_stops}; doomed runs not stopped: {doomed_missed}; "
          f"median stop delay over {len(delays)} doomed runs: "
          f"{statistics.median(delays) if delays else '-'} steps (max {max(delays) if delays else '-'})")


class _Clock:
    """Collects the wall time and this process's CPU time at the end of each step."""

    def __init__(self):
        self.times: list[float] = []
        self.cpu: list[float] = []

    def tick(self, *args, **kwargs) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def step_time(self, warmup: int = 10) -> tuple[float, float]:
        """(median wall time between steps, mean CPU time per step), after ``warmup`` steps.

        The mean CPU time counts the guard's diagnoses (one step in 50 pays for one) and the
        background writer's thread, which a median step skips, and other processes on a shared
        machine do not inflate it.
        """
        gaps = [b - a for a, b in zip(self.times[warmup:], self.times[warmup + 1:])]
        cpu = (self.cpu[-1] - self.cpu[warmup]) / max(1, len(self.cpu) - warmup - 1)
        return statistics.median(gaps), cpu


def _clock_callback(framework: str, clock: _Clock):
    if framework == "lightning":
        import lightning.pytorch as pl

        class Timing(pl.Callback):
            def on_train_batch_end(self, *args, **kwargs):
                clock.tick()
        return Timing()
    if framework == "huggingface":
        from transformers import TrainerCallback

        class Timing(TrainerCallback):
            def on_step_end(self, *args, **kwargs):
                clock.tick()
        return Timing()
    import keras

    class Timing(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock.tick()
    return Timing()


def _variants(framework: str, steps: int, path: Path):
    """``{name: fit}``: the baseline first, each fit returns its median step time."""
    def plain(**options):
        def fit():
            clock = _Clock()
            path.unlink(missing_ok=True)
            _quietly(guard_runs.fit_torch, path, "healthy", steps, on_step=clock.tick, **options)
            return clock.step_time()
        return fit

    if framework == "torch":
        return {"no diag": plain(recorder=False), "bridge": plain(guard=False), "bridge+guard": plain(guard=True)}
    fit_fn = {"lightning": guard_runs.fit_lightning, "huggingface": guard_runs.fit_huggingface,
              "keras": guard_runs.fit_keras}[framework]

    def framework_fit(callback: bool):
        def fit():
            clock = _Clock()
            path.unlink(missing_ok=True)
            _quietly(fit_fn, path, "healthy", steps, callback=callback, extra_callbacks=[_clock_callback(framework, clock)])
            return clock.step_time()
        return fit

    return {"no diag": framework_fit(False), "DiagCallback+guard": framework_fit(True)}


def part_overhead(frameworks, rounds: int, steps: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="guard_overhead_"))
    print(f"load average before: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")
    for framework in frameworks:
        variants = _variants(framework, steps, folder / f"{framework}.jsonl")
        times = {name: [] for name in variants}
        for _ in range(rounds):
            for name, fit in variants.items():  # interleaved: A, B, A, B, ...
                times[name].append(fit())
        base = statistics.median(wall for wall, _ in times["no diag"])
        base_cpu = statistics.median(cpu for _, cpu in times["no diag"])
        for name, values in times.items():
            med = statistics.median(wall for wall, _ in values)
            cpu = statistics.median(c for _, c in values)
            print(f"{framework:<12} {name:<20} {med * 1e3:8.2f} ms/step  x{med / base:5.2f}   "
                  f"CPU {cpu * 1e3:8.2f} ms/step  x{cpu / base_cpu:5.2f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("stops", "overhead", "all"), default="all")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the plain PyTorch loop (stops)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (overhead)")
    parser.add_argument("--steps", type=int, default=150, help="healthy steps per timed fit (overhead)")
    args = parser.parse_args()
    if args.part in ("stops", "all"):
        part_stops(args.frameworks, args.seeds)
    if args.part in ("overhead", "all"):
        part_overhead(args.frameworks, args.rounds, args.steps)


if __name__ == "__main__":
    main()
