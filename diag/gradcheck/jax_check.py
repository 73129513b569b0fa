"""Jitted directional gradient checks of JAX functions and Flax NNX models.

Along K random unit directions ``v``, the reverse-mode gradient dotted with ``v`` (``jax.jvp``
refuses ``custom_vjp`` functions, reverse mode does not) is compared with finite differences of
the function along ``v``, in float64 by default. One compiled program computes the gradient, once
per point; a second computes its K directional derivatives and the 2*K perturbed function values
(``jax.vmap`` over directions and steps). The second one's inputs say which leaves the directions
cover (per-leaf weights, chosen on the host from the gradient), so every stage below reuses it
and a passing check compiles twice (a failed leaf's element search, step 4, compiles a third):

1. Joint screen (float64): one set of K directions over all parameter leaves together, each
   leaf's block weighted by the inverse of its RMS gradient so that every leaf weighs alike in
   the joint derivative. The joint relative error is then about the RMS of the per-leaf errors,
   so a leaf over the threshold lifts it above ``threshold / sqrt(L)``; the screen passes below a
   third of that. 2*K evaluations check the whole model.
2. Per leaf, when the screen does not pass (a bug, a kink, or float32, whose rounding alone is
   near the screen): the same program with the weight on one leaf, K directions per leaf.
3. Where central differences disagree, the same directions at +-2h give one-sided differences
   that are exact on the far side of a kink (see :mod:`diag.gradcheck.compare`).
4. Failed leaves: the directional errors projected back onto their directions point at candidate
   elements, each confirmed by its own coordinate finite difference (a second, small program,
   compiled only when something fails).

References:
  Seed documents 000 and 002 (shared/seeds): numerical gradient checking as the standard test of
  backpropagation; relative error below about 1e-5 in double precision.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diag.errors import DiagInputError
from diag.gradcheck._cache import cache_if_hashable
from diag.gradcheck import _directions as D
from diag.gradcheck import _jax_util as U
from diag.gradcheck.compare import (
    DirectionStats,
    confirm_coordinates,
    kink_robust_stats,
    leaf_result,
    step_for,
    threshold_for,
)
from diag.gradcheck.options import CheckOptions, CheckSettings, Unpack
from diag.gradcheck.result import GradCheckReport

# Elements of perturbed parameter copies one vmap batch may hold; more are evaluated in sequential
# chunks of directions (jax.lax.map with batch_size). On CPU, chunks that stay in cache are 2-4x
# faster than one large batch (measured at 1e5 and 1e6 parameters: 27 vs 122 ms, 416 vs 688 ms);
# accelerators want the parallelism of large batches (float64 at 2**25: 256 MB).
MAX_BATCH_ELEMENTS = {"cpu": 2**17}
DEFAULT_BATCH_ELEMENTS = 2**25
CANDIDATES = 8
# The joint screen passes below threshold / (SCREEN_MARGIN * sqrt(leaves)): a leaf at the
# threshold lifts the joint error to about threshold / sqrt(leaves), and K directions scatter it.
SCREEN_MARGIN = 3.0
# Leaves whose RMS gradient is below this fraction of the largest are checked on their own: in the
# joint direction they would take nearly all of the step and drown the others in rounding.
SCREEN_FLOOR = 1e-3
CENTRAL, ONE_SIDED = (1.0, -1.0), (2.0, -2.0)


class _Spec:
    """Which argument leaves are differentiated, and how to put the arguments back together.

    Hashable by value so that the compiled program is reused across calls with the same structure.
    """

    def __init__(self, treedef, diff_positions: tuple[int, ...], directions: int):
        self.treedef = treedef
        self.diff_positions = diff_positions
        self.directions = directions

    def _key(self):
        return (self.treedef, self.diff_positions, self.directions)

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _Spec) and self._key() == other._key()

    def rebuild(self, diff_leaves, other_leaves):
        leaves = list(other_leaves)
        for pos, leaf in zip(self.diff_positions, diff_leaves):
            leaves[pos] = leaf
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _starts(diff) -> list[int]:
    """Global index of each leaf's first element: leaves draw signs from disjoint index ranges."""
    return [int(s) for s in np.cumsum([0] + [int(np.size(x)) for x in diff[:-1]])]


def _map(body, xs, batch: int, total: int):
    if batch >= total:
        return jax.vmap(body)(xs)
    if batch == 1:  # one direction at a time: a plain loop, without tracing the body through vmap
        return jax.lax.map(body, xs)
    return jax.lax.map(body, xs, batch_size=batch)


