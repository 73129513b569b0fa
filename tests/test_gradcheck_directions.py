"""The gradient check's random sign directions equal an independent numpy reading of their hash.

The directions are written with jax.lax primitives for tracing speed; the numpy version here is the
documented formula (two rounds of lowbias32 over uint32, wrapping), so a rewrite that changes one
bit of a direction (and with it every report's worst direction and element search) fails here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diag.gradcheck import _directions as D


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def reference_signs(seed: int, k: int, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    with np.errstate(over="ignore"):
        key = _mix(_mix(np.uint32(seed) ^ np.uint32(0x5BD1E995)) + np.uint32(k) * np.uint32(0x9E3779B9))
        n = int(np.prod(shape)) if shape else 1
        i = np.arange(n, dtype=np.uint32) + np.uint32(offset % 2**32)
        bits = _mix(_mix(i ^ key) + key)
    return np.where(bits >> np.uint32(31) == 1, 1.0, -1.0).reshape(shape) / np.sqrt(n)


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1])
@pytest.mark.parametrize("k", [0, 7, 31])
@pytest.mark.parametrize(("offset", "shape"), [(0, (3, 4)), (96320, (30, 32)), (2**32 - 5, (10,)), (7, ())])
def test_directions_equal_the_numpy_formula(seed, k, offset, shape):
    with jax.enable_x64(True):
        got = np.asarray(D.unit_signs(D.stream(np.uint32(seed), np.uint32(k)), offset, shape, jnp.float64))
    np.testing.assert_array_equal(got, reference_signs(seed, k, offset, shape))


def test_directions_inside_jit_and_vmap_are_the_same_bits():
    """As the check's compiled program draws them: traced seed, a batch of direction indices."""
    with jax.enable_x64(True):
        draw = jax.jit(jax.vmap(lambda k, seed: D.unit_signs(D.stream(seed, k), 320, (30, 32), jnp.float64),
                                in_axes=(0, None)))
        got = np.asarray(draw(jnp.arange(8, dtype=jnp.uint32), np.uint32(5)))
    for k in range(8):
        np.testing.assert_array_equal(got[k], reference_signs(5, k, 320, (30, 32)))


@pytest.mark.parametrize("seed", [0, 12345])
def test_directions_of_all_leaves_at_once_are_each_leafs_own_bits(seed):
    """One hash over the leaves' joint range, as the check's program draws them, in each leaf's own dtype."""
    shapes = [(300, 320), (320,), (), (320, 10)]
    dtypes = [jnp.float64, jnp.float64, jnp.float32, jnp.float64]
    with jax.enable_x64(True):
        leaves = [jnp.zeros(s, d) for s, d in zip(shapes, dtypes)]
        draw = jax.jit(jax.vmap(lambda k: D.signs_of_leaves(D.stream(np.uint32(seed), k), leaves)))
        signs, got = draw(jnp.arange(4, dtype=jnp.uint32))
        starts = np.cumsum([0] + [int(np.prod(s)) for s in shapes[:-1]])
        for leaf, start, shape, dtype, directions in zip(leaves, starts, shapes, dtypes, got):
            assert directions.dtype == dtype and directions.shape == (4, *shape)
            n = int(np.prod(shape))
            for k in range(4):
                expected = reference_signs(seed, k, int(start), shape)
                np.testing.assert_array_equal(np.asarray(directions[k], np.float64), expected.astype(dtype))
                # The joint signs (what the check dots the scaled gradient with) are the same bits.
                np.testing.assert_array_equal(np.asarray(signs[k, start:start + n], np.float64) / np.sqrt(n),
                                              expected.astype(np.float64).ravel())
