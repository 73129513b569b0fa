"""data: the batches themselves, before any training: NaN/Inf, labels against the output size,
examples shared between train and validation, batches of one class, constant features.

Only the first batches of each split are read (the ones every other probe uses), so a problem
that appears later in an epoch is not seen; ``diag.data_probe`` measures whole splits.
"""

from __future__ import annotations

import numpy as np

from diag.data_probe import row_hashes
from diag.preflight.findings import Finding
from diag.preflight.runner import ProbeContext, ProbeResult, fmt, leaves, names
from diag.preflight.task import infer_task, integral

NAME = "data"
CHECKS = ("nan_in_input_data", "loss_output_mismatch", "train_val_overlap", "unshuffled_data",
          "unnormalized_inputs", "constant_features")
WEIGHT = 0.05


def _stack(pairs, which: int) -> list[np.ndarray]:
    """Per input leaf (or the targets), the batches' rows stacked: one (examples, features) array each."""
    if which == 1:
        return [np.concatenate([np.asarray(y).reshape(len(y), -1) for _, y in pairs])]
    per_leaf = zip(*[leaves(x) for x, _ in pairs])
    return [np.concatenate([np.asarray(a).reshape(len(a), -1) for a in group]) for group in per_leaf]


def _nonfinite(ctx, split: str) -> list[str]:
    out = []
    for i, (x, y) in enumerate(ctx.numpy(split)):
        for what, arrays in (("input", leaves(x)), ("target", [y])):
            for a in arrays:
                a = np.asarray(a)
                if a.dtype.kind in "fc":
                    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
                    if bad:
                        out.append(f"{bad} of {a.size} {what} values in {split} batch {i} are NaN or Inf")
    return out


def run(ctx: ProbeContext) -> ProbeResult:
    findings: list[Finding] = []
    train = ctx.numpy("train")
    val = ctx.numpy("val") if ctx.val else []
    missing = [] if ctx.val else ["val_batches"]
    n_train = sum(len(y) for _, y in train)

    bad = _nonfinite(ctx, "train") + (_nonfinite(ctx, "val") if val else [])
    if bad:
        findings.append(Finding(
            "nan_in_input_data", 0.95, [s[0].upper() + s[1:] + "." for s in bad[:3]],
            ["Clean or impute the data; assert np.isfinite on the inputs in the pipeline."],
            probe=NAME, series=["train_batches"]))

    outputs = ctx.runner.session().outputs(ctx.train[0])
    width = outputs.shape[-1] if outputs.ndim >= 2 else 1
    targets = np.concatenate([np.asarray(y).reshape(-1) for _, y in train + val]) if train else np.array([])
    task = infer_task(outputs, train[0][1])
    if task.kind == "classification" and not task.one_hot and integral(targets) and targets.size:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= width:
            findings.append(Finding(
                "loss_output_mismatch", 0.85,
                [f"The labels run from {low} to {high}, but the model has {width} outputs (classes 0 to {width - 1})."],
                [f"Map the labels to 0..{width - 1} (e.g. subtract {low})" if low > 0 else
                 f"Give the output layer {high + 1} units, one per class."],
                probe=NAME, series=["train_batches"]))
        per_batch = [np.unique(np.asarray(y)) for _, y in train if len(y) >= 8]
        if len(per_batch) >= 2 and all(len(u) == 1 for u in per_batch) and len({int(u[0]) for u in per_batch}) > 1:
            findings.append(Finding(
                "unshuffled_data", 0.7,
                [f"Each of the first {len(per_batch)} train batches holds a single class "
                 f"({', '.join(str(int(u[0])) for u in per_batch[:6])}): the data is ordered by label."],
                ["Shuffle the training data every epoch (DataLoader(shuffle=True), or a permutation per epoch)."],
                probe=NAME, series=["train_batches"]))

    if val:
        train_hashes = np.concatenate([row_hashes(rows) for rows in _joined(train)])
        val_hashes = np.concatenate([row_hashes(rows) for rows in _joined(val)])
        shared = int(np.isin(val_hashes, train_hashes).sum())
        if shared:
            share = shared / len(val_hashes)
            findings.append(Finding(
                "train_val_overlap", 0.9 if share >= 0.1 else 0.6 if share >= 0.01 else 0.35,
                [f"{shared} of {len(val_hashes)} validation examples in the first batches ({fmt(100 * share)}%) "
                 f"also occur in the first {len(train)} train batches."],
                ["De-duplicate across splits before splitting (also near-duplicates)."],
                probe=NAME, series=["train_batches", "val_batches"]))

    inputs = [a for a in _stack(train, 0) if a.dtype.kind in "fiu"] if train else []
    if inputs and n_train >= 16:
        rows = np.concatenate([a.astype(np.float64) for a in inputs], axis=1)
        finite = np.where(np.isfinite(rows), rows, np.nan)
        std = np.nanstd(finite, axis=0)
        constant = np.flatnonzero(std == 0)
        if len(constant) == rows.shape[1]:
            findings.append(Finding(
                "constant_features", 0.7,
                [f"Every one of the {rows.shape[1]} input features is constant across {n_train} train examples: "
                 "the model sees no signal."],
                ["Check the input pipeline: a wrong column, a broadcast, or a normalization that divides by zero."],
                probe=NAME, series=["train_batches"]))
        elif len(constant) >= 0.5 * rows.shape[1]:
            findings.append(Finding(
                "constant_features", 0.3,
                [f"{len(constant)} of {rows.shape[1]} input features are constant across {n_train} train examples "
                 f"(features {names([str(i) for i in constant])})."],
                ["Drop features that never change, or check the pipeline that fills them."],
                probe=NAME, series=["train_batches"]))
        mean, spread = float(np.nanmean(finite)), float(np.nanmean(std))
        peak = float(np.nanmax(np.abs(finite))) if np.isfinite(finite).any() else 0.0
        if peak > 100 or abs(mean) > 10 or spread > 20:
            findings.append(Finding(
                "unnormalized_inputs", 0.45,
                [f"The train inputs have mean {fmt(mean)}, mean feature std {fmt(spread)} and reach {fmt(peak)}; "
                 "networks train best on inputs near mean 0 and std 1."],
                ["Standardize the inputs with the train split's mean and std (or scale pixels to [0, 1])."],
                probe=NAME, series=["train_batches"]))
    summary = (f"{len(train)} train batches ({n_train} examples)"
               + (f", {len(val)} validation batch{'es' if len(val) != 1 else ''}" if val else ", no validation batches")
               + f"; {task.describe()}, {width} output{'s' if width != 1 else ''}")
    return ProbeResult(NAME, findings, summary=summary, missing=missing)


def _joined(pairs):
    """Each example's whole input (every leaf) as one row, per batch."""
    return [np.concatenate([np.asarray(a).reshape(len(a), -1).astype(np.float64) for a in leaves(x)], axis=1)
            for x, _ in pairs]
