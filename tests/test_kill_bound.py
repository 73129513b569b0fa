"""``kill -9`` of a real training loop keeps every step the writer's clock flushed, and the header.

Real child processes train real small models (a PyTorch MLP through ``TorchRecorder``, a Flax NNX
MLP through the Flax ``Recorder``), record at least ``STEPS`` steps, print ``idle`` and the count,
and then stop calling the recorder, as a loop stuck in a slow data loader does. A write flushes the
buffer when it finds its oldest record due, so each loop goes on until its last record stayed in
memory (in the writer's buffer, or for Flax a step not yet decoded); the torch writer's count
trigger (50 records) is not reached. From then on only the background threads (the writer's
deadline ``flush_seconds``, the Flax recorder's idle drain) can put the last steps on disk. The test waits for that event (all the steps appearing in the file), kills the
child with SIGKILL and reads what is left: every step, in order, and nothing torn.

How soon after a step the deadline writes it is a timing, not a behaviour:
``benchmarks/kill_bound.py`` measures it (the age of the oldest step a kill loses).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from diag.errors import DiagInputError
from diag.trace import load_trace

STEPS = 20  # at least this many steps before a loop goes idle, well under the torch writer's 50-record trigger
PATIENCE = 240.0  # seconds a child may take on a loaded machine before the test gives up (not a timing check)

TORCH_CHILD = textwrap.dedent('''
    import sys, time
    import torch
    from diag.adapters.torch import TorchRecorder

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = TorchRecorder(model, opt, sys.argv[1], task="classification", num_classes=3)
    i = 0
    while i < int(sys.argv[2]) or not rec.writer._buffer:  # end with a record in memory (see the docstring)
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        rec.record(loss, labels=y)
        i += 1
    print("idle", i, flush=True)
    time.sleep(3600)  # no more calls to the recorder: a loader that hangs
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
    i = 0
    while i < int(sys.argv[2]) or not (rec.writer._buffer or rec._pending):  # a record in memory (see the docstring)
        rec.record(i, step(model, optimizer, x * (i % 7) / 7, y))
        i += 1
    print("idle", i, flush=True)
    time.sleep(3600)  # no more calls to the recorder: a loader that hangs
''')


def _start(tmp: Path, name: str, source: str, steps: int):
    script = tmp / f"{name}.py"
    script.write_text(source)
    trace = tmp / f"{name}.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), str(trace), str(steps)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, trace


def _wait_until_idle(proc) -> int:
    """Block until the child recorded its steps (or died); the number of steps it recorded."""
    words = proc.stdout.readline().split()
    if len(words) != 2 or words[0] != "idle":
        proc.kill()
        raise AssertionError(f"child exited before it recorded its steps: {proc.stderr.read()[-3000:]}")
    return int(words[1])


def _steps_on_disk(trace: Path) -> int:
    try:
        return load_trace(trace).num_steps
    except (FileNotFoundError, DiagInputError):  # not created yet, or a header alone so far (a refusal)
        return 0


def _wait_for_steps_on_disk(trace: Path, proc, steps: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while _steps_on_disk(trace) < steps:
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the writer's clock never flushed the {steps} steps of an idle loop to {trace.name}")
        time.sleep(0.05)


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    """Four children start at once (sharing their start-up time): per framework, one killed once its
    idle loop's steps are on disk, one killed the moment it has recorded its first step."""
    pytest.importorskip("torch", reason="the torch extra is not installed")
    pytest.importorskip("flax", reason="jax/flax are not installed")
    tmp = tmp_path_factory.mktemp("kill9")
    runs = {(name, steps): _start(tmp, f"{name}_{steps}", source, steps)
            for name, source in (("torch", TORCH_CHILD), ("flax", FLAX_CHILD)) for steps in (1, STEPS)}
    recorded = {}
    try:
        for key, (proc, trace) in runs.items():
            recorded[key] = _wait_until_idle(proc)
            if key[1] == STEPS:
                _wait_for_steps_on_disk(trace, proc, recorded[key])  # the event: the clock flushed them
            _kill(proc)
    finally:
        for proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return {key: (trace, recorded[key]) for key, (_, trace) in runs.items()}


@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_steps_flushed_by_the_clock_of_an_idle_loop_survive_kill_9(killed_runs, framework):
    path, recorded = killed_runs[framework, STEPS]
    trace = load_trace(path)
    assert recorded >= STEPS
    assert [int(s) for s in trace.series("loss").steps] == list(range(recorded))  # all, in order
    assert trace.header.framework == framework
    assert not [p for p in trace.problems if p.severity == "error"]
    assert trace.events_of("run_end") == []  # killed: no end was written, and none was needed


@pytest.mark.parametrize("framework", ["torch", "flax"])  # both write the header when they open
def test_a_run_killed_after_its_first_step_leaves_its_header_on_the_first_line(killed_runs, framework):
    content = killed_runs[framework, 1][0].read_bytes()
    assert content, f"{framework}: the run killed after its first step left an empty file"
    first = json.loads(content.split(b"\n", 1)[0])
    assert first["kind"] == "header" and first["schema"].startswith("diag.trace/")
