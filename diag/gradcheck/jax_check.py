"""Jitted directional gradient checks of JAX functions and Flax NNX models.

For every parameter leaf, K random unit directions ``v``: the reverse-mode gradient dotted with
``v`` (``jax.jvp`` refuses ``custom_vjp`` functions, reverse mode does not) against finite
differences of the function along ``v``. One ``jax.jit`` call evaluates the gradient and all
2*K perturbed function values of every leaf (``jax.vmap`` over directions and steps), in float64
by default. Leaves that fail are then localized: the directional errors, projected back onto their
directions, point at candidate elements, each confirmed by its own coordinate finite difference.

References:
  Seed documents 000 and 002 (shared/seeds): numerical gradient checking as the standard test of
  backpropagation; relative error below about 1e-5 in double precision.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diag.errors import DiagInputError
from diag.gradcheck import _jax_util as U
from diag.gradcheck.compare import (
    confirmed_elements,
    direction_stats,
    noise_floor,
    step_for,
    threshold_for,
)
from diag.gradcheck.result import GradCheckReport, LeafResult

# Elements of perturbed copies one vmap batch may hold (float64: 256 MB); larger leaves are
# checked in sequential chunks of directions (jax.lax.map with batch_size).
MAX_BATCH_ELEMENTS = 2**25
CANDIDATES = 8


def _direction(key, leaf_index: int, k, shape, dtype):
    v = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, leaf_index), k), shape, dtype)
    return v / jnp.linalg.norm(v.ravel())


def _map(body, xs, batch: int, total: int):
    if batch >= total:
        return jax.vmap(body)(xs)
    return jax.lax.map(body, xs, batch_size=batch)


@functools.lru_cache(maxsize=64)
def _checker(fn: Callable, spec: "_Spec", offsets: tuple[float, ...], which: tuple[int, ...]):
    """The jitted check for one function and argument structure (cached: repeated checks reuse it).

    Evaluates the leaves in ``which`` at ``x + t*h*v`` for each offset ``t``; directions depend only
    on the seed and the leaf's index, so a second call with other offsets extends the first.
    """

    def scalar_f(diff_leaves, args, key):
        return U.scalarize(fn(*spec.rebuild(diff_leaves, args)), key)

    def run(diff_leaves, args, key):
        out_key, dir_key = jax.random.split(key)
        f0, grads = jax.value_and_grad(scalar_f)(diff_leaves, args, out_key)
        per_leaf = []
        for i in which:
            x, g = diff_leaves[i], grads[i]
            h = jnp.asarray(spec.step, x.dtype)

            def body(k, i=i, x=x, g=g, h=h):
                v = _direction(dir_key, i, k, x.shape, x.dtype)

                def at(t):
                    moved = list(diff_leaves)
                    moved[i] = x + (t * h) * v
                    return scalar_f(moved, args, out_key)

                return jnp.vdot(g, v), jax.vmap(at)(jnp.asarray(offsets, x.dtype))

            batch = max(1, MAX_BATCH_ELEMENTS // max(1, len(offsets) * x.size))
            analytic, values = _map(body, jnp.arange(spec.directions), batch, spec.directions)
            per_leaf.append((analytic, values, jnp.sqrt(jnp.mean(g * g))))
        return f0, per_leaf

    return jax.jit(run)


@functools.lru_cache(maxsize=64)
def _localizer(fn: Callable, spec: "_Spec", leaf_index: int, candidates: int):
    """The jitted element search for one failed leaf: back-projection, then coordinate checks."""
    offsets = (1.0, -1.0, 2.0, -2.0)

    def scalar_f(diff_leaves, args, key):
        return U.scalarize(fn(*spec.rebuild(diff_leaves, args)), key)

    def run(diff_leaves, args, key, signed_errors):
        out_key, dir_key = jax.random.split(key)
        x = diff_leaves[leaf_index]
        g = jax.grad(scalar_f)(diff_leaves, args, out_key)[leaf_index]

        def accumulate(k, acc):
            return acc + signed_errors[k] * _direction(dir_key, leaf_index, k, x.shape, x.dtype)

        # E[v v^T] is I/N for unit directions, so sum_k e_k v_k estimates the gradient error.
        estimate = jax.lax.fori_loop(0, spec.directions, accumulate, jnp.zeros_like(x))
        _, idx = jax.lax.top_k(jnp.abs(estimate.ravel()), candidates)
        h = jnp.asarray(spec.step, x.dtype)

        def coordinate(j):
            def at(t):
                moved = list(diff_leaves)
                moved[leaf_index] = (x.ravel().at[j].add(t * h)).reshape(x.shape)
                return scalar_f(moved, args, out_key)

            return jax.vmap(at)(jnp.asarray(offsets, x.dtype))

        f0 = scalar_f(diff_leaves, args, out_key)
        return idx, g.ravel()[idx], jax.vmap(coordinate)(idx), f0

    return jax.jit(run)


class _Spec:
    """Which argument leaves are differentiated, and how to put the arguments back together.

    Hashable by value so that the jitted checker is reused across calls with the same structure.
    """

    def __init__(self, treedef, diff_positions: tuple[int, ...], directions: int, step: float):
        self.treedef = treedef
        self.diff_positions = diff_positions
        self.directions = directions
        self.step = step

    def _key(self):
        return (self.treedef, self.diff_positions, self.directions, self.step)

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _Spec) and self._key() == other._key()

    def rebuild(self, diff_leaves, other_leaves):
        leaves = list(other_leaves)
        for pos, leaf in zip(self.diff_positions, diff_leaves):
            leaves[pos] = leaf
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _select_leaves(args: tuple, argnums: int | Sequence[int]):
    """Flatten all arguments; return treedef, all leaves, positions and names of the checked leaves."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not -len(args) <= n < len(args):
            raise DiagInputError(f"argnums {n} is out of range for {len(args)} argument(s)")
    nums = tuple(n % len(args) for n in nums)
    with_path, treedef = jax.tree_util.tree_flatten_with_path(args)
    positions, names = [], []
    for pos, (path, leaf) in enumerate(with_path):
        argpos = path[0].idx
        if argpos not in nums:
            continue
        if not (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)) or np.size(leaf) == 0:
            continue
        prefix = f"arg{argpos}" if len(nums) > 1 or len(path) == 1 else ""
        positions.append(pos)
        names.append(U.leaf_name(path[1:], prefix))
    if not positions:
        raise DiagInputError(
            f"argument(s) {list(nums)} hold no floating-point arrays to check",
            hint="pass the parameters (a pytree of float arrays) as the differentiated argument",
        )
    return treedef, [leaf for _, leaf in with_path], tuple(positions), names


