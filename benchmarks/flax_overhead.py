"""Step-time overhead of the Flax recorder: A/B interleaved in one process, medians of rounds.

Variants (each with its own model and optimizer, same initialization):
  none        plain nnx.jit step: the user's loop without diag
  none-again  the same plain step again, built after the others: its ratio to ``none`` should be
              1 and shows how far this machine moves a ratio when nothing differs (always run)
  default     Recorder with the default settings (loss, lr and the global gradient norm every
              step; parameter/update norms and per-layer statistics every 25 steps)
  all-norms   the default with global_norms="all": gradient, parameter and update norms every step
  every10     per-layer statistics every 10 steps
  full        every statistic every step (every=1)
  full-dev    every statistic every step, computed on the device but never fetched or written
              (separates device compute from host transfer and writing)

Each round runs every variant, in a fresh random order, for --block steps back to back and times
it (the block ends by waiting for the device); each variant's step time over the plain step's in
the same round is a ratio, and the median of the rounds' ratios is printed, for wall time and for
the process's CPU time (all its threads). On a machine shared with
other work the wall time is noisy (use enough rounds); the CPU time of the process is the steadier
measure of the work the recorder adds.

Run:  python benchmarks/flax_overhead.py [--rounds 15] [--block 20] [--models mlp cnn] [--variants default]
                                        [--breakdown]

--breakdown replaces the recorder variants by plain steps that add one group of reductions each
(per-layer gradient, parameter or update sums of squares; activation sums; input batch; the global
gradient sum of squares alone, +gnorm, or with the parameter and update ones, +gnorms3), to show
where the cost of "everything every step" goes and what the global norms cost without the rest of
the recorder. With --variants, only those (e.g. --breakdown --variants +gnorm +gnorms3).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bench_results import publish
from diag.adapters.flax import Recorder


class MLP(nnx.Module):
    def __init__(self, rngs, width=512, classes=10):
        self.layers = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(3)])
        self.head = nnx.Linear(width, classes, rngs=rngs)

    def __call__(self, x):
        for lin in self.layers:
            x = nnx.relu(lin(x))
        return self.head(x)


class CNN(nnx.Module):
    def __init__(self, rngs, classes=10):
        self.c1 = nnx.Conv(3, 16, (3, 3), rngs=rngs)
        self.c2 = nnx.Conv(16, 32, (3, 3), rngs=rngs)
        self.fc = nnx.Linear(8 * 8 * 32, 128, rngs=rngs)
        self.head = nnx.Linear(128, classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.c1(x)), (2, 2), (2, 2))
        x = nnx.max_pool(nnx.relu(self.c2(x)), (2, 2), (2, 2))
        return self.head(nnx.relu(self.fc(x.reshape(x.shape[0], -1))))


def ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_plain(model_cls):
    model = model_cls(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: ce(m(x), y))(model)
        opt.update(model, grads)
        return loss

    return lambda i, x, y: step(model, opt, x, y), None


def make_recorded(model_cls, every, fetch=True, global_norms="grad"):
    model = model_cls(nnx.Rngs(0))
    path = os.path.join(tempfile.mkdtemp(), "bench.jsonl")
    rec = Recorder(path, model, task="classification", num_classes=10, every=every, handle_signals=False,
                   global_norms=global_norms)
    opt = nnx.Optimizer(model, rec.wrap(optax.adam(1e-4)), wrt=nnx.Param)

    @rec.jit
    def step(model, opt, x, y):
        loss, grads = rec.value_and_grad(lambda m: ce(m(x), y))(model)
        opt.update(model, grads)
        return rec.stats(opt, loss, batch=x, labels=y)

    def run(i, x, y):
        out = step(model, opt, x, y)
        if fetch:
            rec.record(i, out)
        return out

    return run, rec


def make_partial(model_cls, parts):
    """A plain nnx.jit step plus only some of the recorder's reductions (for --breakdown)."""
    from diag.adapters.flax.forward import captured_outputs
    from diag.adapters.flax.stats import activation_block, sumsq_by_layer
    from diag.adapters.flax.transform import applied_change

    model = model_cls(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(m):
            if "acts" in parts:
                logits, inter = nnx.capture(m, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
            else:
                logits, inter = m(x), None
            return ce(logits, y), inter

        (loss, inter), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        params = nnx.as_pure(nnx.state(model, nnx.Param))
        updates = opt.update(model, grads)
        out = [loss[None]]
        if "grads" in parts:
            out.append(sumsq_by_layer(nnx.as_pure(grads)))
        if "params" in parts:
            out.append(sumsq_by_layer(params))
        if "updates" in parts:  # the update as the recorder measures it: the change it made
            out.append(sumsq_by_layer(applied_change(params, updates)))
        if "acts" in parts:
            outs = [z for _, z, _ in captured_outputs(inter)]
            out.append(activation_block(outs, ["relu"] * len(outs)).reshape(-1))
        if "batch" in parts:
            from diag.adapters.flax.stats import batch_block
            out.append(batch_block(x))
        if "gnorm" in parts or "gnorms3" in parts:  # the global sums of squares a default step adds
            from diag.adapters.flax.stats import global_sumsq_triple
            which = ("grad",) if "gnorm" in parts else ("grad", "param", "update")
            change = updates if "gnorm" in parts else applied_change(params, updates)
            out.append(global_sumsq_triple(nnx.as_pure(grads), params, change, which))
        return jnp.concatenate(out)

    return lambda i, x, y: step(model, opt, x, y), None


def bench(name, model_cls, x, y, rounds, block, breakdown=False, only=None):
    # Only the variants that run are built: a recorder left unused would keep its model, its open
    # trace and its two threads (writer, idle drain) alive through the measurement.
    builders = {
        "none": lambda: make_plain(model_cls),
        "default": lambda: make_recorded(model_cls, every=25),
        "all-norms": lambda: make_recorded(model_cls, every=25, global_norms="all"),
        "every10": lambda: make_recorded(model_cls, every=10),
        "full": lambda: make_recorded(model_cls, every=1),
        "full-dev": lambda: make_recorded(model_cls, every=1, fetch=False),
    }
    if breakdown:  # each reduction alone, on the device, every step
        builders = {"none": builders["none"], "full-dev": builders["full-dev"]}
        for parts in (("grads",), ("params",), ("updates",), ("acts",), ("batch",), ("gnorm",), ("gnorms3",)):
            builders["+" + parts[0]] = lambda parts=parts: make_partial(model_cls, parts)
    if only:
        builders = {k: v for k, v in builders.items() if k == "none" or k in only}
    # Built last: a later model's buffers land elsewhere in memory, as the recorded variants' do.
    builders["none-again"] = builders["none"]
    variants = {k: build() for k, build in builders.items()}
    counters = {k: 0 for k in variants}
    for k, (fn, _) in variants.items():  # compile and warm up (both variants of rec.jit)
        for _ in range(30):
            out = fn(counters[k], x, y)
            counters[k] += 1
        np.asarray(out)
    times = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    # A fresh order each round: in a fixed one, each variant ran after the same other, and found
    # the heap (and XLA's temporary memory, faulted in again when malloc has returned it to the
    # system) in the state that one left: a bias of a few percent either way, always the same way.
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        order = list(variants)
        shuffle(order)
        for k in order:
            fn, _ = variants[k]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(block):
                out = fn(counters[k], x, y)
                counters[k] += 1
            np.asarray(out)
            times[k].append((time.perf_counter() - t0) / block)
            cpu[k].append((time.process_time() - c0) / block)
    for _, rec in variants.values():
        if rec is not None:
            rec.close()
    print(f"  load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    base, cbase = np.median(times["none"]), np.median(cpu["none"])
    print(f"\n{name}: medians over {rounds} rounds of {block} steps "
          f"(baseline {base * 1e3:.2f} ms wall, {cbase * 1e3:.2f} ms CPU per step); each ratio is the median "
          "of the rounds' ratios (a variant over the plain step of the same round, so slow drifts cancel)")
    print(f"  {'variant':9s} {'wall ms':>8s} {'ratio':>6s} {'IQR':>13s}   {'CPU ms':>7s} {'ratio':>6s} {'IQR':>13s}")
    ratios = {}  # variant -> (wall ratio, CPU ratio)
    for k in variants:
        wall = np.array(times[k]) / np.array(times["none"])
        spent = np.array(cpu[k]) / np.array(cpu["none"])
        (w1, w2, w3), (c1, c2, c3) = np.percentile(wall, [25, 50, 75]), np.percentile(spent, [25, 50, 75])
        print(f"  {k:9s} {np.median(times[k]) * 1e3:8.2f} {w2:6.3f} {w1:6.3f}-{w3:.3f}   "
              f"{np.median(cpu[k]) * 1e3:7.2f} {c2:6.3f} {c1:6.3f}-{c3:.3f}")
        if k != "none":
            ratios[k] = (float(w2), float(c2))
    aa_wall, aa_cpu = ratios["none-again"]
    print(f"  the plain step against itself (none-again) reads {aa_wall:.3f}x wall, {aa_cpu:.3f}x CPU: "
          "a difference of that size between the other ratios and 1 is within this run's resolution")
    return ratios


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--block", type=int, default=20)
    p.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    p.add_argument("--breakdown", action="store_true",
                   help="profile: the cost of each group of statistics alone (where the time goes)")
    p.add_argument("--variants", nargs="+", default=None,
                   help="only these variants (and the baseline 'none'), e.g. --variants default")
    args = p.parse_args()
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    key = jax.random.key(0)
    ratios = {}  # model -> variant -> (wall ratio, CPU ratio)
    if "mlp" in args.models:
        x = jax.random.normal(key, (256, 512))
        y = jax.random.randint(key, (256,), 0, 10)
        ratios["mlp"] = bench("MLP 4x512, batch 256", MLP, x, y, args.rounds, args.block, args.breakdown, args.variants)
    if "cnn" in args.models:
        x = jax.random.normal(key, (128, 32, 32, 3))
        y = jax.random.randint(key, (128,), 0, 10)
        ratios["cnn"] = bench("CNN 32x32x3, batch 128", CNN, x, y, args.rounds, args.block, args.breakdown, args.variants)
    if not args.breakdown:
        publish("flax_overhead", **{f"{model}_{variant}_{clock}": ratio
                                    for model, by_variant in ratios.items()
                                    for variant, pair in by_variant.items()
                                    for clock, ratio in zip(("wall", "cpu"), pair)})


if __name__ == "__main__":
    main()
