"""Directional gradient checks of PyTorch functions and modules through ``torch.func``.

The same method as the JAX check (:mod:`diag.gradcheck.jax_check`): per parameter leaf, the
autograd gradient dotted with K random unit directions against finite differences along them,
with a one-sided fallback at kinks. The 2*K perturbed evaluations of a leaf (4*K where central
differences disagree) run as one ``torch.func.vmap`` call; a function that vmap cannot batch (an ``autograd.Function`` written
in the old ``forward(ctx, ...)`` style, data-dependent Python control flow) is evaluated in a
loop over directions instead, which is still K evaluations, not one per element as in
``torch.autograd.gradcheck``. Custom ``autograd.Function`` backward passes are what this finds.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import numpy as np
import torch

from diag.errors import DiagInputError
from diag.gradcheck.compare import (
    SUPPORTED_DTYPES,
    confirm_coordinates,
    kink_robust_stats,
    leaf_result,
    step_for,
    threshold_for,
)
from diag.gradcheck.options import CheckOptions, CheckSettings, Unpack
from diag.gradcheck.result import GradCheckReport, LeafResult

_OFFSETS = (1.0, -1.0, 2.0, -2.0)
CANDIDATES = 8


def _torch_dtype(dtype: str) -> torch.dtype:
    if dtype not in SUPPORTED_DTYPES:
        raise DiagInputError(f"dtype {dtype!r} is not supported for gradient checks; use one of {', '.join(SUPPORTED_DTYPES)}")
    return getattr(torch, dtype)


def _cast(x, dt: torch.dtype):
    if isinstance(x, torch.Tensor):
        return x.detach().to(dt).clone() if x.is_floating_point() else x
    if isinstance(x, float):
        return torch.tensor(x, dtype=dt)
    if isinstance(x, dict):
        return {k: _cast(v, dt) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_cast(v, dt) for v in x)
    return x


def _flatten(x, prefix: str) -> list[tuple[str, torch.Tensor]]:
    if isinstance(x, torch.Tensor):
        return [(prefix, x)] if x.is_floating_point() and x.numel() else []
    if isinstance(x, dict):
        out = []
        for k, v in x.items():
            out += _flatten(v, f"{prefix}/{k}" if prefix else str(k))
        return out
    if isinstance(x, (list, tuple)):
        out = []
        for i, v in enumerate(x):
            out += _flatten(v, f"{prefix}/{i}" if prefix else str(i))
        return out
    return []


def _replace(x, prefix: str, new: dict[str, torch.Tensor]):
    if isinstance(x, torch.Tensor):
        return new.get(prefix, x)
    if isinstance(x, dict):
        return {k: _replace(v, f"{prefix}/{k}" if prefix else str(k), new) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_replace(v, f"{prefix}/{i}" if prefix else str(i), new) for i, v in enumerate(x))
    return x


class _Scalarize:
    """A scalar from a function's output: itself, or its inner product with fixed random cotangents.

    Cotangents are drawn once, outside ``vmap`` (random ops inside ``torch.func.vmap`` are refused),
    and reused for every evaluation.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.cotangents: dict[tuple, torch.Tensor] = {}

    def __call__(self, out):
        if isinstance(out, torch.Tensor) and out.ndim == 0:
            return out
        tensors = [out] if isinstance(out, torch.Tensor) else [t for _, t in _flatten(out, "")]
        total = 0.0
        for i, t in enumerate(tensors):
            key = (i, tuple(t.shape), t.dtype)
            if key not in self.cotangents:
                g = torch.Generator().manual_seed(self.seed + 7919 * i)
                self.cotangents[key] = torch.randn(tuple(t.shape), generator=g, dtype=t.dtype)
            total = total + (self.cotangents[key] * t).sum()
        return total


