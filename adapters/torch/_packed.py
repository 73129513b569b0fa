"""A step's numbers packed into one float32 vector on the device: one host copy per step.

Every statistic of a step (loss, squared norms, activation table, batch statistics, metrics) is
flattened into one tensor and copied to the host with a single ``tolist()``: one synchronization
instead of one per statistic, which on a GPU is most of the recorder's cost.
"""

from __future__ import annotations

import torch


class PackedStep:
    """Named tensors appended in order; :meth:`unpack` returns them as lists of floats."""

    def __init__(self, device: torch.device):
        self.device = device
        self._parts: list[torch.Tensor] = []
        self._layout: list[tuple[str, int]] = []

    def add(self, name: str, tensor: torch.Tensor) -> None:
        flat = tensor.detach().reshape(-1)
        if flat.dtype != torch.float32:
            flat = flat.float()
        if flat.device != self.device:  # inputs and labels may still sit on the CPU
            flat = flat.to(self.device, non_blocking=True)
        self._parts.append(flat)
        self._layout.append((name, flat.numel()))

    def unpack(self) -> tuple[dict[str, list[float]], list[float]]:
        """``(values by name, metric values in order)``: the one host transfer of the step.
        Tensors added as ``"metric"`` are scalars, kept in the order they were added."""
        parts = self._parts
        values = (parts[0] if len(parts) == 1 else torch.cat(parts)).tolist()  # one part: no copy
        got: dict[str, list[float]] = {}
        metrics: list[float] = []
        offset = 0
        for name, size in self._layout:
            chunk = values[offset: offset + size]
            offset += size
            if name == "metric":
                metrics.append(chunk[0])
            else:
                got[name] = chunk
        return got, metrics