def check_gradients(
    fn: Callable[..., Any],
    *args: Any,
    argnums: int | Sequence[int] = 0,
    directions: int = 32,
    dtype: str = "float64",
    step: float | None = None,
    threshold: float | None = None,
    seed: int = 0,
    target: str | None = None,
    localize: bool = True,
) -> GradCheckReport:
    """Check ``fn``'s reverse-mode gradient against finite differences, leaf by leaf, in one jit.

    Args:
      fn: a JAX function; its output may be a scalar or any pytree of arrays (then a fixed random
        cotangent makes it scalar, which checks every output).
      *args: example arguments. Floating-point leaves are cast to ``dtype`` for the check.
      argnums: which argument(s) to differentiate (a pytree of parameters, e.g. a dict per layer).
      directions: K, random unit directions per leaf.
      dtype: ``"float64"`` (default; enabled only for the check) or ``"float32"``.
      step: finite-difference step along a unit direction (default by dtype).
      threshold: relative error above which a leaf fails (default by dtype: 1e-6 / 2e-2).
      seed: seed of the random directions.
      target: a name for the report (default: the function's name).
      localize: search for the responsible elements of failed leaves.

    Returns:
      A :class:`GradCheckReport` with one ``"gradient"`` result per floating-point leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"dense": {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}}
      >>> f = lambda p, x: jnp.sum(jnp.tanh(x @ p["dense"]["w"] + p["dense"]["b"]) ** 2)
      >>> check_gradients(f, params, jnp.ones((4, 3))).passed
      True
    """
    if directions < 1:
        raise DiagInputError(f"directions must be at least 1, got {directions}")
    started = time.perf_counter()
    name = target or getattr(fn, "__name__", type(fn).__name__)
    report = GradCheckReport(target=name, framework="jax")
    with U.precision(dtype):
        args = U.cast_floats(tuple(args), dtype)
        effective = U.output_dtype(fn, args)
        if effective != dtype:
            report.notes.append(
                f"asked for {dtype}, but the function computes in {effective} (a dtype fixed inside "
                f"it); judged with {effective} thresholds"
            )
        h = step_for(effective, step)
        tol = threshold_for(effective, threshold)
        treedef, leaves, positions, names = _select_leaves(args, argnums)
        spec = _Spec(treedef, positions, int(directions), h)
        diff = [leaves[p] for p in positions]
        key = jax.random.key(seed)
        everything = tuple(range(len(diff)))
        # Pass 1: central differences only (two evaluations per direction).
        f0, per_leaf = _checker(fn, spec, (1.0, -1.0), everything)(diff, leaves, key)
        f0 = float(f0)
        first = []
        for analytic, values, rms in per_leaf:
            analytic, values = np.asarray(analytic), np.asarray(values, dtype=np.float64)
            central = (values[:, 0] - values[:, 1]) / (2 * h)
            stats = direction_stats(analytic, central, central, central, f0=f0, step=h, dtype=effective)
            first.append((analytic, values, float(rms), central, stats))
        # Pass 2, only for leaves whose central differences disagree (a kink or a bug): the points
        # at +-2h for second-order one-sided differences on either side of a kink.
        suspect = tuple(i for i, item in enumerate(first) if item[4].error > 0.01 * tol)
        if suspect:
            _, extra = _checker(fn, spec, (2.0, -2.0), suspect)(diff, leaves, key)
            for i, (_, values2, _) in zip(suspect, extra):
                analytic, values, rms, central, _ = first[i]
                fp1, fm1 = values.T
                fp2, fm2 = np.asarray(values2, dtype=np.float64).T
                forward = (-3 * f0 + 4 * fp1 - fp2) / (2 * h)
                backward = (3 * f0 - 4 * fm1 + fm2) / (2 * h)
                stats = direction_stats(analytic, central, forward, backward, f0=f0, step=h, dtype=effective)
                first[i] = (analytic, values, rms, central, stats)
        for i, (leaf_name, (analytic, values, rms, central, stats)) in enumerate(zip(names, first)):
            passed = stats.error <= tol
            shape = tuple(int(s) for s in diff[i].shape)
            result = LeafResult(
                name=leaf_name, check="gradient", shape=shape, error=stats.error, threshold=tol,
                passed=passed, dtype=effective, directions=int(directions),
                worst_direction=stats.worst_direction, nonsmooth_directions=stats.nonsmooth,
                method="reverse-mode gradient vs finite differences along random directions, jax.jit(vmap)",
            )
            if not passed:
                if localize:
                    result.worst_elements = _localize(fn, spec, i, diff, leaves, key, stats.signed_errors,
                                                     tol, float(rms), f0, h, effective, shape)
                result.message = _failure_message(result)
            report.results.append(result)
    report.seconds = time.perf_counter() - started
    return report