def _scalar(fn: Callable, spec: _Spec):
    def scalar_f(diff_leaves, args, key):
        return U.scalarize(fn(*spec.rebuild(diff_leaves, args)), key)

    return scalar_f


@cache_if_hashable()
def _gradient(fn: Callable, spec: _Spec):
    """The compiled function value and reverse-mode gradient at the point (cached, like :func:`_program`)."""
    scalar_f = _scalar(fn, spec)

    def run(diff, args, seed):
        return jax.value_and_grad(scalar_f)(diff, args, jax.random.key(seed))

    return U.jit_check_program(run, runs_once=True)


@cache_if_hashable()
def _program(fn: Callable, spec: _Spec):
    """The compiled directional check for one function and argument structure (cached: repeated
    checks reuse it).

    ``run(diff, args, seed, scaled, weights, offsets, h)`` evaluates the function at
    ``x + t*h*v_k`` for each direction ``k`` and offset ``t``, where ``v_k`` covers every leaf
    ``l`` with weight ``w_l`` (unit norm over leaves, chosen on the host), and returns the
    gradient dotted with each ``v_k`` and the function values. ``v_k`` restricted to leaf ``l``
    is ``w_l * s_l / sqrt(n_l)`` with ``s`` the joint signs, so the dot is one product of ``s``
    with ``scaled``, the gradient's leaves times ``w_l / sqrt(n_l)``, concatenated (on the host,
    :meth:`_Checker.scaled`): a reduction per leaf per direction would be an XLA:CPU kernel of
    its own to compile.
    """
    scalar_f = _scalar(fn, spec)
    k_total = spec.directions

    def run(diff, args, seed, scaled, weights, offsets, h):
        out_key = jax.random.key(seed)  # only drawn from when the output is not a scalar

        def body(k):
            signs, us = D.signs_of_leaves(D.stream(seed, k), diff)  # leaf l's signs start at _starts(diff)[l]

            def at(t):
                moved = [x + (t * h * weights[i]).astype(x.dtype) * u for i, (x, u) in enumerate(zip(diff, us))]
                return scalar_f(moved, args, out_key)

            return jnp.dot(scaled, signs), jax.vmap(at)(offsets)

        total = sum(int(np.size(x)) for x in diff)
        budget = MAX_BATCH_ELEMENTS.get(jax.default_backend(), DEFAULT_BATCH_ELEMENTS)
        batch = max(1, budget // max(1, 2 * total))
        return _map(body, jnp.arange(k_total, dtype=jnp.uint32), batch, k_total)

    return U.jit_check_program(run)


@cache_if_hashable()
def _localizer(fn: Callable, spec: _Spec, leaf_index: int, candidates: int):
    """The compiled element search for one failed leaf: back-projection, then coordinate checks."""
    scalar_f = _scalar(fn, spec)
    offsets = (1.0, -1.0, 2.0, -2.0)

    def run(diff, args, seed, signed_errors, g, h):
        out_key = jax.random.key(seed)
        x = diff[leaf_index]
        start = _starts(diff)[leaf_index]

        def accumulate(k, acc):
            v = D.unit_signs(D.stream(seed, k.astype(jnp.uint32)), start, x.shape, x.dtype)
            return acc + signed_errors[k] * v

        # E[v v^T] is I/N for the sign directions, so sum_k e_k v_k estimates the gradient error.
        estimate = jax.lax.fori_loop(0, spec.directions, accumulate, jnp.zeros_like(x))
        _, idx = jax.lax.top_k(jnp.abs(estimate.ravel()), candidates)

        def coordinate(j):
            def at(t):
                moved = list(diff)
                moved[leaf_index] = (x.ravel().at[j].add(t * h)).reshape(x.shape)
                return scalar_f(moved, args, out_key)

            return jax.vmap(at)(jnp.asarray(offsets, x.dtype))

        return idx, g.ravel()[idx], jax.vmap(coordinate)(idx)

    return U.jit_check_program(run)


class _Run(NamedTuple):
    f0: float
    analytic: np.ndarray  # (K,): the gradient dotted with each direction
    values: np.ndarray  # (K, 2): the function at the two offsets


class _Checker:
    """Calls of the compiled programs for one point: the gradient once, then the joint screen,
    per-leaf checks and kinks along directions weighted per leaf."""

    def __init__(self, fn, spec, diff, leaves, seed: int, h: float, dtype: str):
        self.program = _program(fn, spec)
        self.diff, self.leaves, self.h, self.dtype = diff, leaves, h, dtype
        self.np_dtype = np.dtype(diff[0].dtype)
        self.seed = np.uint32(seed % 2**32)
        f0, self.grads = _gradient(fn, spec)(diff, leaves, self.seed)
        self.f0 = float(f0)
        # The gradient's per-leaf sums on the host: in a program, a reduction per leaf costs more
        # compile time than these sums take here.
        self.host_grads = [np.asarray(g) for g in self.grads]
        self.rms = np.array([np.sqrt(np.mean(np.square(g, dtype=np.float64))) for g in self.host_grads])

    def balanced(self) -> np.ndarray:
        """Leaf weights for the joint screen: the inverse RMS gradient, so that every leaf weighs
        alike; leaves under ``SCREEN_FLOOR`` of the largest are left out (weight 0)."""
        top = float(np.max(self.rms))
        if not top > 0:
            return np.zeros_like(self.rms)
        floor = SCREEN_FLOOR * top
        return np.where(self.rms >= floor, top / np.maximum(self.rms, floor), 0.0)

    def scaled(self, w: np.ndarray) -> np.ndarray:
        """The gradient's leaves times ``w_l / sqrt(n_l)``, flat and concatenated (see :func:`_program`).

        A leaf the directions leave out (``w_l`` = 0) is zeros, not its gradient times 0: a NaN or
        infinite gradient in that leaf would make every other leaf's derivative NaN.
        """
        dt = self.np_dtype
        return np.concatenate([(g * dt.type(w[i] / np.sqrt(g.size))).astype(dt, copy=False).ravel() if w[i] != 0
                               else np.zeros(g.size, dt) for i, g in enumerate(self.host_grads)])

    def run(self, offsets, weights) -> tuple[_Run, np.ndarray]:
        """One call along directions with leaf ``weights`` (normalized here); with the weights used."""
        w = np.asarray(weights, np.float64)
        w = w / max(float(np.linalg.norm(w)), float(np.finfo(self.np_dtype).tiny))
        analytic, values = self.program(
            self.diff, self.leaves, self.seed, self.scaled(w), w.astype(self.np_dtype),
            np.asarray(offsets, self.np_dtype), np.asarray(self.h, self.np_dtype),
        )
        return _Run(self.f0, np.asarray(analytic, np.float64), np.asarray(values, np.float64)), w

    def stats(self, weights, loose: float) -> tuple[DirectionStats, np.ndarray]:
        """Directional errors along the directions of ``weights``: central differences, then, if
        their error exceeds ``loose`` (a kink or a bug), one-sided differences from +-2h; with the
        weights used (unit norm)."""
        first, w = self.run(CENTRAL, weights)
        fp1, fm1 = first.values.T
        stats = kink_robust_stats(first.analytic, fp1, fm1, lambda: tuple(self.run(ONE_SIDED, weights)[0].values.T),
                                  f0=first.f0, step=self.h, dtype=self.dtype, loose=loose)
        return stats, w


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
    **options: Unpack[CheckOptions],
) -> GradCheckReport:
    """Check ``fn``'s reverse-mode gradient against finite differences, per leaf, in one compiled program.

    Args:
      fn: a JAX function; its output may be a scalar or any pytree of arrays (then a fixed random
        cotangent makes it scalar, which checks every output).
      *args: example arguments. Floating-point leaves are cast to ``dtype`` for the check.
      argnums: which argument(s) to differentiate (a pytree of parameters, e.g. a dict per layer).
      **options: the check's settings, all optional (:class:`~diag.gradcheck.options.CheckOptions`):
        ``directions`` (K random unit directions, default 32), ``dtype`` (``"float64"``, the
        default, enabled only for the check, or ``"float32"``), ``step`` and ``threshold``
        (default by dtype), ``seed``, ``target`` (the report's name) and ``localize`` (search
        for the responsible elements of failed leaves, default True).

    Returns:
      A :class:`GradCheckReport` with one ``"gradient"`` result per floating-point leaf. Leaves
      cleared by the joint screen carry the joint error (about the RMS of the per-leaf errors);
      the others their own.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"dense": {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}}
      >>> f = lambda p, x: jnp.sum(jnp.tanh(x @ p["dense"]["w"] + p["dense"]["b"]) ** 2)
      >>> check_gradients(f, params, jnp.ones((4, 3))).passed
      True
    """
    settings = CheckSettings.of(options, "check_gradients")
    dtype = settings.dtype
    started = time.perf_counter()
    report = GradCheckReport(target=settings.report_name(fn), framework="jax")
    with U.precision(dtype):
        args = U.cast_floats(tuple(args), dtype)
        effective = U.output_dtype(fn, args)
        if effective != dtype:
            report.notes.append(
                f"asked for {dtype}, but the function computes in {effective} (a dtype fixed inside "
                f"it); judged with {effective} thresholds"
            )
        h = step_for(effective, settings.step)
        tol = threshold_for(effective, settings.threshold)
        treedef, leaves, positions, names = _select_leaves(args, argnums)
        spec = _Spec(treedef, positions, int(settings.directions))
        diff = [leaves[p] for p in positions]
        checker = _Checker(fn, spec, diff, leaves, settings.seed, h, effective)
        n = len(diff)
        # stats per leaf index: (DirectionStats, how it was checked)
        verdicts: dict[int, tuple[DirectionStats, str]] = {}
        if effective == "float64" and n > 1:
            screen = tol / (SCREEN_MARGIN * np.sqrt(n))
            joint, weights = checker.stats(checker.balanced(), screen)
            covered = np.flatnonzero(weights > 0)
            if joint.error <= screen and len(covered) > 1:
                how = f"joint directions over {len(covered)} leaves, screen {screen:.0e}"
                for i in covered:
                    verdicts[int(i)] = (joint, how)
                report.notes.append(
                    f"{len(covered)} of {n} leaves cleared together by one joint pass (each shows the joint "
                    f"error, about the RMS of their own); the rest, if any, checked one by one"
                )
        for i in range(n):
            if i in verdicts:
                continue
            stats, _ = checker.stats(np.eye(n)[i], 0.01 * tol)
            verdicts[i] = (stats, "per leaf")
        for i, leaf_name in enumerate(names):
            stats, how = verdicts[i]
            shape = tuple(int(s) for s in diff[i].shape)

            def search(stats, i=i, shape=shape):
                return _localize(fn, spec, i, checker, stats.signed_errors, tol, shape)

            report.results.append(leaf_result(
                leaf_name, shape, stats, threshold=tol, dtype=effective, directions=int(settings.directions),
                method=f"reverse-mode gradient vs finite differences along random sign directions ({how}), jax.jit(vmap)",
                gradient="analytic gradient", localize=search if settings.localize else None,
            ))
    report.seconds = time.perf_counter() - started
    return report


