"""The pydantic model of each clause kind: every value a rule file gives a clause, typed.

The clause compilers (``parse``, ``signal_syntax``) keep their own checks where they can say more
than a type error (an unknown series with a suggestion, an ``fn(arg=N)`` call, an operator), and
run the clause through its model first, so that every other value of the wrong type or range is
a located ``file:line:col`` error naming the field, never a ``float('abc')`` deep in the compiler.

Types are strict: a number is an int or a float (not a bool, not a numeric string), a flag is a
bool, text is a string. ``first_error`` turns pydantic's errors into the key path and message of
the first one; the ``LocDict`` positions of the rule file then place it (``located``).

Example:
  >>> first_error(SignalClause, {"series": "loss", "value": 1, "min_frac": "abc"})[0]
  ('min_frac',)
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from diag.trace.limits import excerpt

Number = StrictFloat  # an int or a float; never a bool or a numeric string
Bound = Optional[Union[StrictFloat, StrictStr]]  # a step, or a percentage like '50%'
Window = Optional[StrictInt]
Name = Optional[StrictStr]


class _Clause(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Within(_Clause):
    from_: Bound = Field(default=None, alias="from")
    to: Bound = None


class Layers(_Clause):
    min_frac: Number = Field(default=0.0, ge=0, le=1, description="Share of the measured layers that must fire.")
    exclude_output: StrictBool = False


class SignalClause(_Clause):
    """``signal: {series, fn, op, value, for, at, within, layers, ...}``."""

    series: StrictStr
    fn: StrictStr = "value"
    args: Optional[dict[StrictStr, Number]] = None
    smooth: Window = Field(default=0, ge=0, le=1_000_000)
    other: Name = None
    other_smooth: Window = Field(default=0, ge=0, le=1_000_000)
    op: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    value: Number = 0
    for_: StrictInt = Field(default=1, alias="for", ge=1)
    at: Literal["any", "all", "last"] = "any"
    min_frac: Number = Field(default=0.0, ge=0, le=1)
    within: Optional[Within] = None
    layers: Optional[Layers] = None
    non_finite_is_true: StrictBool = False
    ramp: Optional[list[Number]] = Field(default=None, min_length=2, max_length=2)
    as_: Name = Field(default=None, alias="as")


class RecordClause(_Clause):
    """``record: {kind, where, as, ramp, ramp_of}``."""

    kind: StrictStr
    where: Name = None
    as_: Name = Field(default=None, alias="as")
    ramp: Optional[list[Number]] = Field(default=None, min_length=2, max_length=2)
    ramp_of: Name = None


class FactClause(_Clause):
    """``fact:``/``absent:`` with its modifiers (``as``, ``before``, ``after``, ``where``)."""

    fact_id: StrictStr
    as_: Name = Field(default=None, alias="as")
    before: Name = None
    after: Name = None
    where: Name = None


_UNION_TAGS = {"int", "float", "str", "bool", "list", "dict", "none", "constrained-int", "constrained-float"}


def first_error(model: type[BaseModel], value) -> tuple[tuple, str] | None:
    """``(key path, message)`` of the first thing ``model`` refuses in ``value``, or None when it is valid."""
    try:
        model.model_validate(value)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        # A union adds the member it tried ('float', 'str', 'function-after[...]') to the path: not a key.
        loc = tuple(part for part in err["loc"] if isinstance(part, int) or part not in _UNION_TAGS
                    and "[" not in part)
        shown = ".".join(str(part) for part in loc) or "value"
        got = f" (got {excerpt(err['input'], 60)})" if err["type"] != "missing" else ""
        return loc, f"{shown}: {err['msg'][0].lower() + err['msg'][1:]}{got}"
    return None


def located(body, loc: tuple) -> tuple[int, int]:
    """The ``(line, col)`` of the value at key path ``loc`` inside a clause mapping read from YAML."""
    node, pos = body, getattr(body, "pos", (0, 0))
    for part in loc:
        if isinstance(node, dict) and part in node:
            pos = node.value_pos(part) if hasattr(node, "value_pos") else pos
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            pos = node.item_pos(part) if hasattr(node, "item_pos") else pos
            node = node[part]
        else:
            break
    return pos
