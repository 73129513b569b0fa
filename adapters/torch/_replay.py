"""Opt-in: replay the first non-finite step under PyTorch's NaN debugging and name the operation.

``torch.autograd.detect_anomaly`` checks what backward functions return, so it names a NaN made
in the backward pass (``SqrtBackward0`` of ``sqrt(0)``) but not one made in the forward pass: there
the first backward function to return NaN is that of a later layer (the matmul that consumed
the NaN). So the replay checks the forward pass first, operation by operation (a
``TorchFunctionMode`` sees every torch function and tensor method the model calls, functional ops
between modules included): the first whose output is non-finite while its inputs were finite is
named, with the user's line that called it. When the forward pass is clean, the backward pass of
the replayed output runs under ``detect_anomaly``. The loss function is not replayed (the
recorder never sees it): a NaN made there is already reported as the loss's.

Slow (a Python check per operation), so only on request and only once, after the first NaN.
"""

from __future__ import annotations

import traceback
import warnings

import torch
from torch.overrides import TorchFunctionMode, resolve_name

from diag.adapters.replay import replay_event, user_source
from diag.trace.records import NonFiniteReplayEvent

FORWARD_TOOL = "torch.overrides.TorchFunctionMode"
BACKWARD_TOOL = "torch.autograd.detect_anomaly"


def _float_tensors(tree) -> list[torch.Tensor]:
    found = []

    def visit(x):
        if isinstance(x, torch.Tensor):
            if x.is_floating_point() or x.is_complex():
                found.append(x)
        elif isinstance(x, (list, tuple)):
            for item in x:
                visit(item)
        elif isinstance(x, dict):
            for item in x.values():
                visit(item)

    visit(tree)
    return found


class FirstNonFiniteOp(TorchFunctionMode):
    """Notes the first torch function whose output is non-finite while its inputs were finite."""

    def __init__(self):
        super().__init__()
        self.operation: str | None = None
        self.stack = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.operation is None:
            with torch.no_grad():
                outs = _float_tensors(out)
                if outs and not all(bool(torch.isfinite(o).all()) for o in outs):
                    if all(bool(torch.isfinite(a).all()) for a in _float_tensors((args, kwargs or {}))):
                        self.operation = resolve_name(func) or getattr(func, "__name__", str(func))
                        self.stack = traceback.extract_stack()[:-1]
        return out


def replay_step(model: torch.nn.Module, state: dict, x: torch.Tensor, *, step: int) -> NonFiniteReplayEvent:
    """Replay ``model(x)`` with parameters/buffers ``state`` (``functional_call``), forward
    checked operation by operation, then backward under ``detect_anomaly``."""
    state = {name: t.detach().clone().requires_grad_(t.is_floating_point()) for name, t in state.items()}
    watch = FirstNonFiniteOp()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.enable_grad(), torch.autograd.detect_anomaly(check_nan=True):
                with watch:
                    out = torch.func.functional_call(model, state, (x,))
                if watch.operation is not None:
                    source = user_source(watch.stack)
                    at = f" at {source}" if source else ""
                    return NonFiniteReplayEvent(
                        step=step, tool=FORWARD_TOOL, operation=watch.operation, source=source,
                        traceback="".join(traceback.format_list(watch.stack[-12:])),
                        message=f"forward replay: {watch.operation} made the first NaN/Inf from finite inputs{at}")
                outs = [o for o in _float_tensors(out) if o.requires_grad]
                leaves = [t for t in state.values() if t.requires_grad]
                if outs and leaves:
                    torch.autograd.grad([o.sum() for o in outs], leaves, allow_unused=True)
    except RuntimeError as e:
        if "returned nan" not in str(e) and "returned inf" not in str(e):
            return NonFiniteReplayEvent(step=step, tool=BACKWARD_TOOL, message=f"replay failed: {str(e)[:300]}")
        forward = next((str(w.message) for w in caught if "Traceback of forward call" in str(w.message)), None)
        frames = _forward_frames(forward) if forward else []
        return replay_event(e, step=step, tool=BACKWARD_TOOL, frames=frames or None, extra_traceback=forward)
    except Exception as e:  # noqa: BLE001 - say why no operation was named
        return NonFiniteReplayEvent(step=step, tool=FORWARD_TOOL, message=f"replay failed: {type(e).__name__}: {str(e)[:300]}")
    return NonFiniteReplayEvent(step=step, tool=BACKWARD_TOOL,
                                message="the model's forward and backward passes stayed finite on replay: the NaN "
                                        "was made in the loss computation or outside the model")


def _forward_frames(text: str) -> list:
    """The frames of PyTorch's 'Traceback of forward call that caused the error' warning."""
    frames = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        line = line.strip()
        if line.startswith('File "'):
            try:
                filename = line.split('"')[1]
                lineno = int(line.split("line ")[1].split(",")[0])
                name = line.split(" in ")[-1]
            except (IndexError, ValueError):
                continue
            frames.append(traceback.FrameSummary(filename, lineno, name, lookup_line=False))
    return frames
