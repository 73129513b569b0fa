"""Benchmark: diag's jitted gradient check vs jax.test_util.check_grads vs torch.autograd.gradcheck.

The same two-layer tanh network (batch 32) at about 1e3, 1e5 and 1e6 parameters, float64, K
directions for every method:

* diag (JAX): ``check_gradients`` (the joint screen over all leaves; per leaf only where it does
  not pass), timed warm (median of repeated calls, the compiled program reused) and cold;
* ``jax.test_util.check_grads(..., order=1, modes=["rev"])``: one direction per call, so called K
  times (at large sizes timed on fewer calls and scaled), warm and cold;
* ``torch.autograd.gradcheck`` (double, full Jacobian): one perturbation per parameter, infeasible
  at 1e5+ parameters, so run on a slice of the first weight matrix (the rest held fixed, every
  evaluation still the full network) and scaled by parameters/slice, which is how its cost grows;
* diag (torch): ``check_torch`` on the same torch function.

Cold means what a user who runs the check once waits for: the first check in a fresh process
(JAX's backend already started by a trivial computation, so neither method pays for that), which
for diag is mostly XLA compilation and for check_grads the first dispatch of each eager operation.
Cold with the compile cache: the same first check in a fresh process with
``diag.gradcheck.use_compile_cache`` pointing at a folder an earlier (untimed) process filled.
Each cold figure is the median of ``--cold-runs`` fresh processes, alternating the methods.
Warm runs are interleaved per size in one process. Usage:

    .venv/bin/python benchmarks/gradcheck_bench.py [--sizes 1e3,1e5,1e6] [--directions 32] [--platform cpu|gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_results import publish

SIZES = {  # (inputs, hidden, outputs) -> about 1e3, 1e5, 1e6 parameters
    "1e3": (28, 32, 3),
    "1e5": (300, 320, 10),
    "1e6": (1000, 1000, 10),
}


def problem(size: str):
    """Weights, data and the loss in numpy, JAX and torch form."""
    import numpy as np

    d, h, o = SIZES[size]
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(d, h)) / np.sqrt(d), 0.1 * rng.normal(size=h), rng.normal(size=(h, o)) / np.sqrt(h)
    x, y = rng.normal(size=(32, d)), rng.normal(size=(32, o))
    return {"l1": {"w": w1, "b": b1}, "l2": {"w": w2}}, x, y


def jax_loss(p, x, y):
    import jax.numpy as jnp

    return jnp.mean((jnp.tanh(x @ p["l1"]["w"] + p["l1"]["b"]) @ p["l2"]["w"] - y) ** 2)


def check_grads_k(params, x, y, k: int, budget: float = float("inf")) -> tuple[float, int]:
    """Time K single-direction check_grads calls (fewer when over ``budget`` seconds, then scaled)."""
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        xx, yy = jnp.asarray(x), jnp.asarray(y)
        end = time.perf_counter() + budget
        t = time.perf_counter()
        calls = 0
        while calls < k and (time.perf_counter() < end or calls < 2):
            try:
                check_grads(lambda p: jax_loss(p, xx, yy), (p64,), order=1, modes=["rev"])
            except AssertionError:
                pass  # a tolerance miss still costs the same time
            calls += 1
        return (time.perf_counter() - t) / calls * k, calls


def cold_child(method: str, size: str, k: int) -> None:
    """Run in a fresh process: start JAX's backend, then time the first check of this size."""
    import jax

    jax.jit(lambda a: a + 1)(1.0).block_until_ready()
    params, x, y = problem(size)
    t, cpu = time.perf_counter(), time.process_time()
    if method in ("diag", "diag-cached"):
        from diag.gradcheck.jax_check import check_gradients

        if method == "diag-cached":  # the program compiled by an earlier process, loaded from disk
            from diag.gradcheck.compile_cache import use_compile_cache

            use_compile_cache(os.environ["DIAG_BENCH_XLA_CACHE"])

        assert check_gradients(jax_loss, params, x, y, directions=k).passed
        seconds = time.perf_counter() - t
    else:
        seconds, _ = check_grads_k(params, x, y, k)
    # CPU time of the whole process (XLA compiles on its own threads): what other work on a shared
    # machine moves least.
    print(json.dumps({"seconds": seconds, "cpu": time.process_time() - cpu}))


