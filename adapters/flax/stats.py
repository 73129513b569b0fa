"""The statistics computed inside the jitted step, and the packed layout they travel in.

Everything a step records is packed into one float32 vector (one device-to-host copy per step;
about 0.7 ms a step was lost copying ~50 separate scalars). The layout is decided at trace time
and kept on the host to decode the vector.

Cost model (measured, notes/STACK.md): on a CPU the reductions are memory traffic, so each tensor
is read once: one sum of squares per parameter, gradient and update tensor (a NaN or Inf shows up
in it: no separate ``isfinite`` pass), and one fused set of sums per activation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from diag.adapters.flax.forward import path_str

# The leading entries of every packed vector, measured on every step: loss, learning rate,
# skipped flag, loss scale, then the global sums of squares of gradient, parameters and update.
SCALARS = 7

# Sigmoid within 1e-3 of 0 or 1  <=>  |z| > ln(999); tanh within 1e-3 of +-1  <=>  |z| > atanh(0.999).
SATURATION_THRESHOLD = {"sigmoid": math.log(999.0), "tanh": math.atanh(0.999)}
# Activations whose output is exactly zero iff the layer output is <= 0.
ZERO_AT_NONPOSITIVE = {"relu"}


def unit_of(name: str, units=()) -> str:
    """The layer a module path belongs to: itself, or the recurrent module (``nnx.RNN``) it runs
    inside: a recurrent module is one layer, measured at its output, as in PyTorch."""
    for unit in units:
        if name == unit or name.startswith(unit + "/"):
            return unit
    return name


def layer_groups(tree, units=()) -> tuple[list[str], list[int]]:
    """Group the leaves of a parameter-shaped tree by owning module (or recurrent unit).

    Returns:
      (layer names in tree order, for each leaf the index of its layer).
    """
    names: list[str] = []
    index: dict[str, int] = {}
    owner = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        # Variables (not plain arrays) add an attribute key ('value'): drop it.
        path = [p for p in path if not isinstance(p, jax.tree_util.GetAttrKey)]
        name = unit_of(path_str(path[:-1]), units)
        if name not in index:
            index[name] = len(names)
            names.append(name)
        owner.append(index[name])
    return names, owner


def multi_sum(*operands) -> list[jax.Array]:
    """Full sums of several same-shape arrays, each its own reduction.

    A single variadic ``lax.reduce`` reading all of them in one loop was measured slower on the
    CPU (about 1.8x for three 512x512 operands): XLA vectorizes plain sums, not variadic ones.
    """
    return [jnp.sum(jnp.asarray(o, jnp.float32)) for o in operands]


def sumsq_by_layer_triple(grads, params, updates, units=()) -> jax.Array:
    """``(n_layers, 3)`` float32 sums of squares of gradient, parameters and update per layer.

    Each tensor is read once per statistic: no isfinite pass (a NaN or Inf shows in the sum).
    """
    names, owner = layer_groups(grads, units)
    totals = [[jnp.zeros((), jnp.float32)] * 3 for _ in names]
    for g, p, u, k in zip(jax.tree.leaves(grads), jax.tree.leaves(params), jax.tree.leaves(updates), owner):
        g, p, u = (jnp.asarray(t).astype(jnp.float32) for t in (g, p, u))
        sums = multi_sum(g * g, p * p, u * u)
        totals[k] = [t + s for t, s in zip(totals[k], sums)]
    if not totals:
        return jnp.zeros((0, 3), jnp.float32)
    return jnp.stack([jnp.stack(t) for t in totals])


# A global sum of squares not measured this step (sums of squares are never negative; NaN would
# read as a non-finite tensor).
NOT_MEASURED = -1.0


# Leaves at most this big (64 KiB of float32: biases, small kernels) are summed as one
# concatenated vector per tree: one kernel instead of one per leaf, for a copy of a few KiB.
SMALL_LEAF = 16384


def global_sumsq_triple(grads, params, updates, which=("grad", "param", "update")) -> jax.Array:
    """``(3,)`` float32: global sums of squares of gradient, parameters and update, those not in
    ``which`` left as :data:`NOT_MEASURED`.

    What every step records (the per-layer detail is on the sampling schedule). Each large leaf
    is read once per statistic by a reduction of its own (XLA on a CPU fuses the square into it,
    but fuses no reduction into the optimizer's own elementwise passes: it has no multi-output
    fusion there); the small leaves of a tree are summed together as one vector.

    The gradient leaves pass through an optimization barrier: without it XLA merges our ``g * g``
    with the optimizer's own ``g ** 2`` (Adam's second moment) and writes that square to memory
    for both to read, an extra write and read of every gradient. With the barrier and the small
    leaves summed together, the README's MLP step with Adam compiles to 68 kernels with the
    gradient norm (82 before; 59 without any) and 78 with all three (126 before; 92 while the
    update was summed as such, not as the change it made: ``transform.applied_change``).
    """
    trees = {"grad": grads, "param": params, "update": updates}
    totals = []
    for name, tree in trees.items():
        if name not in which:
            totals.append(jnp.float32(NOT_MEASURED))
            continue
        leaves = jax.tree.leaves(tree)
        if name == "grad":  # one barrier per leaf: each sum may start once its gradient exists
            leaves = [jax.lax.optimization_barrier(a) for a in leaves]
        leaves = [jnp.asarray(t).astype(jnp.float32) for t in leaves]
        large = [a for a in leaves if a.size > SMALL_LEAF]
        small = [a.reshape(-1) for a in leaves if a.size <= SMALL_LEAF]
        if small:
            large.append(small[0] if len(small) == 1 else jnp.concatenate(small))
        totals.append(sum((jnp.sum(a * a) for a in large), jnp.zeros((), jnp.float32)))
    return jnp.stack(totals)


def sumsq_by_layer(tree) -> jax.Array:
    """``(n_layers,)`` float32: the sum of squares of each layer's tensors (tree order)."""
    names, owner = layer_groups(tree)
    totals = [jnp.zeros((), jnp.float32) for _ in names]
    for leaf, k in zip(jax.tree.leaves(tree), owner):
        a = jnp.asarray(leaf).astype(jnp.float32)
        totals[k] = totals[k] + jnp.sum(a * a)
    return jnp.stack(totals) if totals else jnp.zeros((0,), jnp.float32)


