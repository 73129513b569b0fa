"""Small JAX helpers shared by the gradient checks: precision, leaf names, casting, scalarizing.

Imported only by the JAX checks (never by ``import diag``).
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from diag.gradcheck.compare import SUPPORTED_DTYPES
from diag.errors import DiagInputError


# XLA:CPU compile options for a check's programs, which are compiled once and run a few times, so
# their compile time is most of a first check. XLA:CPU's older loop emitters compile the program of
# a 1e5-parameter check in half the time of its fusion emitters (0.65 -> 0.39 s CPU) and the
# program runs as fast (26-29 ms either way); one LLVM module instead of several split for
# parallel codegen saves another ~0.07 s of CPU (benchmarks/gradcheck_bench.py). Only the check's
# own programs are compiled this way: the user's other programs keep XLA's defaults.
CPU_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_cpu_parallel_codegen_split_count": 1}
# Added for a program that runs once per check (the gradient at the point): LLVM without its
# optimization passes. The gradient program's elementwise kernels are small next to its dots
# (library calls, which the option does not touch), so it runs about as fast, and compiling it
# costs ~0.03 s less CPU at 1e5 parameters, ~0.1 s at 1e3 (benchmarks/gradcheck_bench.py).
CPU_RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}


def jit_check_program(run, runs_once: bool = False):
    """``jax.jit(run)``, compiled with :data:`CPU_COMPILE_OPTIONS` on the CPU backend.

    Args:
      run: the program.
      runs_once: the program runs once per check: :data:`CPU_RUN_ONCE_OPTIONS` too.

    A jaxlib that does not know one of the options (they are XLA debug options, renamed or retired
    between versions) compiles with XLA's defaults instead.
    """
    plain = jax.jit(run)
    options = CPU_COMPILE_OPTIONS
    if runs_once and options:
        options = {**options, **CPU_RUN_ONCE_OPTIONS}
    if jax.default_backend() != "cpu" or not options:
        return plain
    tuned = jax.jit(run, compiler_options=options)
    use_tuned = True

    def call(*args):
        nonlocal use_tuned
        if use_tuned:
            try:
                return tuned(*args)
            except jax.errors.JaxRuntimeError as exc:
                if "compile option" not in str(exc):
                    raise
                use_tuned = False
        return plain(*args)

    return call


def precision(dtype: str):
    """A context in which ``dtype`` exists: float64 needs x64, enabled only inside the block.

    ``jax.enable_x64`` restores the user's setting on exit, so checking in float64 never flips the
    global configuration of the program that called the check.
    """
    if dtype not in SUPPORTED_DTYPES:
        raise DiagInputError(
            f"dtype {dtype!r} is not supported for gradient checks; use one of {', '.join(SUPPORTED_DTYPES)}",
            hint="finite differences in float16/bfloat16 cannot resolve a gradient; check in float64",
        )
    if dtype == "float64":
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def is_float(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) or isinstance(x, float)


def cast_floats(tree, dtype: str):
    """Every floating leaf of ``tree`` as a ``dtype`` array; other leaves (ints, keys) unchanged."""

    def cast(x):
        if isinstance(x, float) or (hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)):
            return jnp.asarray(x, dtype=dtype)
        return x

    return jax.tree_util.tree_map(cast, tree)


def key_name(entry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def leaf_name(path, prefix: str = "") -> str:
    """``layers/0/kernel`` from a pytree key path (Flax's trailing ``.value`` dropped)."""
    parts = [key_name(k) for k in path]
    if parts and parts[-1] in ("value", "raw_value") and type(path[-1]).__name__ == "GetAttrKey":
        parts = parts[:-1]
    parts = ([prefix] if prefix else []) + parts
    return "/".join(parts) if parts else (prefix or "x")


def scalarize(out, key):
    """A scalar from a function's output: itself, or its inner product with a fixed random cotangent.

    A random cotangent checks every output's gradient at once with probability one, which is what
    ``jax.test_util.check_vjp`` does too.
    """
    leaves = jax.tree_util.tree_leaves(out)
    if len(leaves) == 1 and jnp.ndim(leaves[0]) == 0:
        return leaves[0]
    total = 0.0
    for i, leaf in enumerate(leaves):
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            continue
        c = jax.random.normal(jax.random.fold_in(key, i), leaf.shape, leaf.dtype)
        total = total + jnp.vdot(c, leaf)
    return total


def output_dtype(fn, args) -> str:
    """The dtype the function's output has (float32 inside a float64 check means it computes in float32)."""
    out = jax.eval_shape(fn, *args)
    dts = [np.dtype(o.dtype) for o in jax.tree_util.tree_leaves(out) if jnp.issubdtype(o.dtype, jnp.floating)]
    if not dts:
        raise DiagInputError("the function returned no floating-point output to differentiate")
    return "float32" if any(d.itemsize < 8 for d in dts) else "float64"
