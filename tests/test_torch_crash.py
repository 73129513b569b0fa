"""A training process that crashes, is interrupted or is terminated leaves a complete trace."""

import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

from diag.trace import load_trace  # noqa: E402

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from torch.nn import functional as F
    from diag.adapters.torch import TorchRecorder

    mode, path = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = TorchRecorder(model, opt, path, flush_every=1)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    step = 0
    while True:
        if mode == "crash" and step == 3:
            x = torch.randn(32, 7)  # a shape bug: the first layer expects 6 features
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        rec.record(loss, labels=y)
        step += 1
        if step == 3 and mode != "crash":
            print("ready", flush=True)
    """
)


def _run(tmp_path, mode):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    path = tmp_path / f"{mode}.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), mode, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, path


def test_uncaught_exception_is_written_with_traceback_layer_and_last_good_step(tmp_path):
    proc, path = _run(tmp_path, "crash")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "RuntimeError" in stderr  # the user still sees their own traceback
    trace = load_trace(path)
    assert trace.series("loss").steps.tolist() == [0, 1, 2]
    (exc,) = trace.events_of("exception")
    assert exc.type == "RuntimeError" and "shapes cannot be multiplied" in exc.message
    assert exc.last_good_step == 2 and exc.step == 3
    assert exc.layer == "0"
    assert "train.py" in exc.traceback
    (end,) = trace.events_of("run_end")
    assert (end.status, end.steps) == ("crashed", 3)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_writes_the_signal_and_an_interrupted_end_after_every_recorded_step(tmp_path, sig):
    proc, path = _run(tmp_path, "loop")
    try:
        assert proc.stdout.readline().strip() == "ready"  # three steps recorded; the loop goes on
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:  # the loop never ends on its own: a failed read must not leave it running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
    trace = load_trace(path)
    assert not trace.problems
    steps = trace.series("loss").steps.tolist()
    assert len(steps) >= 3 and steps == list(range(len(steps)))
    (event,) = trace.events_of("signal")
    assert event.signal == sig.name
    (end,) = trace.events_of("run_end")
    assert end.status == "interrupted" and end.steps == len(steps)