def cold_times(size: str, k: int, runs: int, platform: str | None) -> tuple[dict[str, float], dict[str, float]]:
    """Medians of first checks in fresh processes (wall seconds, CPU seconds): diag, diag with a
    filled compile cache, check_grads."""
    cache = tempfile.mkdtemp(prefix="diag-bench-xla-")
    env = dict(os.environ, DIAG_BENCH_XLA_CACHE=cache, **({"JAX_PLATFORMS": platform} if platform else {}))

    def child(method: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--cold-child", method, "--sizes", size,
                              "--directions", str(k)], capture_output=True, text=True, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    child("diag-cached")  # fills the cache (untimed): what an earlier run of the same check leaves
    times: dict[str, list[dict]] = {"diag": [], "diag-cached": [], "check_grads": []}
    for _ in range(runs):
        for method in times:  # alternating, so drifting machine load hits all alike
            times[method].append(child(method))
    shutil.rmtree(cache, ignore_errors=True)
    return ({m: statistics.median(r["seconds"] for r in v) for m, v in times.items()},
            {m: statistics.median(r["cpu"] for r in v) for m, v in times.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--directions", type=int, default=32)
    parser.add_argument("--platform", default=None, help="JAX platform: cpu, gpu, tpu (default: JAX's choice)")
    parser.add_argument("--sizes", default="1e3,1e5,1e6")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per slow baseline per size before scaling")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved warm rounds per size")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes per method and size")
    parser.add_argument("--cold-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.platform:
        os.environ["JAX_PLATFORMS"] = args.platform
    if args.cold_child:
        cold_child(args.cold_child, args.sizes, args.directions)
        return

    import jax
    import numpy as np
    import torch

    from diag.gradcheck.jax_check import check_gradients
    from diag.gradcheck.torch_check import check_torch

    K = args.directions
    print(f"load average {os.getloadavg()[0]:.1f}; jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, K={K} directions, float64")
    rows, figures = [], {}
    for size in args.sizes.split(","):
        params, x, y = problem(size)
        w1, b1, w2 = params["l1"]["w"], params["l1"]["b"], params["l2"]["w"]
        d, h = w1.shape
        n_params = w1.size + b1.size + w2.size
        cold, cold_cpu = cold_times(size, K, args.cold_runs, args.platform)

        report = check_gradients(jax_loss, params, x, y, directions=K, seed=0)  # compile in this process
        assert report.passed, report.format()
        check_grads_k(params, x, y, 2)  # first dispatch of check_grads' eager operations at this size

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

        warm, cg_times, tdiag, gc_time, cg_calls = [], [], [], None, 0
        for r in range(args.repeats):  # interleaved rounds
            t = time.perf_counter()
            check_gradients(jax_loss, params, x, y, directions=K, seed=r + 1)
            warm.append(time.perf_counter() - t)
            if r < 2 or sum(cg_times) < args.budget:
                seconds, calls = check_grads_k(params, x, y, K, args.budget)
                cg_times.append(seconds)
                cg_calls = max(cg_calls, calls)
            if r < 3:
                t = time.perf_counter()
                check_torch(tloss, tparams, tx, ty, directions=K, seed=r)
                tdiag.append(time.perf_counter() - t)
            if gc_time is None:
                gc_time = gradcheck_slice(m) * (n_params / m)
        row = dict(size=size, params=n_params, warm=statistics.median(warm), cold=cold["diag"], cold_cached=cold["diag-cached"],
                   cold_cpu=cold_cpu,
                   check_grads=statistics.median(cg_times), check_grads_cold=cold["check_grads"],
                   gradcheck=gc_time, torch_diag=statistics.median(tdiag))
        rows.append(row)
        print(f"\n{size}: {n_params:,} parameters")
        print(f"  diag (jax)   warm {row['warm'] * 1e3:9.1f} ms   cold {row['cold'] * 1e3:9.1f} ms"
              f"   cold with the compile cache filled {row['cold_cached'] * 1e3:9.1f} ms")
        print(f"  check_grads  warm {row['check_grads'] * 1e3:9.1f} ms   cold {row['check_grads_cold'] * 1e3:9.1f} ms"
              f"   ({K} directions; {cg_calls} calls timed{', scaled to K' if cg_calls < K else ''})")
        scaled = "" if m >= n_params else f" (slice of {m} parameters timed, scaled x{n_params / m:,.0f})"
        print(f"  cold CPU time (process, median): diag {cold_cpu['diag']:.2f} s, diag with the cache filled "
              f"{cold_cpu['diag-cached']:.2f} s, check_grads {cold_cpu['check_grads']:.2f} s: check_grads / diag = "
              f"{cold_cpu['check_grads'] / cold_cpu['diag']:.1f}x cold, "
              f"{cold_cpu['check_grads'] / cold_cpu['diag-cached']:.1f}x cold with the compile cache")
        figures.update({f"{size}_cold_cpu_ratio": cold_cpu["check_grads"] / cold_cpu["diag"],
                        f"{size}_cached_cpu_ratio": cold_cpu["check_grads"] / cold_cpu["diag-cached"],
                        f"{size}_cold_wall_ratio": row["check_grads_cold"] / row["cold"],
                        f"{size}_warm_ratio": row["check_grads"] / row["warm"],
                        f"{size}_diag_cold_cpu_s": cold_cpu["diag"]})
        print(f"  gradcheck         {gc_time * 1e3:9.1f} ms{scaled}")
        print(f"  diag (torch)      {row['torch_diag'] * 1e3:9.1f} ms")
        print(f"  ratios: check_grads / diag = {row['check_grads'] / row['warm']:.1f}x warm, "
              f"{row['check_grads_cold'] / row['cold']:.1f}x cold, "
              f"{row['check_grads_cold'] / row['cold_cached']:.1f}x cold with the compile cache;  gradcheck / diag = "
              f"{_x(gc_time / row['warm'])} warm, {_x(gc_time / row['cold'])} cold;  "
              f"gradcheck / diag(torch) = {_x(gc_time / row['torch_diag'])}")
        sys.stdout.flush()

    print("\n| params | diag warm | diag cold | diag cold, cache filled | check_grads warm | check_grads cold "
          "| vs check_grads (warm / cold / cold cached) | torch gradcheck | vs gradcheck (warm / cold) | diag (torch) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['params']:,} | {_fmt(r['warm'])} | {_fmt(r['cold'])} | {_fmt(r['cold_cached'])} | {_fmt(r['check_grads'])} | "
              f"{_fmt(r['check_grads_cold'])} | {_x(r['check_grads'] / r['warm'])} / {_x(r['check_grads_cold'] / r['cold'])}"
              f" / {_x(r['check_grads_cold'] / r['cold_cached'])} | "
              f"{_fmt(r['gradcheck'])} | {_x(r['gradcheck'] / r['warm'])} / {_x(r['gradcheck'] / r['cold'])} | "
              f"{_fmt(r['torch_diag'])} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    publish("gradcheck", **figures)


def _x(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _fmt(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


if __name__ == "__main__":
    main()
