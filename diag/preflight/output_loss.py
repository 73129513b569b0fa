"""output_loss: the output layer against the loss: what the outputs are and what the loss expects.

The most common silent wiring faults: probabilities fed to a loss that applies its own softmax
(double softmax), sigmoid outputs into a BCE-with-logits loss, a softmax over one unit (always 1),
class labels regressed as numbers by a one-unit output, and an output of shape (N, 1) broadcast
against targets of shape (N,) in an elementwise loss. The probe asks the loss itself what it
expects by feeding it perfect logits: a loss that takes logits then gives about zero.
"""

from __future__ import annotations

import math

import numpy as np

from diag.preflight.findings import Finding
from diag.preflight.runner import ProbeContext, ProbeResult, fmt
from diag.preflight.task import infer_task, integral

NAME = "output_loss"
CHECKS = ("loss_output_mismatch", "shape_mismatch", "dtype_mismatch")
WEIGHT = 0.05


def _loss_or_none(session, outputs, targets):
    try:
        value = float(session.loss_of(outputs, targets))
        return value if math.isfinite(value) else None
    except Exception:  # a loss that refuses logits (BCE on probabilities) expects probabilities
        return None


def run(ctx: ProbeContext) -> ProbeResult:
    session = ctx.runner.session()
    batch = ctx.train[0]
    loss = session.loss(batch)  # raises (and becomes a shape/dtype finding) when the two do not fit
    out = session.outputs(batch)
    y = ctx.numpy()[0][1]
    task = infer_task(out, y)
    findings = []
    summary = f"outputs {tuple(out.shape)} {out.dtype}, targets {tuple(y.shape)} {y.dtype}, loss {fmt(loss)}"
    finite = np.isfinite(out).all()
    width = out.shape[-1] if out.ndim >= 2 else 1

    if task.kind == "classification" and finite:
        rows = out.reshape(-1, width)
        if rows.min() >= 0 and rows.max() <= 1 and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
            onehot = np.eye(width, dtype=out.dtype)[y.astype(int).reshape(-1)].reshape(out.shape) if not task.one_hot else y
            perfect = np.where(onehot > 0, 10.0, -10.0).astype(out.dtype)
            at_perfect = _loss_or_none(session, perfect, y)
            if at_perfect is not None and at_perfect < 0.05:
                findings.append(Finding(
                    "loss_output_mismatch", 0.9,
                    [f"The model's outputs are probabilities (each row of {width} sums to 1), but the loss applies its "
                     f"own softmax: it gives {fmt(at_perfect)} on perfect logits. A softmax twice keeps the loss far "
                     f"from zero (floor {fmt(math.log1p((width - 1) / math.e))} for {width} classes) and shrinks the gradients."],
                    ["Return raw logits from the model (drop the final softmax); the cross-entropy loss applies log-softmax itself."],
                    probe=NAME, series=["outputs"]))
    if task.kind in ("binary", "multilabel") and finite and out.min() > 0 and out.max() < 1:
        perfect = np.where(y.reshape(out.shape) > 0, 10.0, -10.0).astype(out.dtype)
        at_perfect = _loss_or_none(session, perfect, y)
        if at_perfect is not None and at_perfect < 0.05:
            findings.append(Finding(
                "loss_output_mismatch", 0.85,
                [f"The outputs all lie in (0, 1) (a sigmoid: {fmt(float(out.min()))} to {fmt(float(out.max()))}), but the "
                 f"loss takes logits: it gives {fmt(at_perfect)} on perfect logits. Sigmoid then BCE-with-logits squashes twice."],
                ["Drop the final sigmoid and keep the with-logits loss (it is the stable one)."],
                probe=NAME, series=["outputs"]))
    if width == 1 and out.size and np.all(out == 1.0):
        findings.append(Finding(
            "loss_output_mismatch", 0.9,
            ["Every output is exactly 1: a softmax over a single unit. Its gradient is zero, so nothing can be learned."],
            ["For two classes use one logit with a sigmoid BCE loss, or two outputs with softmax cross-entropy."],
            probe=NAME, series=["outputs"]))
    elif width == 1 and y.dtype.kind in "iu" and len(np.unique(y)) >= 3:
        findings.append(Finding(
            "loss_output_mismatch", 0.6,
            [f"A single output is trained on {len(np.unique(y))} distinct integer labels: the classes are regressed "
             "as numbers, so class 9 counts as 'more' than class 1."],
            [f"Give the model one output per class and use cross-entropy on integer labels."],
            probe=NAME, series=["outputs"]))
    if out.shape != y.shape and out.size == y.size and out.ndim != y.ndim and task.kind in ("regression", "binary"):
        reshaped = _loss_or_none(session, out.reshape(y.shape), y)
        as_given = _loss_or_none(session, out, y)
        if reshaped is not None and as_given is not None and not math.isclose(reshaped, as_given, rel_tol=1e-4, abs_tol=1e-7):
            n = len(y)
            findings.append(Finding(
                "shape_mismatch", 0.85,
                [f"The outputs have shape {tuple(out.shape)} and the targets {tuple(y.shape)}: an elementwise loss "
                 f"broadcasts them to ({n}, {n}) and compares every output with every target "
                 f"(loss {fmt(as_given)}, {fmt(reshaped)} with matching shapes)."],
                ["Squeeze the output's last axis (outputs.squeeze(-1)) or give the targets the output's shape."],
                probe=NAME, series=["outputs"]))
    if task.kind == "classification" and y.dtype.kind == "f" and integral(y) and not task.one_hot:
        findings.append(Finding(
            "dtype_mismatch", 0.5,
            [f"The class labels are stored as {y.dtype} ({', '.join(str(v) for v in np.unique(y)[:4])}...): "
             "cross-entropy losses read float targets as probabilities or refuse them."],
            ["Store class-index targets as integers (torch.long / int32)."], probe=NAME, series=["targets"]))
    return ProbeResult(NAME, findings, summary=summary)
