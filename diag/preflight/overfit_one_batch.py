"""overfit_one_batch: a few hundred steps on one small batch must drive the loss near zero.

Any model worth training can memorize a handful of examples. If it cannot, the fault is in the
wiring, not the data or the budget (Karpathy 2019: "overfit one batch"). When the loss does not
fall, the gradients say why: none reach the parameters, they vanish, or they explode.
"""

from __future__ import annotations

import math

from diag.preflight.findings import Finding
from diag.preflight.runner import ProbeContext, ProbeResult, fmt, map_arrays, split_batch

NAME = "overfit_one_batch"
CHECKS = ("underfitting", "exploding_gradients", "vanishing_gradients", "params_not_updating")
WEIGHT = 0.35
EXAMPLES = 16  # the batch is cut to this many examples
MAX_STEPS = 300
GOAL = 0.1  # the loss must fall below this share of where it started


def small_batch(batch, n: int = EXAMPLES):
    inputs, targets = split_batch(batch)
    return map_arrays(lambda a: a[:n], inputs), targets[:n]


def run(ctx: ProbeContext) -> ProbeResult:
    session = ctx.runner.session()
    batch = small_batch(ctx.train[0])
    n = len(ctx.runner.to_numpy(batch)[1])
    start = session.loss(batch)
    losses = []
    stopped = False
    for _ in range(MAX_STEPS):
        if ctx.deadline.expired:
            stopped = True
            break
        losses.append(session.step(batch))
        if not math.isfinite(losses[-1]) or (losses[-1] <= GOAL * start and len(losses) >= 10):
            break
    end = session.loss(batch)
    steps = len(losses)
    summary = f"loss on {n} examples {fmt(start)} -> {fmt(end)} in {steps} steps"
    if math.isfinite(end) and math.isfinite(start) and (end <= GOAL * start or end < 1e-3):
        return ProbeResult(NAME, [], summary=summary)

    _, grads = session.gradients(batch)
    trainable = [g for g in grads if g.trainable]
    norm = math.sqrt(sum(g.norm ** 2 for g in trainable if g.connected)) if trainable else 0.0
    told = f"After {steps} steps on one batch of {n} examples the loss went from {fmt(start)} to {fmt(end)}"
    nonfinite_step = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if nonfinite_step is not None or not math.isfinite(end) or end > 1.5 * start or not math.isfinite(norm) or norm > 1e3:
        when = f" (non-finite from step {nonfinite_step})" if nonfinite_step is not None else ""
        finding = Finding(
            "exploding_gradients", 0.7,
            [f"{told}{when}: it rose instead of falling; the gradient norm is now {fmt(norm)}."],
            ["Lower the learning rate (see lr_range), clip gradients by global norm."],
            probe=NAME, series=["loss", "grad_norm"])
    elif trainable and all(g.norm == 0 or not g.connected for g in trainable):
        finding = Finding(
            "params_not_updating", 0.8, [f"{told}, and no parameter receives a gradient."],
            ["Connect the parameters to the loss (see gradient_flow)."], probe=NAME, series=["loss"])
    elif norm < 1e-7:
        finding = Finding(
            "vanishing_gradients", 0.6,
            [f"{told}; the global gradient norm is only {fmt(norm)}, too small to move the weights."],
            ["Use ReLU/GELU activations, residual connections or normalization; check the init."],
            probe=NAME, series=["loss", "grad_norm"])
    else:
        share = end / start if start else float("nan")
        certainty = 0.65 if share > 0.5 else 0.45
        if stopped:
            certainty = min(certainty, 0.35)
        finding = Finding(
            "underfitting", certainty,
            [f"{told} ({fmt(100 * share)}% of the start){' before the budget ran out' if stopped else ''}; "
             f"a model that cannot memorize {n} examples has a wiring fault (the loss, the labels, the output layer) "
             f"or far too little capacity. The gradient norm is {fmt(norm)}."],
            ["Check the loss against the outputs (see output_loss), the labels against the output size, and raise the learning rate if it is tiny."],
            probe=NAME, series=["loss"])
    return ProbeResult(NAME, [finding], summary=summary, status="stopped" if stopped else "findings")
