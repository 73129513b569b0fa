"""A tiny real training loop in numpy that records a trace with TraceWriter.

Used by the trace tests so that what they read is what a training run writes (real losses, real
gradient norms, an evaluation, an end event), without needing jax or torch.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from diag.trace import (
    ActivationStats, BatchStats, Eval, Header, LayerInfo, LayerStats, OptimizerInfo, ParamInfo,
    RunEndEvent, Step, TraceWriter,
)


def make_blobs(n: int, classes: int = 3, features: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, features))
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(0, 1, (n, features))
    return x.astype(np.float32), y


def train_softmax_regression(path: Path, steps: int = 60, lr: float = 0.1, seed: int = 0,
                             nan_at: int | None = None, crash_at: int | None = None) -> Path:
    """Train a 2-layer ReLU network with plain SGD and record every step.

    Args:
      nan_at: from this step on, inject a NaN into the input batch (a data fault).
      crash_at: raise RuntimeError at this step (the trace keeps an exception-free prefix).
    """
    classes, features, hidden = 3, 4, 8
    x_all, y_all = make_blobs(640, classes, features, seed)
    x, y, xv, yv = x_all[:512], y_all[:512], x_all[512:], y_all[512:]
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, np.sqrt(2 / features), (features, hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, np.sqrt(1 / hidden), (hidden, classes))
    b2 = np.zeros(classes)
    layers = [
        LayerInfo(name="hidden", type="Linear", activation="relu", params=[
            ParamInfo(name="kernel", shape=[features, hidden], dtype="float64"),
            ParamInfo(name="bias", shape=[hidden], dtype="float64")]),
        LayerInfo(name="head", type="Linear", is_output=True, params=[
            ParamInfo(name="kernel", shape=[hidden, classes], dtype="float64"),
            ParamInfo(name="bias", shape=[classes], dtype="float64")]),
    ]

    def forward(xb):
        h_pre = xb @ w1 + b1
        h = np.maximum(h_pre, 0)
        logits = h @ w2 + b2
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return h_pre, h, logits, p

    with TraceWriter(path, flush_every=10) as writer:
        writer.write(Header(
            run_id=f"numpy-softmax-{seed}", framework="numpy", framework_version=np.__version__,
            model_name="MLP(4-8-3)", layers=layers, param_count=features * hidden + hidden + hidden * classes + classes,
            optimizer=OptimizerInfo(name="sgd", hyperparameters={"lr": lr}), param_dtype="float64",
            compute_dtype="float64", task="classification", num_classes=classes,
            loss_kind="softmax_cross_entropy", batch_size=32, seed=seed, device_platform="cpu", device_count=1,
        ))
        batch = 32
        for step in range(steps):
            if crash_at is not None and step == crash_at:
                raise RuntimeError(f"planted crash at step {step}")
            start = time.perf_counter()
            idx = rng.integers(0, len(x), batch)
            xb, yb = x[idx].astype(np.float64), y[idx]
            if nan_at is not None and step >= nan_at:
                xb[0, 0] = np.nan
            h_pre, h, logits, p = forward(xb)
            loss = float(-np.log(p[np.arange(batch), yb] + 1e-12).mean())
            d_logits = p.copy()
            d_logits[np.arange(batch), yb] -= 1
            d_logits /= batch
            g_w2, g_b2 = h.T @ d_logits, d_logits.sum(0)
            d_h = d_logits @ w2.T * (h_pre > 0)
            g_w1, g_b1 = xb.T @ d_h, d_h.sum(0)
            grads = [(g_w1, g_b1), (g_w2, g_b2)]
            params = [(w1, b1), (w2, b2)]
            grad_norms = [float(np.sqrt(sum((g ** 2).sum() for g in pair))) for pair in grads]
            param_norms = [float(np.sqrt(sum((q ** 2).sum() for q in pair))) for pair in params]
            update_ratios = [lr * g / p_ for g, p_ in zip(grad_norms, param_norms)]
            for (q_w, q_b), (gw, gb) in zip(params, grads):
                q_w -= lr * gw
                q_b -= lr * gb
            counts = np.bincount(yb, minlength=classes) / batch
            entropy = float(-(counts[counts > 0] * np.log(counts[counts > 0])).sum())
            writer.write(Step(
                step=step, epoch=step * batch // len(x), loss=loss, lr=lr,
                grad_norm=float(np.sqrt(sum(g ** 2 for g in grad_norms))), step_time=time.perf_counter() - start,
                layers=LayerStats(grad_norm=grad_norms, param_norm=param_norms, update_ratio=update_ratios),
                activations=ActivationStats(mean=[float(h.mean()), float(logits.mean())],
                                            std=[float(h.std()), float(logits.std())],
                                            zero_fraction=[float((h == 0).mean()), None]),
                input=BatchStats(mean=float(np.nanmean(xb)), std=float(np.nanstd(xb)),
                                 nonfinite=float((~np.isfinite(xb)).sum())),
                labels=BatchStats(label_entropy=entropy, distinct_labels=int((counts > 0).sum())),
                metrics={"accuracy": float((p.argmax(1) == yb).mean())},
            ))
            if step % 20 == 19 or step == steps - 1:
                _, _, _, pv = forward(xv.astype(np.float64))
                val_loss = float(-np.log(pv[np.arange(len(yv)), yv] + 1e-12).mean())
                writer.write(Eval(step=step, split="val", loss=val_loss, model_mode="eval", examples=len(yv),
                                  metrics={"accuracy": float((pv.argmax(1) == yv).mean())}))
        writer.write(RunEndEvent(status="completed", steps=steps, step=steps - 1))
    return path
