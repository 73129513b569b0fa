"""PyTorch bridge: record an ordinary PyTorch training loop into a diag trace.

Install with ``pip install "diag[torch]"``. Three lines in a training loop::

    from diag.adapters.torch import TorchRecorder
    rec = TorchRecorder(model, optimizer, "runs/run.jsonl", task="classification", num_classes=10)
    ...
        optimizer.step()
        rec.record(loss, labels=y)      # once per optimizer step
    rec.close()

The trace is the same format the Flax adapter writes, so ``diag explain`` and ``diag tui`` read it
unchanged.
"""

from diag.adapters.torch.recorder import TorchRecorder

__all__ = ["TorchRecorder"]
