"""seed_repeat: two short runs with the same seed must give the same losses.

Every global generator (the framework's, numpy's, Python's) is seeded the same way before each
run, and generators found on the data pipeline are put back to their state at the start; what still
differs comes from a source no seed controls, which the probe names: the data order (a generator
created without a seed), a random layer with its own unseeded generator, or non-deterministic
kernels (cuDNN autotuning, atomic adds).
"""

from __future__ import annotations

import hashlib

import numpy as np

from diag.preflight.findings import Finding
from diag.preflight.runner import ProbeContext, ProbeResult, fmt, leaves, take

NAME = "seed_repeat"
CHECKS = ("nondeterminism",)
WEIGHT = 0.15
BATCHES = 4
STEPS = 8
SEED = 0


def fingerprint(runner, batch) -> str:
    inputs, targets = runner.to_numpy(batch)
    digest = hashlib.blake2b(digest_size=12)
    for array in [*leaves(inputs), targets]:
        a = np.ascontiguousarray(np.asarray(array))
        digest.update(str(a.shape).encode() + a.tobytes())
    return digest.hexdigest()


def _losses(ctx: ProbeContext, batches: list) -> list[float]:
    with ctx.runner.seeded(SEED):
        session = ctx.runner.session()
        return [session.step(batches[k % len(batches)]) for k in range(STEPS)]


def run(ctx: ProbeContext) -> ProbeResult:
    runner = ctx.runner
    findings = []
    notes = []
    passes = []
    for _ in range(2):
        with runner.seeded(SEED):
            it = runner.fresh_pass(ctx.train_batches)
            passes.append(take(it, BATCHES) if it is not None else None)
    if passes[0] is None:
        notes.append("train_batches is a one-shot iterator: data order not compared")
        batches = ctx.train[:BATCHES]
    else:
        first, second = ([fingerprint(runner, b) for b in p] for p in passes)
        differ = next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), None)
        if differ is not None or len(first) != len(second):
            findings.append(Finding(
                "nondeterminism", 0.85,
                [f"Two passes over train_batches under the same seed gave different batches (first at batch {differ}): "
                 "the data order comes from a generator that no seed controls."],
                ["Seed the generator that shuffles: np.random.default_rng(seed) created once, or "
                 "DataLoader(..., generator=torch.Generator().manual_seed(seed))."],
                probe=NAME, series=["train_batches"]))
        batches = passes[0]
    if ctx.deadline.expired:
        return ProbeResult(NAME, findings, summary="; ".join(notes + ["stopped at the budget before the training runs"]),
                           status="findings" if findings else "stopped")
    a, b = _losses(ctx, batches), _losses(ctx, batches)
    if not np.allclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True):
        k = next(i for i, (x, y) in enumerate(zip(a, b)) if not np.isclose(x, y, rtol=1e-5, atol=1e-7, equal_nan=True))
        with runner.seeded(SEED):
            o1 = runner.session().outputs(batches[0])
        with runner.seeded(SEED):
            o2 = runner.session().outputs(batches[0])
        if not np.allclose(o1, o2, rtol=1e-5, atol=1e-7, equal_nan=True):
            source = ("the model's forward pass is random under a fixed global seed: a dropout or other random "
                      "layer draws from a generator of its own")
            fix = "Seed the model's own generators (nnx.Rngs(seed), torch.Generator().manual_seed(seed))."
        else:
            settings = runner.determinism_notes()
            source = "the same batches and the same forward pass give different updates: non-deterministic kernels" + (
                f" ({'; '.join(settings)})" if settings else "")
            fix = "Turn on deterministic algorithms (torch.use_deterministic_algorithms(True), cudnn.benchmark = False)."
        findings.append(Finding(
            "nondeterminism", 0.8,
            [f"Two runs of {STEPS} steps from the same seed on the same batches differ from step {k} "
             f"({fmt(a[k])} vs {fmt(b[k])}): {source}."],
            [fix], probe=NAME, series=["loss"]))
    else:
        notes.append(f"two seeded runs of {STEPS} steps agree (last loss {fmt(a[-1])})")
    if passes[0] is not None and not any(f.series == ["train_batches"] for f in findings):
        notes.insert(0, "two seeded passes give the same batches")
    return ProbeResult(NAME, findings, summary="; ".join(notes))
