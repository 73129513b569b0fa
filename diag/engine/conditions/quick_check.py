"""A clause's values checked without building the clause models, when they are plainly valid.

Importing and building the pydantic clause models (``models``) costs ~4 ms of explain's start
(measured with ``-X importtime``), and every clause of the built-in rules passes them. So each
clause is first checked here by plain type tests that accept *only* values the model accepts too
(exact ``int``/``float``/``bool``/``str``, bounds, the YAML key names); anything else, well formed
or not, goes to the model, which says what is wrong (``first_error``). The check is a strict subset
of the model: ``tests/test_clause_quick_check.py`` holds it to that on generated clauses, and
to covering every field of every model, so the two cannot drift apart silently.

Example:
  >>> first_error("signal", {"series": "loss", "op": ">", "value": 1.5, "for": 3}) is None
  True
  >>> first_error("signal", {"series": "loss", "value": 1, "min_frac": "abc"})[0]
  ('min_frac',)
"""

from __future__ import annotations

_BIG = 2 ** 53  # ints beyond this go to the model (float conversion, int64 limits)


def _number(v, low=None, high=None) -> bool:
    if type(v) is int:
        ok = -_BIG <= v <= _BIG
    elif type(v) is float:
        ok = v == v  # NaN goes to the model (it fails any bound there)
    else:
        return False
    return ok and (low is None or v >= low) and (high is None or v <= high)


def _int(v, low, high=_BIG) -> bool:
    return type(v) is int and low <= v <= high


def _name(v) -> bool:
    return v is None or isinstance(v, str)


def _bound(v) -> bool:
    return v is None or isinstance(v, str) or _number(v)


def _window(v) -> bool:
    return v is None or _int(v, 0, 1_000_000)


def _ramp(v) -> bool:
    return v is None or isinstance(v, list) and len(v) == 2 and all(_number(x) for x in v)


def _one_of(*choices):
    return lambda v: type(v) is str and v in choices


def _mapping(fields: dict, required=()):
    def check(v) -> bool:
        return (isinstance(v, dict) and all(type(k) is str and k in fields and fields[k](x) for k, x in v.items())
                and all(k in v for k in required))
    return check


def _args(v) -> bool:
    return v is None or isinstance(v, dict) and all(type(k) is str and _number(x) for k, x in v.items())


_WITHIN = _mapping({"from": _bound, "to": _bound})
_LAYERS = _mapping({"min_frac": lambda v: _number(v, 0, 1), "exclude_output": lambda v: type(v) is bool})

# Keyed by the names a rule file uses (the models' aliases: ``for``, ``as``, ``from``).
FIELDS = {
    "signal": {
        "series": lambda v: isinstance(v, str), "fn": lambda v: isinstance(v, str), "args": _args,
        "smooth": lambda v: _int(v, 0, 1_000_000), "other": _name, "other_smooth": lambda v: _int(v, 0, 1_000_000),
        "op": _one_of(">", ">=", "<", "<=", "==", "!="), "value": _number, "for": lambda v: _int(v, 1),
        "at": _one_of("any", "all", "last"), "min_frac": lambda v: _number(v, 0, 1),
        "within": lambda v: v is None or _WITHIN(v), "layers": lambda v: v is None or _LAYERS(v),
        "non_finite_is_true": lambda v: type(v) is bool, "ramp": _ramp, "as": _name,
    },
    "record": {"kind": lambda v: isinstance(v, str), "where": _name, "as": _name, "ramp": _ramp, "ramp_of": _name},
    "fact": {"fact_id": lambda v: isinstance(v, str), "as": _name, "before": _name, "after": _name, "where": _name},
}
REQUIRED = {"signal": ("series",), "record": ("kind",), "fact": ("fact_id",)}
_CHECKS = {kind: _mapping(fields, REQUIRED[kind]) for kind, fields in FIELDS.items()}


def plainly_valid(kind: str, value) -> bool:
    """True only when the model of ``kind`` (signal, record, fact) certainly accepts ``value``."""
    return _CHECKS[kind](value)


def first_error(kind: str, value) -> tuple[tuple, str] | None:
    """``models.first_error`` of the clause model of ``kind``; the model is built only when needed."""
    if plainly_valid(kind, value):
        return None
    from diag.engine.conditions import models

    model = {"signal": models.SignalClause, "record": models.RecordClause, "fact": models.FactClause}[kind]
    return models.first_error(model, value)


def located(body, loc: tuple) -> tuple[int, int]:
    """``models.located``: where the refused value is (only ever called on an error)."""
    from diag.engine.conditions.models import located as locate

    return locate(body, loc)
