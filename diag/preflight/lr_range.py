"""lr_range: a short log-scale sweep of the learning rate around the configured one.

An LR range test (Smith 2017, "Cyclical learning rates for training neural networks"; the log
scan of seed 003) trains briefly at learning rates spaced by factors of 10 and reads where the loss
falls fastest and where it diverges. Each rate starts from the same copy, so the runs compare.
The configured rate past the divergence point is ``lr_too_high``; a configured rate that moves
nothing while rates 100x higher learn well is ``lr_too_low``.

The sweep multiplies the configured rate: PyTorch sets each parameter group's ``lr``; for an
optax transformation the updates are scaled, which is the same for every optimizer whose last
step multiplies by the learning rate (all of optax's).
"""

from __future__ import annotations

import math

import numpy as np

from diag.preflight.findings import Finding
from diag.preflight.runner import ProbeContext, ProbeResult, fmt

NAME = "lr_range"
CHECKS = ("lr_too_high", "lr_too_low")
WEIGHT = 0.3
FACTORS = (1e-2, 1e-1, 1.0, 1e1, 1e2)  # times the configured learning rate
STEPS = 12
BATCHES = 4
DIVERGED = 1.5  # final loss above this share of the start: diverged
STALLED = 0.98  # final loss above this share of the start: no progress


def run(ctx: ProbeContext) -> ProbeResult:
    batches = ctx.train[:BATCHES]
    results: dict[float, float] = {}  # factor -> final loss / start loss
    start = None
    stopped = False
    for factor in sorted(FACTORS, key=lambda f: (f != 1.0, f)):  # the configured rate first
        if ctx.deadline.expired:
            stopped = True
            break
        session = ctx.runner.session()
        if start is None:
            start = float(np.mean([session.loss(b) for b in batches]))
        for k in range(STEPS):
            loss = session.step(batches[k % len(batches)], lr_factor=factor)
            if not math.isfinite(loss):
                break
            if ctx.deadline.expired:  # a large model: keep the rates measured in full, drop this one
                break
        if ctx.deadline.expired and math.isfinite(loss) and k < STEPS - 1:
            stopped = True
            break
        end = float(np.mean([session.loss(b) for b in batches]))
        results[factor] = end / start if math.isfinite(end) and start > 0 else float("inf")
    lr = ctx.configured_lr

    def rate(f: float) -> str:
        return f"{fmt(f * lr)} ({fmt(f)}x)" if lr else f"{fmt(f)}x the configured rate"

    done = sorted(results)
    diverged = [f for f in done if results[f] > DIVERGED]
    finite = {f: r for f, r in results.items() if math.isfinite(r)}
    fastest = min(finite, key=finite.get) if finite else None
    parts = [f"loss after {STEPS} steps as a share of the start: "
             + ", ".join(f"{fmt(f)}x {fmt(results[f]) if math.isfinite(results[f]) else 'diverged'}" for f in done)]
    if fastest is not None:
        parts.append(f"falls fastest at {rate(fastest)}")
    if diverged:
        parts.append(f"diverges from {rate(diverged[0])}")
    summary = "; ".join(parts)
    findings = []
    configured = results.get(1.0)
    if configured is not None:
        smaller_ok = [f for f in done if f < 1.0 and results[f] < 0.9]
        if configured > DIVERGED or (configured > STALLED and smaller_ok):
            best_small = min(smaller_ok, key=results.get) if smaller_ok else None
            what = "diverged" if configured > DIVERGED else "did not fall"
            evidence = (f"At the configured learning rate{' ' + fmt(lr) if lr else ''} the loss {what} in {STEPS} steps "
                        f"(end/start {fmt(configured) if math.isfinite(configured) else 'non-finite'})")
            if best_small is not None:
                evidence += f", while at {rate(best_small)} it fell to {fmt(results[best_small])} of the start"
            findings.append(Finding(
                "lr_too_high", 0.85 if configured > DIVERGED and smaller_ok else 0.65 if smaller_ok else 0.5,
                [evidence + "."],
                [f"Lower the learning rate to about {rate(best_small)}." if best_small is not None else "Lower the learning rate by 10x or more.",
                 "Add warmup, or clip gradients by global norm."],
                probe=NAME, series=["loss", "lr"]))
        elif configured > 0.99:  # 12 steps judge a slow rate poorly: only a rate that moves nothing
            better = [f for f in done if f >= 100 and results[f] < 0.75]
            if better:
                findings.append(Finding(
                    "lr_too_low", 0.4,
                    [f"At the configured learning rate{' ' + fmt(lr) if lr else ''} the loss moved by less than 1% in "
                     f"{STEPS} steps, while at {rate(better[0])} it fell to {fmt(results[better[0]])} of the start."],
                    [f"Raise the learning rate toward {rate(better[0])}, or run an LR finder."],
                    probe=NAME, series=["loss", "lr"]))
    return ProbeResult(NAME, findings, summary=summary, status="stopped" if stopped and not findings else
                       ("findings" if findings else "ok"))
