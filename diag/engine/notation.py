"""The compact series notation of rule tests (promtool's, plus ``_`` for "not logged").

Space-separated terms, each expanding to one or more logged points:

* ``1.5`` one point; ``nan``, ``inf``, ``-inf`` non-finite points;
* ``a+bxn`` n+1 points ``a, a+b, ..., a+n*b``; ``a-bxn`` counts down; ``axn`` repeats a n+1 times;
* ``_`` one point not logged; ``_xn`` n points not logged (promtool's ``_x3`` is three).

Example:
  >>> parse_series("1+1x2 _ nan")
  [1.0, 2.0, 3.0, None, nan]
"""

from __future__ import annotations

import math
import re

_TERM = re.compile(
    r"^(?P<a>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)"
    r"(?:(?P<sign>[-+])(?P<b>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))?"
    r"(?:x(?P<n>\d+))?$"
)
MAX_POINTS = 1_000_000


class NotationError(ValueError):
    """A series term that is not in the notation."""


def parse_series(text) -> list:
    """Expand the notation into a list of floats (None where a point was not logged)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return [float(text)]
    if not isinstance(text, str):
        raise NotationError(f"series values must be a string like '1+1x10 nan', got {text!r}")
    out: list = []
    for term in text.split():
        if term == "_" or term.startswith("_x"):
            n = 1 if term == "_" else _count(term[2:], term)
            out.extend([None] * n)
            continue
        m = _TERM.match(term)
        if not m:
            raise NotationError(f"cannot read series term {term!r} (use a, a+bxn, a-bxn, axn, _, _xn, nan, inf)")
        a = float(m.group("a"))
        step = float(m.group("b") or 0.0) * (-1 if m.group("sign") == "-" else 1)
        n = _count(m.group("n"), term) if m.group("n") is not None else None
        if n is None:
            if m.group("b") is not None:
                raise NotationError(f"series term {term!r} has a step but no count (write {term}xN)")
            out.append(a)
        else:
            if not math.isfinite(a) and step:
                raise NotationError(f"series term {term!r}: a non-finite start cannot step")
            out.extend(a + i * step for i in range(n + 1))
        if len(out) > MAX_POINTS:
            raise NotationError(f"series is longer than {MAX_POINTS} points")
    return out


def _count(text: str, term: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise NotationError(f"cannot read the count in {term!r}") from None
    if n > MAX_POINTS:
        raise NotationError(f"count in {term!r} is larger than {MAX_POINTS}")
    return n