def activation_block(outputs: list, activations: list[str | None]) -> jax.Array:
    """``(6, n)`` float32 rows: sum, sum of squares, count, zeros, saturated, non-finite.

    ``zeros`` counts outputs <= 0 for layers feeding a ReLU (exactly the ReLU's zero outputs);
    ``saturated`` counts outputs beyond the sigmoid/tanh saturation threshold. Both are NaN for
    layers where they do not apply.

    Every sum of one output comes from a single reduction (see :func:`_partial_sums`), which
    XLA:CPU fuses with the layer's last operation (the bias addition): the output is read in one
    pass and never written out for the statistics. Separate sums made XLA write the output to a
    buffer of its own for them to read (and the comparisons a float mask each): a larger
    temporary arena, which XLA:CPU allocates for every run of the step and the operating system
    faults in page by page each time. On the CNN of benchmarks/flax_overhead.py the measuring
    step's arena was 102.2 MB against the bare step's 93.8 MB; it is now the same size.
    """
    cols = []
    for z, act in zip(outputs, activations):
        z = jnp.asarray(z).astype(jnp.float32)
        n = jnp.float32(z.size)
        nan = jnp.float32(jnp.nan)
        thr = SATURATION_THRESHOLD.get(act or "")
        operands = [z, z * z, (~jnp.isfinite(z)).astype(jnp.float32)]
        if act in ZERO_AT_NONPOSITIVE:
            operands.append((z <= 0).astype(jnp.float32))
        if thr is not None:
            operands.append((jnp.abs(z) > thr).astype(jnp.float32))
        sums = _partial_sums(operands)
        zeros = sums[3] if act in ZERO_AT_NONPOSITIVE else nan
        sat = sums[-1] if thr is not None else nan
        cols.append(jnp.stack([sums[0], sums[1], n, zeros, sat, sums[2]]))
    return jnp.stack(cols, axis=1) if cols else jnp.zeros((6, 0), jnp.float32)


