"""Cache compiled checks by their (function, structure) key when that key can be hashed.

Reusing the compiled program matters (compilation is most of a cold check), but a key is not
always hashable: a Flax NNX model that keeps a plain dict or list as an attribute carries it in
its graph definition. Such a model is still checked, just compiled afresh each time.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def cache_if_hashable(maxsize: int = 64) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def wrapper(*args):
            try:
                hash(args)
            except TypeError:
                return fn(*args)
            return cached(*args)

        wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