def _localize(fn, spec, i, checker: _Checker, signed, tol, shape) -> list[list[int]]:
    size = int(np.prod(shape)) if shape else 1
    m = min(CANDIDATES, size)
    dt = checker.np_dtype
    errs = np.where(np.isfinite(signed), signed, 0).astype(dt)
    h, f0 = checker.h, checker.f0
    idx, analytic, values = _localizer(fn, spec, i, m)(
        checker.diff, checker.leaves, checker.seed, errs, checker.grads[i], np.asarray(h, dt))
    return confirm_coordinates(idx, analytic, values, f0=f0, step=h, dtype=checker.dtype, threshold=tol,
                               rms=float(checker.rms[i]), shape=shape)


@cache_if_hashable()
def _model_loss(graphdef, loss_fn: Callable):
    """The loss as a function of (params, rest, *batch); cached so that checking the same model
    structure again reuses the compiled program (a fresh closure per call would recompile)."""
    from flax import nnx

    def model_loss(params, rest, *batch):
        return loss_fn(nnx.merge(graphdef, params, rest), *batch)

    return model_loss


def check_model(
    model: Any,
    loss_fn: Callable[..., Any],
    *batch: Any,
    **options: Unpack[CheckOptions],
) -> GradCheckReport:
    """Check a Flax NNX model's loss gradient with respect to every ``nnx.Param``, per layer.

    Args:
      model: an ``nnx.Module``; it is not modified (its state is copied and cast for the check).
      loss_fn: ``loss_fn(model, *batch) -> scalar``.
      *batch: example inputs and targets.
      **options: the check's settings, as for :func:`check_gradients` (``target`` defaults to the
        model's class name).

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
    options.setdefault("target", type(model).__name__)
    return check_gradients(_model_loss(graphdef, loss_fn), params, rest, *batch, argnums=0, **options)