def _add_all(a, b):
    return tuple(x + y for x, y in zip(a, b))


def _partial_sums(operands: list) -> list[jax.Array]:
    """Full sums of same-shape arrays, all read by one variadic reduction over the middle axes
    (the batch and the last axis kept; for a 2-D array, over the batch), then each small table
    of partial sums summed alone.

    One reduction instruction is one loop over the elements that XLA fuses with whatever
    produced them, so nothing of their size is written; the partial sums keep the float32
    rounding of each to a few thousand additions (a single variadic sum over everything,
    one accumulator each, lost 1e-3 of a sum of squares over 2M entries). Counts (sums of 0/1)
    stay exact below 2**24 entries.
    """
    shape = operands[0].shape
    if len(shape) < 2:
        operands = [o.reshape(1, -1) for o in operands]
        shape = operands[0].shape
    axes = tuple(range(1, len(shape) - 1)) if len(shape) >= 3 else (0,)
    init = tuple(jnp.zeros((), jnp.float32) for _ in operands)
    partial = jax.lax.reduce(tuple(operands), init, _add_all, axes)
    return [jnp.sum(p) for p in partial]


def batch_block(x) -> jax.Array:
    """``(5,)`` float32: mean, std, min, max, non-finite count of an input batch.

    The non-finite count is a pass of its own (and a mask XLA:CPU writes out), taken only when
    the minimum or the maximum is not finite: both propagate a NaN, and an Inf is one of them, so
    with both finite the count is exactly 0.
    """
    x = jnp.asarray(x).astype(jnp.float32)
    mean = jnp.mean(x)
    lo, hi = jnp.min(x), jnp.max(x)
    nonfinite = jax.lax.cond(jnp.isfinite(lo) & jnp.isfinite(hi), lambda x: jnp.zeros((), jnp.float32),
                             lambda x: jnp.sum((~jnp.isfinite(x)).astype(jnp.float32)), x)
    return jnp.stack([mean, jnp.sqrt(jnp.maximum(jnp.mean(x * x) - mean * mean, 0.0)), lo, hi, nonfinite])


def label_histogram(labels, num_classes: int) -> jax.Array:
    """``(num_classes,)`` float32 counts of integer labels (one-hot labels are argmax-ed)."""
    y = jnp.asarray(labels)
    if jnp.issubdtype(y.dtype, jnp.floating) and y.ndim >= 1 and y.shape[-1] == num_classes:
        y = jnp.argmax(y, axis=-1)
    return jnp.zeros((num_classes,), jnp.float32).at[y.reshape(-1).astype(jnp.int32)].add(1.0)


@dataclass
class Layout:
    """Where each statistic sits in the packed vector of one compiled variant of the step.

    Attributes:
      parts: (name, size) in packing order.
      param_layers: layer names of the gradient/parameter/update blocks (tree order).
      act_layers: layer names of the activation block columns.
      act_kinds: the activation following each of those layers.
      full: whether this variant records the per-layer statistics.
    """

    parts: list[tuple[str, int]] = field(default_factory=list)
    param_layers: list[str] = field(default_factory=list)
    act_layers: list[str] = field(default_factory=list)
    act_kinds: list[str | None] = field(default_factory=list)
    full: bool = False

    @property
    def size(self) -> int:
        return sum(n for _, n in self.parts)

    def has_nonfinite(self, vector: np.ndarray) -> bool:
        """Whether the step saw a NaN/Inf: loss, a norm, an activation or an input entry."""
        parts = self.split(vector)
        if not np.isfinite(parts["scalars"][0]):
            return True
        if "table" in parts and not np.isfinite(parts["table"]).all():
            return True
        if "acts" in parts and parts["acts"].size and np.nansum(parts["acts"].reshape(6, -1)[5]) > 0:
            return True
        return "input" in parts and parts["input"][4] > 0

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Cut a fetched vector into its named parts."""
        out, at = {}, 0
        for name, n in self.parts:
            out[name] = vector[at:at + n]
            at += n
        return out
