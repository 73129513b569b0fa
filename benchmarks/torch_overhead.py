"""Step-time overhead of the PyTorch recorder, A/B interleaved in one process, on the CPU.

For an MLP (4 x 512, batch 256) and a small CNN (two conv blocks, 32x32x3, batch 64), both trained
with Adam: the variants take turns step by step (in a fresh random order for every step), each
round divides each variant's mean step time by the plain loop's mean in the same round, and the
figure is the median of those ratios over the rounds. Means, so that the one step in 25 that
records the costly statistics counts; CPU time of the process by default (``--clock process``;
torch runs on one thread), so that other work on a shared machine does not land in the figures.

Variants (each its own model and optimizer, same initial weights):
  none                     the plain training loop
  default                  TorchRecorder(...) with its defaults: cheap statistics every step,
                           costly ones (parameter norms, update ratios, activations) every 25th
  default, grad_every=5    the defaults, gradient norms every 5th step
  cheap only               costly statistics never (loss, lr, grad norms every step)
  costly every 25, no act  parameter norms and update ratios every 25th step, no activation hooks
  everything every step    costly_every=1

and, to show what each statistic costs when computed every step, the plain loop plus one of:
  grad norms (fused)       per-layer gradient norms (one fused norm call), fetched
  param norms              per-layer parameter norms, fetched
  update snapshot          fused parameter copy before the step, subtract + norms after
  activation stats         forward hooks: sum and sum of squares of each layer output, ReLU zeros
  batch stats              input mean/std/min/max/non-finite and label entropy
  record() call            a recorder with activations off and costly never, minus nothing:
                           the full cheap path including JSON encoding and the file write

Run:  .venv/bin/python benchmarks/torch_overhead.py [--rounds 10] [--steps 25] [--threads 1] [--clock process]
                                                  [--variants default "everything every step"]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bench_results import publish
from diag.adapters.torch import TorchRecorder
from diag.adapters.torch._layers import find_layers, plan_layers
from diag.adapters.torch import _foreach
from diag.adapters.torch._stats import (
    Scratch, batch_stats, grad_norms, label_stats, layer_sums, norms_vector, sign_sum, sums,
)


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10),
    )


MODELS = {
    "mlp": (mlp, lambda g: torch.randn(256, 512, generator=g), 256),
    "cnn": (cnn, lambda g: torch.randn(64, 3, 32, 32, generator=g), 64),
}


class Variant:
    """One way of running the training step, with its own model and optimizer."""

    def __init__(self, name, build, state, folder, recorder=None, extra=None):
        self.name = name
        self.model = build()
        self.model.load_state_dict(state)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.rec = None
        if recorder is not None:
            self.rec = TorchRecorder(self.model, self.opt, Path(folder) / f"{name.replace(' ', '_')}.jsonl",
                                     capture_crashes=False, task="classification", num_classes=10, **recorder)
        self.extra = extra(self) if extra else None

    def step(self, x, y):
        extra = self.extra
        self.opt.zero_grad()
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        if extra is not None:
            extra.before_step(x, y)
        self.opt.step()
        if extra is not None:
            extra.after_step()
        if self.rec is not None:
            self.rec.record(loss, labels=y)
        else:
            float(loss.detach())  # the plain loop also reads its loss once a step


class _Component:
    """Computes one statistic every step outside the recorder, to price it alone."""

    def __init__(self, variant):
        plan = plan_layers(find_layers(variant.model), None)
        self.params = plan.params
        self.layer_of = plan.param_layer
        self.L = len(plan.layers)

    def before_step(self, x, y):
        pass

    def after_step(self):
        pass


class GradNorms(_Component):
    def before_step(self, x, y):
        with torch.no_grad():
            layer_sums(grad_norms(self.params).tolist(), self.layer_of, self.L)


class ParamNorms(_Component):
    def before_step(self, x, y):
        with torch.no_grad():
            layer_sums(norms_vector(self.params).tolist(), self.layer_of, self.L)


class UpdateSnapshot(_Component):
    def before_step(self, x, y):
        with torch.no_grad():
            self.snap = _foreach.copies(self.params)

    def after_step(self):
        with torch.no_grad():
            _foreach.sub_(self.snap, self.params)
            layer_sums(norms_vector(self.snap).tolist(), self.layer_of, self.L)


class ActivationStats(_Component):
    def __init__(self, variant):
        super().__init__(variant)
        self.rows = []
        scratch = Scratch()
        for module in variant.model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.register_forward_hook(lambda m, a, out: self.rows.extend(sums(out)))
            elif isinstance(module, nn.ReLU):
                module.register_forward_hook(lambda m, a, out: self.rows.append(sign_sum(out, "relu", scratch)))

    def before_step(self, x, y):
        torch.stack(self.rows).tolist()
        self.rows.clear()


class BatchStats(_Component):
    def before_step(self, x, y):
        with torch.no_grad():
            torch.cat([batch_stats(x), label_stats(y, 10)[1]]).tolist()


def variants(build, state, folder, only=None):
    big = 10**9
    specs = [
        ("none", {}),
        ("default", {"recorder": {}}),
        ("default, grad_every=5", {"recorder": {"grad_every": 5}}),
        ("cheap only", {"recorder": {"costly_every": big, "activations": False}}),
        ("costly every 25, no act", {"recorder": {"activations": False}}),
        ("everything every step", {"recorder": {"costly_every": 1}}),
        ("+ grad norms (fused)", {"extra": GradNorms}),
        ("+ param norms", {"extra": ParamNorms}),
        ("+ update snapshot", {"extra": UpdateSnapshot}),
        ("+ activation stats", {"extra": ActivationStats}),
        ("+ batch/label stats", {"extra": BatchStats}),
    ]
    if only:
        unknown = set(only) - {name for name, _ in specs}
        if unknown:
            raise SystemExit(f"unknown variant(s): {', '.join(sorted(unknown))}")
        specs = [(name, kw) for name, kw in specs if name == "none" or name in only]
    return [Variant(name, build, state, folder, **kw) for name, kw in specs]


def bench(model_name: str, rounds: int, steps: int, clock=time.process_time, seed: int = 0,
          only=None) -> dict[str, list[float]]:
    build, make_x, batch = MODELS[model_name]
    torch.manual_seed(seed)
    state = build().state_dict()
    g = torch.Generator().manual_seed(seed)
    batches = [(make_x(g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(4)]
    ratios: dict[str, list[float]] = {}
    baseline_ms: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        vs = variants(build, state, folder, only)
        for v in vs:  # warm-up: allocator, first-forward tracing, header
            for i in range(5):
                v.step(*batches[i % 4])
        rng = random.Random(seed)
        for _ in range(rounds):
            times: dict[str, list[float]] = {v.name: [] for v in vs}
            for i in range(steps):
                # Interleaved step by step, in a fresh order each time: every variant sees the same
                # moment of a shared machine's load.
                order = vs[:]
                rng.shuffle(order)
                x, y = batches[i % 4]
                for v in order:
                    t0 = clock()
                    v.step(x, y)
                    times[v.name].append(clock() - t0)
            # Means, not medians: the steps that record the costly statistics belong in the figure.
            means = {name: statistics.fmean(ts) for name, ts in times.items()}
            base = means["none"]
            baseline_ms.append(base * 1e3)
            for name, m in means.items():
                ratios.setdefault(name, []).append(m / base)
        for v in vs:
            if v.rec is not None:
                v.rec.close()
    ratios["_baseline_ms"] = baseline_ms
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=25, help="steps per round (25: one costly step per round)")
    parser.add_argument("--clock", choices=["process", "wall"], default="process",
                        help="process: CPU time of this process (robust on a shared machine); wall: perf_counter")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: less noise on a shared box)")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--variants", nargs="+", default=None,
                        help='only these variants (and the plain loop), e.g. --variants default "everything every step"')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    clock = time.process_time if args.clock == "process" else time.perf_counter
    load = os.getloadavg()
    results = {name: bench(name, args.rounds, args.steps, clock, only=args.variants) for name in names}
    print(f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps, "
          f"{args.clock} time; median over rounds of (mean step time / plain loop's), interleaved step by step")
    head = "| variant | " + " | ".join(f"{n} step time ratio" for n in names) + " |"
    print(head)
    print("|" + "---|" * (len(names) + 1))
    for variant in [k for k in results[names[0]] if k != "_baseline_ms"]:
        cells = []
        for n in names:
            r = results[n][variant]
            q = statistics.quantiles(r, n=4) if len(r) >= 4 else [min(r), 0, max(r)]
            cells.append(f"{statistics.median(r):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})")
        print(f"| {variant} | " + " | ".join(cells) + " |")
    print("| plain step, ms | " + " | ".join(f"{statistics.median(results[n]['_baseline_ms']):.2f}" for n in names) + " |")
    short = {"default": "default", "everything every step": "everything"}  # the names figures.py reads
    publish("torch_overhead", **{f"{n}_{short.get(variant, variant)}": statistics.median(results[n][variant])
                                 for n in names for variant in results[n] if variant not in ("none", "_baseline_ms")})


if __name__ == "__main__":
    main()