def _localize(fn, spec, i, diff, leaves, key, signed, tol, rms, f0, h, dtype, shape) -> list[list[int]]:
    size = int(np.prod(shape)) if shape else 1
    m = min(CANDIDATES, size)
    errs = jnp.asarray(signed, dtype=diff[i].dtype)
    errs = jnp.where(jnp.isfinite(errs), errs, 0)
    idx, analytic, values, _ = _localizer(fn, spec, i, m)(diff, leaves, key, errs)
    values = np.asarray(values, dtype=np.float64)
    fp1, fm1, fp2, fm2 = values.T
    estimates = np.stack([(fp1 - fm1) / (2 * h), (-3 * f0 + 4 * fp1 - fp2) / (2 * h), (3 * f0 - 4 * fm1 + fm2) / (2 * h)])
    analytic = np.asarray(analytic, dtype=np.float64)
    best = np.take_along_axis(estimates, np.argmin(np.abs(estimates - analytic), axis=0)[None], axis=0)[0]
    scale = 1e-3 * rms + noise_floor(f0, h, dtype)
    return confirmed_elements(np.asarray(idx), analytic, best, threshold=tol, scale=scale, shape=shape)


def _failure_message(r: LeafResult) -> str:
    where = f"layer {r.layer}, parameter {r.name}" if r.layer != r.name else f"parameter {r.name}"
    text = (
        f"the analytic gradient of {where} disagrees with finite differences: relative error "
        f"{r.error:.1e} > {r.threshold:.0e} ({r.dtype})"
    )
    if r.worst_elements:
        text += "; worst elements " + ", ".join(str(tuple(e)) for e in r.worst_elements[:3])
    elif r.size > 1:
        text += "; the error is spread over many elements (a sign, transpose or missing term)"
    return text


def check_model(
    model: Any,
    loss_fn: Callable[..., Any],
    *batch: Any,
    directions: int = 32,
    dtype: str = "float64",
    **kwargs: Any,
) -> GradCheckReport:
    """Check a Flax NNX model's loss gradient with respect to every ``nnx.Param``, per layer.

    Args:
      model: an ``nnx.Module``; it is not modified (its state is copied and cast for the check).
      loss_fn: ``loss_fn(model, *batch) -> scalar``.
      *batch: example inputs and targets.
      directions, dtype, kwargs: as for :func:`check_gradients`.

    Returns:
      A :class:`GradCheckReport` whose leaf names are module paths, e.g. ``layers/0/kernel``.

    Example:
      >>> from flax import nnx; import jax.numpy as jnp
      >>> model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
      >>> loss = lambda m, x: jnp.mean(m(x) ** 2)
      >>> check_model(model, loss, jnp.ones((4, 3))).passed
      True
    """
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def model_loss(params, rest, *batch):
        return loss_fn(nnx.merge(graphdef, params, rest), *batch)

    kwargs.setdefault("target", type(model).__name__)
    return check_gradients(model_loss, params, rest, *batch, argnums=0, directions=directions, dtype=dtype, **kwargs)
