"""Turn directional derivatives into a verdict: error, threshold, worst direction.

Both backends (JAX, torch) evaluate, for each of K random unit directions ``v`` of one leaf:

* ``analytic``: the reverse-mode gradient dotted with ``v``;
* ``central``: ``(f(x + h v) - f(x - h v)) / 2h``;
* ``forward`` and ``backward``: the second-order one-sided differences
  ``(-3 f(x) + 4 f(x + h v) - f(x + 2h v)) / 2h`` and its mirror.

For smooth code all three estimates agree to O(h^2). When a direction crosses a kink (ReLU, max,
abs) within the step, the central difference is off but the one-sided difference on the far side
of the kink is not; a wrong gradient is off against all three. So each direction's error is the
smallest of its three differences, which removes false alarms on ReLU networks without hiding a
bug (a bug shifts the analytic value away from every estimate).

The backends share everything after the function evaluations: the verdict per leaf
(``kink_robust_stats``), the element search's last step (``confirm_coordinates``) and the
``LeafResult`` with its message (``leaf_result``). This module is numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from diag.gradcheck.result import LeafResult

# Thresholds on the relative error, measured on correct and planted-bug functions
# (tests/test_gradcheck_jax.py, notes in the README). float64: correct code stays below ~1e-8 and
# a one-element bug in a 1e5-element leaf is ~1e-4. float32 only sees gross errors.
DEFAULT_THRESHOLDS = {"float64": 1e-6, "float32": 2e-2}
# Steps chosen so that rounding (eps * |f| / h) and truncation (h^2 f''') balance for functions of
# order-one inputs; the step is along a unit direction of the whole leaf.
DEFAULT_STEPS = {"float64": 1e-5, "float32": 3e-3}
SUPPORTED_DTYPES = tuple(DEFAULT_THRESHOLDS)
# Machine epsilon, for the finite-difference noise floor.
EPSILON = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}


@dataclass
class DirectionStats:
    """Per-leaf verdict from the K directional comparisons."""

    error: float
    worst_direction: int
    nonsmooth: int
    signed_errors: np.ndarray  # analytic - best numeric estimate, per direction


def threshold_for(dtype: str, threshold: float | None = None) -> float:
    """The pass threshold: the user's, or the default for ``dtype``."""
    if threshold is not None:
        return float(threshold)
    return DEFAULT_THRESHOLDS[dtype]


def step_for(dtype: str, step: float | None = None) -> float:
    if step is not None:
        return float(step)
    return DEFAULT_STEPS[dtype]


def noise_floor(f0: float, step: float, dtype: str) -> float:
    """The smallest directional derivative finite differences can resolve at this step."""
    return 10.0 * EPSILON[dtype] * (abs(f0) + 1e-30) / step


def direction_stats(
    analytic: np.ndarray,
    central: np.ndarray,
    forward: np.ndarray,
    backward: np.ndarray,
    *,
    f0: float,
    step: float,
    dtype: str,
) -> DirectionStats:
    """Relative error over directions, robust to kinks (see the module docstring).

    Args:
      analytic, central, forward, backward: shape ``(K,)`` directional derivatives.
      f0: the function value at the point (sets the noise floor).
      step: the finite-difference step.
      dtype: the dtype the function computed in.

    Returns:
      DirectionStats with the relative error ``||e|| / (||analytic|| + ||central|| + noise)``.

    Example:
      >>> a = np.array([1.0, 2.0]); n = a + 1e-9
      >>> direction_stats(a, n, n, n, f0=1.0, step=1e-5, dtype="float64").error < 1e-6
      True
    """
    analytic, central, forward, backward = (np.asarray(x, dtype=np.float64) for x in (analytic, central, forward, backward))
    diffs = np.stack([analytic - central, analytic - forward, analytic - backward])
    best = np.argmin(np.abs(diffs), axis=0)
    signed = np.take_along_axis(diffs, best[None], axis=0)[0]
    # Non-finite estimates (a NaN from the function at a perturbed point) must not pass quietly.
    signed = np.where(np.isfinite(signed), signed, np.inf)
    k = len(analytic)
    noise = noise_floor(f0, step, dtype) * np.sqrt(k)
    denom = np.linalg.norm(analytic) + np.linalg.norm(central) + noise
    num = np.linalg.norm(signed)
    error = float(num / denom) if np.isfinite(num) else float("inf")
    if not np.isfinite(denom):
        error = float("inf")
    central_err = np.abs(diffs[0])
    nonsmooth = int(np.sum((best != 0) & (central_err > 10 * np.abs(signed) + noise / np.sqrt(k))))
    worst = int(np.argmax(np.abs(signed))) if k else 0
    return DirectionStats(error=error, worst_direction=worst, nonsmooth=nonsmooth, signed_errors=signed)


