"""Turn one fetched statistics vector into a ``Step`` record (runs on the writer thread)."""

from __future__ import annotations

import math

import numpy as np

from diag.adapters.flax.stats import NOT_MEASURED, SCALARS, Layout
from diag.trace.measured import measured_fields
from diag.trace.records import ActivationStats, BatchStats, LayerStats, Step


def vector_is_finite(vector: np.ndarray, layout: Layout | None) -> bool:
    """Is this step free of NaN/Inf where it matters? An overflow that a loss scaler skipped
    (the skipped flag, ``vector[2]``) is the scaler's business, unless the loss itself is bad."""
    if layout is not None and layout.full:
        return not layout.has_nonfinite(vector) or (vector[2] == 1 and bool(np.isfinite(vector[0])))
    # Loss and the global norms are measured every step.
    return bool(np.isfinite(vector[0])) and (vector[2] == 1 or bool(np.isfinite(vector[4:7]).all()))


def decode_step(step: int, vector: np.ndarray, layout: Layout | None, names: list[str], perm_cache: dict,
                wall: float | None, extra: dict, grad_clip: float | None = None) -> Step:
    """The Step record of one step.

    Args:
      step: the step number.
      vector: the fetched float32 vector.
      layout: how the vector is packed (None: only the leading scalars are known).
      names: the header's layer names, forward order.
      perm_cache: layout id -> permutation from tree order to forward order (filled here).
      wall: wall-clock time of the step.
      extra: more Step fields (epoch, metrics, step_time, ...).
      grad_clip: the bound of an ``optax.clip_by_global_norm`` that the chain applies to the raw
        gradient first (the header's ``grad_clip``). The recorder measures the gradient as it
        enters the chain; the trace's ``grad_norm`` is the norm the optimizer used, as the PyTorch
        recorder writes it, so the measured sums are clipped here exactly as optax clips (scaled
        to the bound when the norm exceeds it) and the raw norm goes to ``grad_norm_before_clip``.
    """
    parts = layout.split(vector) if layout else {"scalars": vector[:SCALARS]}
    loss, lr, skipped, scale, grad_sq, param_sq, update_sq = (float(v) for v in parts["scalars"])
    rec = Step(step=step, time=wall, loss=loss, lr=_known(lr),
               skipped=None if math.isnan(skipped) else bool(skipped),
               loss_scale=_known(scale), **extra)
    grad_sq, shrink, before_clip = _clipped(grad_sq, grad_clip)
    totals = None if (math.isnan(grad_sq) and math.isnan(param_sq) and math.isnan(update_sq)) else (
        grad_sq, param_sq, update_sq)  # global sums, every step (a NaN here is a non-finite tensor)
    unmeasured = [name for name, v in zip(("grad_norm", "param_norm", "update_norm"), (grad_sq, param_sq, update_sq))
                  if v == NOT_MEASURED]
    if totals is not None and unmeasured:
        totals = tuple(math.nan if v == NOT_MEASURED else v for v in totals)
    per_layer = {}
    if layout is not None and layout.full and "table" in parts:
        n = len(layout.param_layers)
        g, p, u = parts["table"].reshape(3, n).astype(np.float64)
        g = g * shrink
        perm = perm_cache.get(id(layout))
        if perm is None:
            index = {name: i for i, name in enumerate(layout.param_layers)}
            perm = perm_cache[id(layout)] = [index[x] for x in names]
        per_layer = dict(grad_sq=g[perm].tolist(), param_sq=p[perm].tolist(), update_sq=u[perm].tolist())
    measured = measured_fields(totals=totals, **per_layer)
    if not per_layer:
        for name in unmeasured:  # not measured on this step (global_sumsq_triple): absent, not NaN
            measured.pop(name, None)
    rec.grad_norm, rec.param_norm, rec.update_norm = (measured.get(k) for k in ("grad_norm", "param_norm", "update_norm"))
    rec.grad_norm_before_clip = before_clip
    if "layers" in measured:
        rec.layers = LayerStats(**measured["layers"])
    if layout is None or not layout.full:
        return rec
    if "acts" in parts and layout.act_layers:
        a = parts["acts"].reshape(6, len(layout.act_layers)).astype(np.float64)
        col = {name: j for j, name in enumerate(layout.act_layers)}
        mean, std, zero, sat, bad = ([None] * len(names) for _ in range(5))
        for i, name in enumerate(names):
            j = col.get(name)
            if j is None:
                continue
            s, ss, n, z, st, nf = a[:, j]
            m = s / n
            mean[i] = float(m)
            std[i] = float(math.sqrt(max(ss / n - m * m, 0.0))) if math.isfinite(ss) and math.isfinite(m) else float("nan")
            zero[i] = None if math.isnan(z) else float(z / n)
            sat[i] = None if math.isnan(st) else float(st / n)
            bad[i] = float(nf)
        rec.activations = ActivationStats(mean=mean, std=std, zero_fraction=zero, saturation_fraction=sat, nonfinite=bad)
    if "input" in parts:
        mean, std, lo, hi, nf = (float(v) for v in parts["input"])
        rec.input = BatchStats(mean=mean, std=std, min=lo, max=hi, nonfinite=nf)
    if "labels" in parts:
        hist = parts["labels"].astype(np.float64)
        total = hist.sum()
        prob = hist[hist > 0] / total if total > 0 else np.array([])
        rec.labels = BatchStats(label_entropy=float(-(prob * np.log(prob)).sum()) if total > 0 else None,
                                distinct_labels=int((hist > 0).sum()))
    return rec


def _clipped(grad_sq: float, grad_clip: float | None) -> tuple[float, float, float | None]:
    """The gradient's sum of squares after ``clip_by_global_norm(grad_clip)``, the factor that
    scaled each square, and the raw norm (None without clipping or without a finite norm)."""
    if grad_clip is None or grad_sq == NOT_MEASURED or not math.isfinite(grad_sq):
        return grad_sq, 1.0, None
    raw = math.sqrt(grad_sq)
    shrink = (grad_clip / raw) ** 2 if raw > grad_clip else 1.0  # optax: g / ||g|| * max_norm
    return grad_sq * shrink, shrink, raw


def _known(v: float) -> float | None:
    """NaN marks an entry the step did not measure (no schedule known, no loss scaling)."""
    return None if math.isnan(v) else v




def _list(a) -> list[float]:
    return [float(x) for x in a]
