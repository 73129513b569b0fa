"""Operations over lists of tensors: fused where this torch has it, per tensor where it does not.

``torch._foreach_*`` do one call for a whole list of tensors (one kernel launch for many on an
accelerator, one Python call instead of one per parameter on the CPU). They are private: a torch
release may rename them or change their arguments. Each function here tries the fused call and,
where this torch lacks it or refuses the arguments, takes the public per-tensor path, which gives
the same values (``tests/test_torch_foreach.py`` records a run on both paths and compares them).
"""

from __future__ import annotations

import torch

# What a fused call raises when its name exists but its signature or dtype support moved. The
# in-place ones fall back only on TypeError, which argument parsing raises before anything is
# written (a later error would repeat on the per-tensor path anyway).
_REFUSED = (TypeError, NotImplementedError, RuntimeError)


def _fused(name: str):
    return getattr(torch, name, None)


def norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The L2 norm of each tensor as a float32 0-d tensor on its device: computed in float32
    (half-precision tensors included), float64 tensors in float64 and then rounded.

    Example:
      >>> [float(n) for n in norms([torch.ones(4), torch.full((9,), 2.0, dtype=torch.float64)])]
      [2.0, 6.0]
    """
    wide = [i for i, t in enumerate(tensors) if t.dtype == torch.float64]
    if not wide:
        return _norms(tensors, torch.float32)
    # float32 is no accumulation type for float64 (torch refuses the narrowing).
    out = [None] * len(tensors)
    wide_set = set(wide)
    narrow = [i for i in range(len(tensors)) if i not in wide_set]
    for i, n in zip(narrow, _norms([tensors[i] for i in narrow], torch.float32)):
        out[i] = n
    for i, n in zip(wide, _norms([tensors[i] for i in wide], None)):
        out[i] = n.float()
    return out


def _norms(tensors: list[torch.Tensor], dtype: torch.dtype | None) -> list[torch.Tensor]:
    fused = _fused("_foreach_norm")
    if fused is not None and tensors:
        try:
            return list(fused(tensors, 2, dtype=dtype))
        except _REFUSED:
            pass
    return [torch.linalg.vector_norm(t, 2, dtype=dtype) for t in tensors]


def copies(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """A copy of each tensor (same dtype, device and values)."""
    fused = _fused("_foreach_mul")
    if fused is not None and tensors:
        try:
            return list(fused(tensors, 1.0))
        except _REFUSED:
            pass
    return [t.clone() for t in tensors]


def copy_(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """Overwrite each target with its source, in place (no allocation)."""
    _pairwise_in_place("_foreach_copy_", "copy_", targets, sources)


def sub_(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """``target -= source`` for each pair, in place."""
    _pairwise_in_place("_foreach_sub_", "sub_", targets, sources)


def _pairwise_in_place(fused_name: str, method: str, targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    fused = _fused(fused_name)
    if fused is not None and targets:
        try:
            fused(targets, sources)
            return
        except TypeError:
            pass
    for target, source in zip(targets, sources):
        getattr(target, method)(source)
