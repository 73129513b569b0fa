"""A run that dies still leaves a readable trace: real subprocesses, real signals.

Four training processes start at once (sharing their start-up time): one raises inside the loop,
one gets SIGTERM, one SIGINT, one ``kill -9``.
"""

from __future__ import annotations

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

CHILD = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    import jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from diag.adapters.flax import Recorder

    mode, trace, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(4, 8, rngs=rngs)
            self.head = nnx.Linear(8, 2, rngs=rngs)
        def __call__(self, x):
            return self.head(nnx.relu(self.l1(x)))

    model = MLP(nnx.Rngs(0))
    rec = Recorder(trace, model, task="classification", num_classes=2, every=2, flush_seconds=0.2)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.sgd(0.1)), wrt=nnx.Param)

    @rec.jit
    def step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    def data_loader_that_breaks(i):
        if i == 5:
            raise RuntimeError("corrupt shard 17 at byte 4096")
        return jnp.ones((8, 4)) * i / 10, jnp.arange(8) % 2

    with rec:
        for i in range(100000):
            x, y = data_loader_that_breaks(i) if mode == "raise" else (jnp.ones((8, 4)), jnp.arange(8) % 2)
            rec.record(i, step(model, optimizer, x, y))
            if i == 6:
                marker.write_text("ready")
            time.sleep(0.02)
''')


def _start(tmp: Path, mode: str):
    script = tmp / "child.py"
    script.write_text(CHILD)
    trace, marker = tmp / f"{mode}.jsonl", tmp / f"{mode}.ready"
    proc = subprocess.Popen([sys.executable, str(script), mode, str(trace), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, trace, marker


def _wait_for(marker: Path, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("child never reached step 6")
        time.sleep(0.05)


def _steps_on_disk(trace: Path) -> int:
    try:
        return len(load_trace(trace).series("loss"))
    except (FileNotFoundError, DiagInputError, KeyError):  # not created, a torn header, or a header and no step yet
        return 0


def _wait_for_steps_on_disk(trace: Path, proc, steps: int, timeout=120.0):
    deadline = time.monotonic() + timeout
    while _steps_on_disk(trace) < steps:
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the flusher never wrote {steps} steps to {trace.name}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def dead_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    procs = {mode: _start(tmp, mode) for mode in ("raise", "SIGTERM", "SIGINT", "kill9")}
    try:
        for mode, sig in (("SIGTERM", signal.SIGTERM), ("SIGINT", signal.SIGINT), ("kill9", None)):
            proc, trace, marker = procs[mode]
            _wait_for(marker, proc)
            if sig is None:
                # The background flusher (flush_seconds) must put the steps on disk without any call
                # from the loop: wait for that event, then kill -9 and check what the reader keeps.
                _wait_for_steps_on_disk(trace, proc, steps=7)
                sig = signal.SIGKILL
            os.kill(proc.pid, sig)
        results = {}
        for mode, (proc, trace, _) in procs.items():
            _, err = proc.communicate(timeout=120)
            results[mode] = (proc.returncode, err, load_trace(trace))
        return results
    finally:  # a failed wait must not leave training loops running after the suite
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_an_exception_in_the_loop_leaves_its_traceback_and_last_good_step(dead_runs):
    code, err, trace = dead_runs["raise"]
    assert code != 0 and "corrupt shard 17" in err  # the user's exception still propagates
    (exc,) = trace.events_of("exception")
    assert exc.type == "RuntimeError" and "corrupt shard 17" in exc.message
    assert "data_loader_that_breaks" in exc.traceback
    assert exc.last_good_step == 4 and list(trace.series("loss").steps) == [0, 1, 2, 3, 4]
    (end,) = trace.events_of("run_end")
    assert end.status == "crashed"


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_terminating_signal_flushes_the_trace_and_says_so(dead_runs, name):
    code, _, trace = dead_runs[name]
    assert code != 0
    (sig,) = trace.events_of("signal")
    assert sig.signal == name
    assert trace.events_of("run_end")[0].status == "interrupted"
    steps = trace.series("loss").steps
    assert len(steps) >= 7 and sig.step == steps[-1]


def test_kill_9_leaves_a_trace_readable_up_to_the_last_flush(dead_runs):
    code, _, trace = dead_runs["kill9"]
    assert code == -signal.SIGKILL
    assert trace.header is not None and trace.header.framework == "flax"
    assert len(trace.series("loss")) >= 7  # everything the flusher had written before the kill
    assert trace.events_of("run_end") == []
