"""Benchmark: diag's jitted gradient check vs jax.test_util.check_grads vs torch.autograd.gradcheck.

The same two-layer tanh network (batch 32) at about 1e3, 1e5 and 1e6 parameters, float64:

* diag (JAX): ``check_gradients`` with K directions per parameter tensor, timed cold (first call,
  compilation included) and warm (the median of repeated calls, compiled function reused);
* ``jax.test_util.check_grads(..., order=1, modes=["rev"])``: one direction per call, so called K
  times for the same number of directions (at large sizes timed on fewer calls and scaled);
* ``torch.autograd.gradcheck`` (double, full Jacobian): one perturbation per parameter, infeasible
  at 1e5+ parameters, so run on a slice of the first weight matrix (the rest held fixed, every
  evaluation still the full network) and scaled by parameters/slice, which is how its cost grows;
* diag (torch): ``check_torch`` on the same torch function.

Runs are interleaved per size in one process. Usage:
    .venv/bin/python benchmarks/gradcheck_bench.py [--directions 32] [--platform cpu|gpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

SIZES = {  # (inputs, hidden, outputs) -> about 1e3, 1e5, 1e6 parameters
    "1e3": (28, 32, 3),
    "1e5": (300, 320, 10),
    "1e6": (1000, 1000, 10),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--directions", type=int, default=32)
    parser.add_argument("--platform", default=None, help="JAX platform: cpu, gpu, tpu (default: JAX's choice)")
    parser.add_argument("--sizes", default="1e3,1e5,1e6")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per slow baseline per size before scaling")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.platform:
        os.environ["JAX_PLATFORMS"] = args.platform

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from jax.test_util import check_grads

    from diag.gradcheck.jax_check import check_gradients
    from diag.gradcheck.torch_check import check_torch

    K = args.directions
    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, K={K} directions, float64")
    rows = []
    for size in args.sizes.split(","):
        d, h, o = SIZES[size]
        n_params = d * h + h + h * o
        rng = np.random.default_rng(0)
        w1, b1, w2 = rng.normal(size=(d, h)) / np.sqrt(d), 0.1 * rng.normal(size=h), rng.normal(size=(h, o)) / np.sqrt(h)
        x, y = rng.normal(size=(32, d)), rng.normal(size=(32, o))

        def loss(p, x, y):
            return jnp.mean((jnp.tanh(x @ p["l1"]["w"] + p["l1"]["b"]) @ p["l2"]["w"] - y) ** 2)

        params = {"l1": {"w": w1, "b": b1}, "l2": {"w": w2}}

        # diag, JAX: cold then warm (same function and shapes: the compiled check is reused).
        t = time.perf_counter()
        report = check_gradients(loss, params, x, y, directions=K, seed=0)
        cold = time.perf_counter() - t
        assert report.passed, report.format()
        warm = []

        # check_grads: one direction per call; float64 like the others.
        def cg_once():
            with jax.enable_x64(True):
                p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
                xx, yy = jnp.asarray(x), jnp.asarray(y)
                try:
                    check_grads(lambda p: loss(p, xx, yy), (p64,), order=1, modes=["rev"])
                except AssertionError:
                    pass  # a tolerance miss still costs the same time

        # torch equivalents.
        tw1, tb1, tw2 = (torch.tensor(a, dtype=torch.float64) for a in (w1, b1, w2))
        tx, ty = torch.tensor(x), torch.tensor(y)

        def tloss(p, x, y):
            return ((torch.tanh(x @ p["l1"]["w"] + p["l1"]["b"]) @ p["l2"]["w"] - y) ** 2).mean()

        tparams = {"l1": {"w": tw1, "b": tb1}, "l2": {"w": tw2}}
        m = min(n_params, 2000 if n_params <= 2000 else 64)

        def gradcheck_slice(m):
            flat = tw1.reshape(-1)
            if m >= n_params:  # everything
                inputs = tuple(t.clone().requires_grad_(True) for t in (tw1, tb1, tw2))
                fn = lambda a, b, c: tloss({"l1": {"w": a, "b": b}, "l2": {"w": c}}, tx, ty)  # noqa: E731
            else:
                head = flat[:m].clone().requires_grad_(True)
                rest = flat[m:]
                inputs = (head,)
                fn = lambda s: tloss({"l1": {"w": torch.cat([s, rest]).reshape(d, h), "b": tb1}, "l2": {"w": tw2}}, tx, ty)  # noqa: E731
            t = time.perf_counter()
            torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)
            return time.perf_counter() - t

        cg_times, gc_time, tdiag = [], None, []
        cg_calls = 0
        for r in range(args.repeats):  # interleaved rounds
            t = time.perf_counter()
            check_gradients(loss, params, x, y, directions=K, seed=r + 1)
            warm.append(time.perf_counter() - t)
            t = time.perf_counter()
            check_torch(tloss, tparams, tx, ty, directions=K, seed=r)
            tdiag.append(time.perf_counter() - t)
            if r == 0 or sum(cg_times) < args.budget:
                budget_end = time.perf_counter() + args.budget
                calls = 0
                t = time.perf_counter()
                while calls < K and (time.perf_counter() < budget_end or calls < 2):
                    cg_once()
                    calls += 1
                cg_times.append((time.perf_counter() - t) / calls * K)
                cg_calls = max(cg_calls, calls)
            if gc_time is None:
                gc_time = gradcheck_slice(m) * (n_params / m)
        row = dict(size=size, params=n_params, cold=cold, warm=statistics.median(warm),
                   check_grads=statistics.median(cg_times), cg_calls=cg_calls, gradcheck=gc_time, gc_slice=m,
                   torch_diag=statistics.median(tdiag))
        rows.append(row)
        print(f"\n{size}: {n_params:,} parameters")
        print(f"  diag (jax)  warm {row['warm'] * 1e3:9.1f} ms   cold (compile included) {cold * 1e3:9.1f} ms")
        print(f"  check_grads      {row['check_grads'] * 1e3:9.1f} ms   ({K} directions; {cg_calls} calls timed"
              f"{', scaled to K' if cg_calls < K else ''})")
        scaled = "" if m >= n_params else f" (slice of {m} parameters timed, scaled x{n_params / m:,.0f})"
        print(f"  gradcheck        {gc_time * 1e3:9.1f} ms{scaled}")
        print(f"  diag (torch)     {row['torch_diag'] * 1e3:9.1f} ms")
        print(f"  ratios: check_grads / diag = {row['check_grads'] / row['warm']:.1f}x warm, "
              f"{row['check_grads'] / cold:.1f}x cold;  gradcheck / diag = {gc_time / row['warm']:,.0f}x warm, "
              f"{gc_time / cold:,.0f}x cold;  gradcheck / diag(torch) = {gc_time / row['torch_diag']:,.0f}x")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
