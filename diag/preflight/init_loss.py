"""init_loss: the loss before any update, against the chance level of the task.

At initialization a classifier knows nothing, so its loss should be close to that of a uniform
guess, ``log C`` (Karpathy 2019, "A recipe for training neural networks": verify the loss at
init). Far above means the outputs start far too large (init scale, unnormalized inputs); far below
means the loss is not measuring what the task needs (a wrong loss, labels off the output range).
For regression the reference is the loss of predicting the targets' mean.
"""

from __future__ import annotations

import math

import numpy as np

from diag.preflight.findings import Finding
from diag.preflight.runner import ProbeContext, ProbeResult, fmt
from diag.preflight.task import infer_task

NAME = "init_loss"
CHECKS = ("bad_initialization", "loss_output_mismatch", "nonfinite_values")
WEIGHT = 0.05
BATCHES = 4


def run(ctx: ProbeContext) -> ProbeResult:
    session = ctx.runner.session()
    batches = ctx.train[:BATCHES]
    losses = [session.loss(b) for b in batches]
    loss = float(np.mean(losses))
    outputs = session.outputs(batches[0])
    targets = ctx.numpy()[0][1]
    task = infer_task(outputs, targets)
    where = f"the first {len(batches)} train batches" if len(batches) > 1 else "the first train batch"
    if not math.isfinite(loss):
        return ProbeResult(NAME, [Finding(
            "nonfinite_values", 0.8, [f"The loss before any update is {fmt(loss)} on {where}."],
            ["Check the inputs for NaN/Inf and the loss for log(0) or division by zero."], probe=NAME, series=["loss"],
        )], summary=f"loss at init {fmt(loss)}")

    chance = task.chance
    if chance is None:  # regression: the loss of predicting the mean everywhere
        mean_guess = np.broadcast_to(np.mean(targets, axis=0), outputs.shape) if targets.shape[1:] == outputs.shape[1:] \
            else np.full(outputs.shape, float(np.mean(targets)))
        chance = _safe(lambda: session.loss_of(np.array(mean_guess, dtype=outputs.dtype), targets))
        if chance is None:
            chance = float(np.var(targets))
    summary = f"loss at init {fmt(loss)}, chance level {fmt(chance)} ({task.describe()})"
    out_std = float(np.std(outputs))
    findings = []
    if task.kind != "regression":
        if loss > 3 * chance and loss - chance > 1.0:
            findings.append(_too_high(loss, chance, out_std, where, task, 0.75))
        elif loss > 1.6 * chance and loss - chance > 0.5:
            findings.append(_too_high(loss, chance, out_std, where, task, 0.45))
        elif loss < 0.4 * chance:
            findings.append(Finding(
                "loss_output_mismatch", 0.5,
                [f"The loss before any update is {fmt(loss)}, far below the chance level {fmt(chance)} of "
                 f"{task.describe()}: an untrained model should not beat a uniform guess."],
                ["Check that the loss is the task's cross-entropy on logits and that labels match the outputs."],
                probe=NAME, series=["loss"]))
    elif chance > 0 and loss > 10 * chance:
        findings.append(Finding(
            "bad_initialization", 0.6 if loss > 100 * chance else 0.4,
            [f"The loss before any update is {fmt(loss)}, {fmt(loss / chance)} times that of predicting the "
             f"targets' mean ({fmt(chance)}); the outputs start far from the targets' scale (output std {fmt(out_std)})."],
            ["Standardize the regression targets, or scale the output layer's init down."],
            probe=NAME, series=["loss"]))
    return ProbeResult(NAME, findings, summary=summary)


def _too_high(loss, chance, out_std, where, task, certainty) -> Finding:
    return Finding(
        "bad_initialization", certainty,
        [f"The loss before any update is {fmt(loss)} on {where}, {fmt(loss / chance)} times the chance level "
         f"{fmt(chance)} of {task.describe()}; the outputs start with std {fmt(out_std)} where about 1 or less is usual."],
        ["Scale the output layer's init down (or zero it), and standardize the inputs."],
        probe=NAME, series=["loss"])


def _safe(fn):
    try:
        value = float(fn())
        return value if math.isfinite(value) else None
    except Exception:  # the loss may refuse a guess it was not built for; fall back to the variance
        return None