def check_torch(
    fn: Callable[..., Any],
    *args: Any,
    argnums: int = 0,
    **options: Unpack[CheckOptions],
) -> GradCheckReport:
    """Check ``fn``'s autograd gradient with respect to ``args[argnums]`` against finite differences.

    Args:
      fn: a torch function (custom ``autograd.Function`` calls welcome) returning a scalar or tensors.
      *args: example arguments; floating tensors are copied and cast to ``dtype``.
      argnums: the argument holding the parameters: a tensor, or a (nested) dict or list of tensors.
      **options: the check's settings (directions, dtype, step, threshold, seed, target,
        localize), with the same defaults as :func:`diag.gradcheck.jax_check.check_gradients`
        (:class:`~diag.gradcheck.options.CheckOptions`).

    Returns:
      A :class:`GradCheckReport` with one ``"gradient"`` result per tensor.

    Example:
      >>> import torch
      >>> f = lambda p, x: torch.tanh(x @ p["w"]).pow(2).sum()
      >>> check_torch(f, {"w": torch.randn(3, 2)}, torch.randn(4, 3)).passed
      True
    """
    settings = CheckSettings.of(options, "check_torch")
    started = time.perf_counter()
    dt = _torch_dtype(settings.dtype)
    args = [_cast(a, dt) for a in args]
    if not -len(args) <= argnums < len(args):
        raise DiagInputError(f"argnums {argnums} is out of range for {len(args)} argument(s)")
    argnums %= len(args)
    named = _flatten(args[argnums], "" if not isinstance(args[argnums], torch.Tensor) else f"arg{argnums}")
    if not named:
        raise DiagInputError(f"argument {argnums} holds no floating-point tensors to check")
    names = [n for n, _ in named]
    prefix = "" if not isinstance(args[argnums], torch.Tensor) else f"arg{argnums}"

    scalarize = _Scalarize(settings.seed)

    def f(new: dict[str, torch.Tensor]):
        call = list(args)
        call[argnums] = _replace(args[argnums], prefix, new)
        return scalarize(fn(*call))

    report = GradCheckReport(target=settings.report_name(fn), framework="torch")
    report.results = _check_leaves(f, named, settings, report)
    report.seconds = time.perf_counter() - started
    return report


def check_torch_module(
    module: torch.nn.Module,
    loss_fn: Callable[..., Any],
    *batch: Any,
    **options: Unpack[CheckOptions],
) -> GradCheckReport:
    """Check a torch module's loss gradient with respect to every parameter, per layer.

    The module is copied and cast; the user's module is left as it was. Parameters are passed
    through ``torch.func.functional_call``, so leaf names are module paths (``fc1/weight``).

    Args:
      module: an ``nn.Module`` (put it in ``eval()`` mode first if it uses dropout).
      loss_fn: ``loss_fn(model, *batch) -> scalar``; ``model`` behaves like the module.
      *batch: example inputs and targets.
      **options: the check's settings, as for :func:`check_torch` (``target`` defaults to the
        module's class name).

    Example:
      >>> import torch
      >>> m = torch.nn.Linear(3, 2)
      >>> check_torch_module(m, lambda m, x: m(x).pow(2).mean(), torch.randn(4, 3)).passed
      True
    """
    dt = _torch_dtype(CheckSettings.of(options, "check_torch_module").dtype)
    model = copy.deepcopy(module).to(dt)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v for k, v in model.named_buffers()}

    class _Bound:
        # Calls go through functional_call with the (perturbed) parameters; attributes fall back
        # to the module so loss functions can read configuration from it.
        def __init__(self, p):
            self._p = p

        def __call__(self, *a, **k):
            return torch.func.functional_call(model, {**self._p, **buffers}, a, k)

        def __getattr__(self, name):
            return getattr(model, name)

    def model_loss(p, *batch):
        return loss_fn(_Bound({k.replace("/", "."): v for k, v in p.items()}), *batch)

    options.setdefault("target", type(module).__name__)
    slash = {k.replace(".", "/"): v for k, v in params.items()}
    return check_torch(model_loss, slash, *batch, argnums=0, **options)


