"""Random sign directions from a counter-based integer hash, generated inside the compiled check.

Direction ``k`` of a leaf with ``n`` elements whose first element has global index ``offset`` is
``v[i] = s(seed, k, offset + i) / sqrt(n)`` with ``s`` in ``{-1, +1}``: a unit vector with
``E[v v^T] = I / n``, so projecting directional errors back onto the directions estimates the
gradient error (the element search relies on this), and every element moves by exactly
``h / sqrt(n)``, so a one-element bug shows in every direction with the same weight.

Why not ``jax.random.normal``: threefry costs about a second of compilation per leaf shape and
0.2 s per 3 million numbers on 2 CPU cores; this hash (two rounds of lowbias32, Chris Wellons
2018) compiles in about 0.1 s and generates the same count in 0.02 s. The directions only need
to be unrelated to the code under test, not cryptographic.

Written with ``jax.lax`` primitives rather than ``jnp`` operators: each ``jnp`` operator is a small
jitted function that JAX traces (and, inside ``vmap``, batches) on every use, and the hash has ~10
of them per leaf; the primitives are recorded directly. Same arithmetic (uint32, wrapping), same
bits; a cold check traces these once per leaf.

Imported only by the JAX checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_GOLDEN = 0x9E3779B9


def _u32(value: int, like):
    """The constant ``value`` as uint32, broadcast to ``like``'s shape (lax ops take equal shapes)."""
    return lax.full_like(like, value, jnp.uint32)


def _xorshift(x, bits: int):
    return lax.bitwise_xor(x, lax.shift_right_logical(x, _u32(bits, x)))


def _mix(x):
    """lowbias32: a bijective avalanche mix of uint32 values."""
    x = lax.mul(_xorshift(x, 16), _u32(0x7FEB352D, x))
    x = lax.mul(_xorshift(x, 15), _u32(0x846CA68B, x))
    return _xorshift(x, 16)


def stream(seed, k):
    """A per-(seed, direction) 32-bit stream key; ``seed`` and ``k`` are traced uint32 scalars."""
    seed = lax.convert_element_type(seed, jnp.uint32)
    k = lax.convert_element_type(k, jnp.uint32)
    return _mix(lax.add(_mix(lax.bitwise_xor(seed, _u32(0x5BD1E995, seed))), lax.mul(k, _u32(_GOLDEN, k))))


def unit_signs(key, offset: int, shape: tuple[int, ...], dtype):
    """A unit-norm direction of ``shape``: random signs over ``sqrt(size)``.

    Args:
      key: from :func:`stream`.
      offset: the global index of the leaf's first element (leaves get disjoint index ranges).
      shape, dtype: the leaf's.

    Returns:
      An array of ``shape`` and ``dtype`` with entries ``+-1/sqrt(size)``.

    Example:
      >>> v = unit_signs(stream(0, 0), 0, (3, 4), jnp.float32)
      >>> round(float(jnp.sum(v * v)), 6)  # float32
      1.0
    """
    n = int(np.prod(shape)) if shape else 1
    index = lax.iota(jnp.uint32, n)
    keys = lax.broadcast(lax.convert_element_type(key, jnp.uint32), (n,))
    bits = _mix(lax.add(_mix(lax.bitwise_xor(lax.add(index, _u32(offset % 2**32, index)), keys)), keys))
    positive = lax.eq(lax.shift_right_logical(bits, _u32(31, bits)), _u32(1, bits))
    scale = lax.full((n,), 1.0 / np.sqrt(n), dtype)
    return lax.reshape(lax.select(positive, scale, lax.neg(scale)), tuple(shape))


def signs_of_leaves(key, leaves) -> tuple:
    """:func:`unit_signs` of every leaf at once, and the joint signs they are cut from.

    The leaves' index ranges are consecutive from 0: leaf ``l``'s direction is bit for bit
    ``unit_signs(key, start, leaf.shape, leaf.dtype)`` with ``start`` the number of elements before
    the leaf, from one hash over the joint range (one hash in the compiled check instead of one per
    leaf, about a fifth less XLA compile time at 1e5 parameters).

    Returns:
      ``(signs, directions)``: ``signs`` of shape ``(total,)`` and the first leaf's dtype, entries
      ``+-1`` (leaf ``l``'s block, scaled by ``1/sqrt(size_l)``, is its direction), and the
      per-leaf unit directions.
    """
    sizes = [int(np.prod(x.shape)) if x.shape else 1 for x in leaves]
    total = sum(sizes)
    index = lax.iota(jnp.uint32, total)
    keys = lax.broadcast(lax.convert_element_type(key, jnp.uint32), (total,))
    bits = _mix(lax.add(_mix(lax.bitwise_xor(index, keys)), keys))
    positive = lax.eq(lax.shift_right_logical(bits, _u32(31, bits)), _u32(1, bits))
    one = lax.full((total,), 1.0, leaves[0].dtype)
    signs = lax.select(positive, one, lax.neg(one))
    directions, start = [], 0
    for leaf, n in zip(leaves, sizes):
        scale = lax.full((n,), 1.0 / np.sqrt(n), leaf.dtype)
        block = lax.slice(positive, (start,), (start + n,))
        directions.append(lax.reshape(lax.select(block, scale, lax.neg(scale)), tuple(leaf.shape)))
        start += n
    return signs, directions
