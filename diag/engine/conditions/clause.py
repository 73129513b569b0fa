"""The compiled form of a condition: ``Clause``, how one evaluated (``Outcome``), and the names
both share (clause kinds, series, comparison operators, the firing threshold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diag.engine.expressions import Expression


CF_THRESHOLD = 0.2
"""MYCIN's threshold: a premise below this certainty does not fire a rule."""
CLAUSE_KINDS = ("signal", "fact", "absent", "context", "expr", "record", "all", "any", "not")
MODIFIERS = ("as", "before", "after", "where", "ramp", "ramp_of")
SIGNAL_KEYS = ("series", "smooth", "fn", "args", "other", "other_smooth", "op", "value", "for", "at", "min_frac",
               "within", "layers", "non_finite_is_true", "ramp")
OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
       "==": np.equal, "!=": np.not_equal}
SCALAR_SERIES = (
    "loss", "lr", "grad_norm", "update_norm", "param_norm", "loss_scale", "skipped", "epoch", "step_time",
    "data_wait_time", "time", "memory_bytes",
    *(f"{g}.{f}" for g in ("input", "labels")
      for f in ("mean", "std", "min", "max", "nonfinite", "label_entropy", "distinct_labels")),
)
LAYER_SERIES = (
    *(f"layers.{f}" for f in ("grad_norm", "param_norm", "update_norm", "update_ratio", "grad_nonfinite",
                              "param_nonfinite")),
    *(f"activations.{f}" for f in ("mean", "std", "zero_fraction", "saturation_fraction", "nonfinite")),
)
_OPEN_SERIES = re.compile(r"^(metrics\.[A-Za-z0-9_]+|eval\.[A-Za-z0-9_]+\.(loss|metrics\.[A-Za-z0-9_]+))$")


class ClauseError(Exception):
    """A problem in one clause, with its place in the file."""

    def __init__(self, message: str, pos: tuple[int, int]):
        super().__init__(message)
        self.message = message
        self.pos = pos


def known_series(name: str) -> bool:
    return name in SCALAR_SERIES or name in LAYER_SERIES or bool(_OPEN_SERIES.match(name))


@dataclass
class Clause:
    kind: str
    text: str
    pos: tuple[int, int]
    as_: str | None = None
    children: list["Clause"] = field(default_factory=list)
    # signal
    series: str | None = None
    smooth: int = 0
    fn: str = "value"
    args: dict = field(default_factory=dict)
    other: str | None = None
    other_smooth: int = 0
    op: str = ">"
    value: float = 0.0
    for_: int = 1
    at: str = "any"
    min_frac: float = 0.0
    within: tuple = (None, None)
    layers_min_frac: float = 0.0
    exclude_output: bool = False
    non_finite_is_true: bool = False
    ramp: tuple | None = None
    # fact / absent
    fact_id: str | None = None
    before: str | None = None
    after: str | None = None
    where: Expression | None = None
    # context / expr / record
    expression: Expression | None = None
    record_kind: str | None = None
    ramp_of: str | None = None

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def is_layer_signal(self) -> bool:
        return self.kind == "signal" and self.series in LAYER_SERIES


@dataclass
class Outcome:
    """How one clause evaluated for one binding."""

    clause: Clause
    ok: bool
    cf: float
    attrs: dict | None = None
    missing: list[str] = field(default_factory=list)
    observed: Any = None
    threshold: Any = None
    steps: list[int] | None = None
    layer: str | None = None
    fact_key: str | None = None
    children: list["Outcome"] = field(default_factory=list)

    def satisfied(self) -> tuple[int, int]:
        """(top-level clauses that held, top-level clauses) for why-not reports."""
        if self.clause.kind == "all":
            return sum(c.ok for c in self.children), len(self.children)
        return int(self.ok), 1


def bind(clause: Clause, values: dict, attrs: dict) -> None:
    name = clause.as_ or clause.kind
    values[name] = attrs


def ramp_cf(x, ramp) -> float:
    if x is None or not np.isfinite(x):
        return 1.0 if x is not None and np.isinf(x) and (x > 0) == (ramp[1] > ramp[0]) else 0.0
    lo, hi = ramp
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def count_clauses(clause: Clause) -> int:
    """Number of leaf clauses (specificity, for ranking ties)."""
    return sum(1 for c in clause.walk() if c.kind not in ("all", "any", "not"))
