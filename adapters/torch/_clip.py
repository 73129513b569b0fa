"""Evidence of gradient clipping: the norm ``clip_grad_norm_`` saw and the bound it clipped to.

The step pre-hook measures the gradients as the optimizer sees them, after any clipping: a
clipped run and a healthy one then look alike, and exploding gradients hide behind the bound.
``torch.nn.utils.clip_grad_norm_`` computes the raw total norm and hands it, with ``max_norm``,
to the module-level ``_clip_grads_with_norm_``; the recorder wraps that function for as long as
it records (the user's call is unchanged, however ``clip_grad_norm_`` was imported) and notes
both numbers when the clipped parameters are the model's. No extra pass over the gradients.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch.nn.utils import clip_grad as _clip_module

_HOOKED = "_clip_grads_with_norm_"


class ClipWatch:
    """Calls ``on_clip(total_norm, max_norm)`` when ``clip_grad_norm_`` clips ``params``."""

    def __init__(self, params: Iterable[torch.Tensor], on_clip: Callable[[torch.Tensor, float], None]):
        self._ids = {id(p) for p in params}
        self._on_clip = on_clip
        self._original = None
        self._watched = None

    def install(self) -> bool:
        """Start watching; False where this torch has no such function (nothing is recorded)."""
        original = getattr(_clip_module, _HOOKED, None)
        if original is None:
            return False
        ids, watch = self._ids, self

        def watched(parameters, max_norm, total_norm, *args, **kwargs):
            params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
            if watch._on_clip is not None and any(id(p) in ids for p in params):
                watch._on_clip(total_norm, max_norm)
            return original(params, max_norm, total_norm, *args, **kwargs)

        self._original, self._watched = original, watched
        setattr(_clip_module, _HOOKED, watched)
        return True

    def uninstall(self) -> None:
        if self._watched is None:
            return
        if getattr(_clip_module, _HOOKED) is self._watched:
            setattr(_clip_module, _HOOKED, self._original)
        self._on_clip = None  # another watch wrapped ours: it stays in the chain, silent
