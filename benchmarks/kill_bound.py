"""How much of a run does ``kill -9`` lose? The age of the oldest lost step, per framework.

Real child processes train real small models (a PyTorch MLP through ``TorchRecorder``, a Flax NNX
MLP through the Flax ``Recorder``) at 25 steps/s and print each step's number and wall time after
recording it. The parent kills each with SIGKILL after ``--steps`` steps (at 25 steps/s, 60 steps
are 2.4 s: past the torch writer's 50-record trigger and past several 1-second deadlines) and
compares what the child reported with what the trace on disk holds. Printed per framework and
round: the steps lost and how long before the kill the oldest lost one had been recorded (the
recorders' promise: at most ``flush_seconds``, 1 s by default, plus the writer thread's wait for a
core). The machine's load average is printed with the figures: on a busy machine the flusher
thread waits for a core, and that wait is what this measures beside the deadline.

The test suite checks the behaviour without a clock (tests/test_kill_bound.py: an idle loop's steps
reach the disk on the writer's deadline alone and survive the kill); this is the number.

    .venv/bin/python benchmarks/kill_bound.py
    .venv/bin/python benchmarks/kill_bound.py --rounds 5 --steps 60
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TORCH_CHILD = textwrap.dedent('''
    import sys, time
    import torch
    from diag.adapters.torch import TorchRecorder

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = TorchRecorder(model, opt, sys.argv[1], task="classification", num_classes=3)
    for i in range(1_000_000):
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        rec.record(loss, labels=y)
        print(i, time.time(), flush=True)
        time.sleep(0.04)
''')

FLAX_CHILD = textwrap.dedent('''
    import sys, time
    import jax.numpy as jnp, optax
    from flax import nnx
    from diag.adapters.flax import Recorder

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(8, 32, rngs=rngs)
            self.head = nnx.Linear(32, 3, rngs=rngs)
        def __call__(self, x):
            return self.head(nnx.relu(self.l1(x)))

    model = MLP(nnx.Rngs(0))
    rec = Recorder(sys.argv[1], model, task="classification", num_classes=3, every=5)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.sgd(0.05)), wrt=nnx.Param)

    @rec.jit
    def step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    x, y = jnp.ones((32, 8)), jnp.arange(32) % 3
    for i in range(1_000_000):
        rec.record(i, step(model, optimizer, x * (i % 7) / 7, y))
        print(i, time.time(), flush=True)
        time.sleep(0.04)
''')

CHILDREN = {"torch": TORCH_CHILD, "flax": FLAX_CHILD}


def kill_after(script: Path, trace: Path, steps: int) -> tuple[dict[int, float], float]:
    """Run one child until it reported ``steps`` steps, SIGKILL it; (reported step -> wall time, kill time)."""
    proc = subprocess.Popen([sys.executable, str(script), str(trace)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    reported: dict[int, float] = {}
    try:
        while len(reported) < steps:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{script.name} exited early: {proc.stderr.read()[-3000:]}")
            step, wall = line.split()
            reported[int(step)] = float(wall)
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    for line in rest.splitlines():  # reports already in the pipe when the kill landed
        step, wall = line.split()
        reported[int(step)] = float(wall)
    return reported, killed_at


def measure(folder: Path, framework: str, steps: int) -> tuple[int, int, float]:
    """(steps lost, steps reported, age in seconds of the oldest lost step at the kill)."""
    from diag.trace import load_trace

    script = folder / f"child_{framework}.py"  # not torch.py: it would shadow the torch package
    script.write_text(CHILDREN[framework])
    trace = folder / f"{framework}.jsonl"
    reported, killed_at = kill_after(script, trace, steps)
    on_disk = [int(s) for s in load_trace(trace).series("loss").steps]
    if on_disk != list(range(len(on_disk))):
        raise RuntimeError(f"{framework}: the steps on disk are not a prefix: {on_disk}")
    lost = sorted(s for s in reported if s > (on_disk[-1] if on_disk else -1))
    return len(lost), len(reported), (killed_at - reported[lost[0]] if lost else 0.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", default="torch,flax")
    parser.add_argument("--steps", type=int, default=60, help="steps before the kill (default 60, 2.4 s)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    frameworks = args.frameworks.split(",")
    print(f"load average {os.getloadavg()[0]:.1f}; kill -9 after {args.steps} steps at 25 steps/s")
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="kill_bound-") as tmp:
            with ThreadPoolExecutor(len(frameworks)) as pool:  # both children at once, as a fleet would
                futures = {f: pool.submit(measure, Path(tmp), f, args.steps) for f in frameworks}
                for framework, future in futures.items():
                    lost, reported, age = future.result()
                    print(f"round {round_ + 1} {framework:5s}: {lost} of {reported} steps lost; the oldest "
                          f"recorded {age:.2f} s before the kill")
    return 0


if __name__ == "__main__":
    sys.exit(main())
