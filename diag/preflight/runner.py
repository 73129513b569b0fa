"""What a probe needs from a framework: the runner protocol, and the context a probe runs in.

The probes in this package are framework-free: they call a ``Runner`` (PyTorch:
``diag.adapters.torch.preflight``, Flax NNX: ``diag.adapters.flax.preflight``) that trains *copies*
of the user's model and optimizer. A ``Session`` is one such copy; every probe starts its own, so
no probe sees another's updates and the objects the user passed in are never changed.

A batch is whatever the user's ``train_batches`` yields, read as ``(inputs, targets)``: its first
element goes to the model, its second to the loss, ``loss_fn(model(inputs), targets)``.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

import numpy as np

from diag.preflight import rngs


@dataclass
class ParamGrad:
    """One trainable parameter's gradient on one batch."""

    name: str
    trainable: bool
    connected: bool  # False: the framework reports no gradient at all (torch: ``p.grad is None``)
    norm: float
    finite: bool
    size: int


class Session(Protocol):
    """One fresh copy of the model and its optimizer."""

    def loss(self, batch) -> float:
        """The loss on ``batch`` without an update."""

    def step(self, batch, lr_factor: float = 1.0) -> float:
        """One optimizer step with the learning rate times ``lr_factor``; the loss before it."""

    def gradients(self, batch) -> tuple[float, list[ParamGrad]]:
        """The loss and every parameter's gradient on ``batch`` (no update)."""

    def outputs(self, batch) -> np.ndarray:
        """The model's outputs on the batch's inputs, as numpy."""

    def loss_of(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """The user's loss on given outputs and targets (numpy in, converted to the framework)."""


class Runner(Protocol):
    framework: str

    def session(self) -> Session:
        """A fresh copy of the model and optimizer, as given (before any probe's update)."""

    def to_numpy(self, batch) -> tuple[Any, np.ndarray]:
        """``(inputs, targets)`` of a batch as numpy (inputs may be a dict or tuple of arrays)."""

    def seeded(self, seed: Optional[int]) -> AbstractContextManager:
        """Seed every global generator (framework, numpy, random; None: leave them); restore their states after."""

    def isolated(self) -> AbstractContextManager:
        """Around the whole preflight: global state the probes touch (generators, threads) ends as it was."""

    def fresh_pass(self, iterable: Iterable) -> Optional[Iterator]:
        """A new pass over ``iterable`` as at the start of the preflight, or None for a one-shot iterator."""

    def learning_rate(self) -> Optional[float]:
        """The configured learning rate, where the optimizer shows it."""

    def determinism_notes(self) -> list[str]:
        """Framework settings that allow non-deterministic results (cuDNN benchmark mode...)."""


class Deadline:
    """Seconds left to a probe; probes stop their loops when it runs out and say so."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    @property
    def left(self) -> float:
        return self.end - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.left <= 0


@dataclass
class ProbeContext:
    """What a probe is given: the runner, the first batches of each split, and its time."""

    runner: Runner
    train: list  # the first few train batches (framework objects), from one pass
    val: Optional[list]
    train_batches: Iterable
    deadline: Deadline
    configured_lr: Optional[float] = None
    _numpy: dict = field(default_factory=dict)

    def numpy(self, split: str = "train") -> list[tuple[Any, np.ndarray]]:
        """The split's batches as ``(inputs, targets)`` numpy pairs (converted once)."""
        if split not in self._numpy:
            batches = self.train if split == "train" else (self.val or [])
            self._numpy[split] = [self.runner.to_numpy(b) for b in batches]
        return self._numpy[split]


@dataclass
class ProbeResult:
    """What one probe found, and a one-line account of what it measured."""

    probe: str
    findings: list = field(default_factory=list)
    summary: str = ""
    status: str = "ok"  # "ok" | "findings" | "skipped" | "error" | "stopped"
    seconds: float = 0.0
    missing: list[str] = field(default_factory=list)  # why it was skipped: "val_batches", ...


def as_numpy(value) -> np.ndarray:
    """An array of any framework as numpy (a torch tensor from a DataLoader feeds JAX models too)."""
    detach = getattr(value, "detach", None)
    return np.asarray(detach().cpu().numpy() if detach is not None else value)


class RunnerBase:
    """What every framework's runner does alike: batches to numpy, seeding, fresh passes over the data.

    A subclass sets ``extra_rngs`` (its framework's global generators, seeded and restored beside
    numpy's and Python's) and ``_restore_data_rngs`` (from ``rngs.held_generators`` at start).
    """

    extra_rngs: tuple = ()
    _restore_data_rngs: Callable[[], None]

    def to_numpy(self, batch) -> tuple[Any, np.ndarray]:
        inputs, targets = split_batch(batch)
        return map_arrays(as_numpy, inputs), as_numpy(targets)

    def seeded(self, seed: Optional[int]) -> AbstractContextManager:
        return rngs.seeded(seed, extra=self.extra_rngs)

    def fresh_pass(self, iterable: Iterable) -> Optional[Iterator]:
        if iter(iterable) is iterable:  # a one-shot iterator: its first batches are gone
            return None
        self._restore_data_rngs()
        return iter(iterable)


def take(iterable: Iterable, n: int) -> list:
    """The first ``n`` items of one pass over ``iterable``."""
    out = []
    for item in iterable:
        out.append(item)
        if len(out) >= n:
            break
    return out


def split_batch(batch) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch: a tuple/list of two or more, or a dict with inputs/targets keys."""
    if isinstance(batch, dict):
        for xk, yk in (("inputs", "targets"), ("x", "y"), ("input", "target"), ("image", "label"), ("features", "labels")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
        raise TypeError(f"a dict batch needs inputs/targets (or x/y) keys; got keys {sorted(batch)[:8]}")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(f"a batch must be (inputs, targets); got {type(batch).__name__}"
                    + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""))


def map_arrays(fn, tree):
    """Apply ``fn`` to every array in a tuple/list/dict nest (the inputs of a batch)."""
    if isinstance(tree, dict):
        return {k: map_arrays(fn, v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_arrays(fn, v) for v in tree)
    return fn(tree)


def leaves(tree) -> list:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in leaves(v)]
    if isinstance(tree, (tuple, list)):
        return [x for v in tree for x in leaves(v)]
    return [tree]


def first_leaf(tree) -> np.ndarray:
    return np.asarray(leaves(tree)[0])


def fmt(x: float) -> str:
    """A number for an evidence sentence."""
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def names(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
