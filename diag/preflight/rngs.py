"""Random generators: seed the global ones for a probe and put them back; find the ones a data
pipeline holds, so each pass over it can start where the preflight found it.

A data iterable that keeps a seeded generator (``self.rng = np.random.default_rng(0)``) gives a
new order each epoch, reproducibly; restoring that generator before each of the seed probe's two
passes makes them comparable. A generator made fresh inside ``__iter__`` without a seed is not
restored (it does not exist between passes): that is the nondeterminism the probe reports.
"""

from __future__ import annotations

import copy
import random
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

# (get_state, set_state, seed) for one more global generator, e.g. torch's.
GlobalRng = tuple[Callable[[], object], Callable[[object], None], Callable[[int], None]]

_GLOBALS: tuple[GlobalRng, ...] = (
    (np.random.get_state, np.random.set_state, np.random.seed),
    (random.getstate, random.setstate, random.seed),
)


@contextmanager
def seeded(seed: Optional[int], extra: Sequence[GlobalRng] = ()) -> Iterator[None]:
    """Seed every global generator with ``seed`` (None: leave them) and restore their states after."""
    rngs = (*_GLOBALS, *extra)
    saved = [get() for get, _, _ in rngs]
    try:
        if seed is not None:
            for _, _, seed_fn in rngs:
                seed_fn(seed)
        yield
    finally:
        for (_, put, _), state in zip(rngs, saved):
            put(state)


def _handle(value, extra_types) -> Optional[tuple[Callable[[], object], Callable[[object], None]]]:
    if isinstance(value, np.random.Generator):
        bg = value.bit_generator
        return (lambda: copy.deepcopy(bg.state)), (lambda s: setattr(bg, "state", s))
    if isinstance(value, np.random.RandomState):
        return value.get_state, value.set_state
    if isinstance(value, random.Random):
        return value.getstate, value.setstate
    for cls, get_name, set_name in extra_types:
        if isinstance(value, cls):
            return getattr(value, get_name), getattr(value, set_name)
    return None


def held_generators(obj, extra_types: Sequence[tuple[type, str, str]] = (), depth: int = 3) -> Callable[[], None]:
    """Snapshot the generators ``obj`` holds (attributes, a few levels deep); return a function that restores them.

    Args:
      obj: a data iterable (a DataLoader, a user's batch class).
      extra_types: ``(class, get_state_name, set_state_name)`` of framework generators (``torch.Generator``).
      depth: how many attribute levels to search (DataLoader -> batch_sampler -> sampler -> generator is 3).
    """
    found: list[tuple[Callable[[object], None], object]] = []
    seen: set[int] = set()

    def walk(value, level: int) -> None:
        if id(value) in seen or len(seen) > 500:
            return
        seen.add(id(value))
        handle = _handle(value, extra_types)
        if handle is not None:
            found.append((handle[1], handle[0]()))
            return
        if level >= depth or isinstance(value, (np.ndarray, str, bytes, int, float)) or not hasattr(value, "__dict__"):
            return
        for child in list(vars(value).values())[:64]:
            walk(child, level + 1)

    walk(obj, 0)

    def restore() -> None:
        for put, state in found:
            put(copy.deepcopy(state))

    return restore