def _evaluate(f, x, name, V, h, report, offsets) -> torch.Tensor:
    """f at x + t*h*v for every direction v (rows of V) and t in ``offsets``: shape (K, len(offsets))."""
    offsets = torch.tensor(offsets, dtype=x.dtype)

    def along(v):
        return torch.stack([f({name: x + (t * h) * v}) for t in offsets])

    with torch.no_grad():
        try:
            return torch.func.vmap(along)(V), "torch.func.vmap"
        except Exception as e:  # noqa: BLE001 - any vmap refusal falls back to the loop
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160]}" if str(e).strip() else type(e).__name__
            out = torch.stack([along(v) for v in V])
            note = f"torch.func.vmap could not batch the function ({reason}); evaluated directions in a loop"
            if note not in report.notes:
                report.notes.append(note)
            return out, "loop"


def _check_leaves(f, named, settings: CheckSettings, report) -> list[LeafResult]:
    directions, dtype = settings.directions, settings.dtype
    h = step_for(dtype, settings.step)
    tol = threshold_for(dtype, settings.threshold)
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in named}
    with torch.enable_grad():
        out = f(leaves)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise DiagInputError("the function returned no floating-point tensor to differentiate")
        grads = torch.autograd.grad(out, list(leaves.values()), allow_unused=True)
    f0 = float(out.detach())
    results = []
    for i, ((name, x), g) in enumerate(zip(named, grads)):
        x = x.detach()
        g = torch.zeros_like(x) if g is None else g.detach()
        gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + i)
        V = torch.randn((directions, *x.shape), generator=gen, dtype=x.dtype)
        V = V / V.reshape(directions, -1).norm(dim=1).reshape((directions,) + (1,) * x.ndim)
        # Central differences first; the points at +-2h (one-sided differences, exact on the far
        # side of a kink) only where they disagree, as in the JAX check: half the evaluations.
        values, how = _evaluate(f, x, name, V, h, report, _OFFSETS[:2])
        analytic = (V.reshape(directions, -1) @ g.reshape(-1)).numpy()
        fp1, fm1 = values.double().numpy().T

        def far_values(x=x, name=name, V=V):
            return tuple(_evaluate(f, x, name, V, h, report, _OFFSETS[2:])[0].double().numpy().T)

        def search(stats, x=x, name=name, g=g, V=V):
            return _localize(f, name, x, g, V, stats.signed_errors, tol, f0, h, dtype)

        stats = kink_robust_stats(analytic, fp1, fm1, far_values, f0=f0, step=h, dtype=dtype, loose=0.01 * tol)
        results.append(leaf_result(
            name, tuple(int(s) for s in x.shape), stats, threshold=tol, dtype=dtype, directions=directions,
            method=f"autograd gradient vs finite differences along random directions, {how}",
            gradient="autograd gradient", localize=search if settings.localize else None,
        ))
    return results


def _localize(f, name, x, g, V, signed, tol, f0, h, dtype) -> list[list[int]]:
    e = torch.as_tensor(np.where(np.isfinite(signed), signed, 0.0), dtype=V.dtype)
    estimate = e @ V.reshape(len(V), -1)
    m = min(CANDIDATES, x.numel())
    idx = torch.topk(estimate.abs(), m).indices
    flat = x.reshape(-1)
    vals = []
    with torch.no_grad():
        for j in idx.tolist():
            row = []
            for t in _OFFSETS:
                moved = flat.clone()
                moved[j] += t * h
                row.append(float(f({name: moved.reshape(x.shape)})))
            vals.append(row)
    return confirm_coordinates(idx.numpy(), g.reshape(-1)[idx].double().numpy(), vals, f0=f0, step=h, dtype=dtype,
                               threshold=tol, rms=float(g.double().pow(2).mean().sqrt()), shape=tuple(x.shape))
