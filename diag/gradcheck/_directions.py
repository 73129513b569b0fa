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

Imported only by the JAX checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_GOLDEN = 0x9E3779B9


def _mix(x):
    """lowbias32: a bijective avalanche mix of uint32 values."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def stream(seed, k):
    """A per-(seed, direction) 32-bit stream key; ``seed`` and ``k`` are traced uint32 scalars."""
    return _mix(_mix(jnp.asarray(seed, jnp.uint32) ^ jnp.uint32(0x5BD1E995)) + jnp.asarray(k, jnp.uint32) * jnp.uint32(_GOLDEN))


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
      >>> float(jnp.sum(v * v))
      1.0
    """
    n = int(np.prod(shape)) if shape else 1
    i = jax.lax.iota(jnp.uint32, n) + jnp.uint32(offset % 2**32)
    bits = _mix(_mix(i ^ key) + key)
    scale = jnp.asarray(1.0 / np.sqrt(n), dtype)
    return jnp.where((bits >> 31) == 1, scale, -scale).reshape(shape)