def confirmed_elements(
    candidates: np.ndarray,
    analytic: np.ndarray,
    numeric: np.ndarray,
    *,
    threshold: float,
    scale: float,
    shape: tuple[int, ...],
    limit: int = 5,
) -> list[list[int]]:
    """Candidate elements whose own coordinate check fails, worst first, as multi-indices.

    Args:
      candidates: flat indices proposed by back-projecting the directional errors.
      analytic, numeric: the gradient entry and its coordinate finite difference per candidate.
      threshold: the leaf's relative-error threshold.
      scale: a typical gradient entry magnitude (below it an element's error is measured absolutely).
      shape: the leaf's shape, to turn flat indices into multi-indices.
      limit: how many to return.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    err = np.abs(analytic - numeric) / (np.abs(analytic) + np.abs(numeric) + scale)
    err = np.where(np.isfinite(err), err, np.inf)
    order = np.argsort(-err, kind="stable")
    out: list[list[int]] = []
    for i in order:
        if err[i] <= threshold or len(out) >= limit:
            break
        idx = np.unravel_index(int(candidates[i]), shape) if shape else ()
        out.append([int(j) for j in idx])
    return out


def one_sided(f0, near, far, step: float, sign: float = 1.0):
    """Second-order one-sided difference from ``f(x)``, ``f(x + sign*h v)`` and ``f(x + 2*sign*h v)``."""
    return sign * (-3 * f0 + 4 * near - far) / (2 * step)


def kink_robust_stats(
    analytic: np.ndarray,
    fp1: np.ndarray,
    fm1: np.ndarray,
    far_values: Callable[[], tuple[np.ndarray, np.ndarray]],
    *,
    f0: float,
    step: float,
    dtype: str,
    loose: float,
) -> DirectionStats:
    """Central differences first; one-sided ones only where those disagree by more than ``loose``.

    Args:
      analytic: shape ``(K,)``, the gradient dotted with each direction.
      fp1, fm1: the function at ``x + h v`` and ``x - h v`` per direction.
      far_values: evaluates ``(f(x + 2h v), f(x - 2h v))`` per direction; called only when the
        central differences are off (a kink or a bug), which halves the evaluations of smooth code.
      f0, step, dtype: as for :func:`direction_stats`.
      loose: the error under which central differences are accepted as they are.
    """
    central = (fp1 - fm1) / (2 * step)
    stats = direction_stats(analytic, central, central, central, f0=f0, step=step, dtype=dtype)
    if stats.error <= loose:
        return stats
    fp2, fm2 = far_values()
    return direction_stats(analytic, central, one_sided(f0, fp1, fp2, step), one_sided(f0, fm1, fm2, step, -1.0),
                           f0=f0, step=step, dtype=dtype)


def confirm_coordinates(candidates, analytic, values, *, f0: float, step: float, dtype: str, threshold: float,
                        rms: float, shape: tuple[int, ...]) -> list[list[int]]:
    """The candidates whose coordinate finite differences confirm the error (see :func:`confirmed_elements`).

    Args:
      candidates: flat indices of the candidate elements.
      analytic: the gradient entry of each candidate.
      values: shape ``(candidates, 4)``, the function with the candidate moved by ``h, -h, 2h, -2h``.
      f0, step, dtype: the point's function value, the step, the dtype computed in.
      threshold: the leaf's threshold.
      rms: the leaf's RMS gradient (sets the scale under which errors count absolutely).
      shape: the leaf's shape.
    """
    fp1, fm1, fp2, fm2 = np.asarray(values, dtype=np.float64).T
    estimates = np.stack([(fp1 - fm1) / (2 * step), one_sided(f0, fp1, fp2, step), one_sided(f0, fm1, fm2, step, -1.0)])
    analytic = np.asarray(analytic, dtype=np.float64)
    best = np.take_along_axis(estimates, np.argmin(np.abs(estimates - analytic), axis=0)[None], axis=0)[0]
    scale = 1e-3 * rms + noise_floor(f0, step, dtype)
    return confirmed_elements(np.asarray(candidates), analytic, best, threshold=threshold, scale=scale, shape=shape)


def leaf_result(name: str, shape: tuple[int, ...], stats: DirectionStats, *, threshold: float, dtype: str,
                directions: int, method: str, gradient: str,
                localize: Callable[[DirectionStats], list[list[int]]] | None = None) -> LeafResult:
    """The verdict on one leaf, with the elements responsible and a message when it fails.

    Args:
      name, shape: the leaf.
      stats: its directional comparison.
      threshold, dtype, directions, method: recorded on the result.
      gradient: what was checked, for the message (``"analytic gradient"``, ``"autograd gradient"``).
      localize: finds the responsible elements of a failed leaf (not called for a passing one).
    """
    result = LeafResult(
        name=name, check="gradient", shape=shape, error=stats.error, threshold=threshold,
        passed=stats.error <= threshold, dtype=dtype, directions=directions,
        worst_direction=stats.worst_direction, nonsmooth_directions=stats.nonsmooth, method=method,
    )
    if not result.passed:
        if localize is not None:
            result.worst_elements = localize(stats)
        result.message = failure_message(result, gradient)
    return result


def failure_message(r: LeafResult, gradient: str) -> str:
    where = f"layer {r.layer}, parameter {r.name}" if r.layer != r.name else f"parameter {r.name}"
    text = (
        f"the {gradient} of {where} disagrees with finite differences: relative error "
        f"{r.error:.1e} > {r.threshold:.0e} ({r.dtype})"
    )
    if r.worst_elements:
        text += "; worst elements " + ", ".join(str(tuple(e)) for e in r.worst_elements[:3])
    elif r.size > 1:
        text += "; the error is spread over many elements (a sign, transpose or missing term)"
    return text
