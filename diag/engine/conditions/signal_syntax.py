"""Parsing a ``signal:`` clause: series, ``fn``, comparison, ``for``/``at``/``within``/``layers``."""

from __future__ import annotations

from diag.engine import signals
from diag.engine.conditions.clause import (
    LAYER_SERIES, OPS, SCALAR_SERIES, SIGNAL_KEYS, Clause, ClauseError, known_series,
)
from diag.engine.conditions.quick_check import first_error, located
from diag.engine.conditions.syntax import (
    check_keys, node_pos, parse_fn_call, parse_ramp, parse_within_bound,
)
from diag.engine.yamlloc import LocDict, did_you_mean


_CHECKED_BELOW = ("series", "fn", "args", "smooth", "other", "op", "value", "for", "at", "within", "ramp")


def compile_signal(clause: Clause, body, pos) -> None:
    if isinstance(body, str):
        body = LocDict(series=body)
    if not isinstance(body, dict):
        raise ClauseError("signal: takes a mapping {series, fn, op, value, for, ...}", pos)
    check_keys(body, SIGNAL_KEYS + ("as",), "signal")
    # The model types every value; the checks below say more for the keys they know (a
    # suggestion for a series, the form of an fn call), so those speak first.
    if isinstance(body.get("layers"), LocDict):
        check_keys(body["layers"], ("min_frac", "exclude_output"), "layers")
    refused = first_error("signal", body)
    if refused is not None and refused[0][0] not in _CHECKED_BELOW:
        raise ClauseError(f"signal {refused[1]}", located(body, refused[0]))
    series = body.get("series")
    if not isinstance(series, str) or not known_series(series):
        raise ClauseError(f"unknown series {series!r}{did_you_mean(series, SCALAR_SERIES + LAYER_SERIES)}",
                          node_pos(body, "series"))
    clause.series = series
    clause.as_ = clause.as_ or body.get("as")
    name, args = parse_fn_call(body.get("fn", "value"), node_pos(body, "fn"))
    spec = signals.SIGNALS.get(name)
    if spec is None:
        raise ClauseError(f"unknown signal fn {name!r}{did_you_mean(name, signals.SIGNALS)}", node_pos(body, "fn"))
    args.update(body.get("args") or {})
    for key, value in args.items():
        if key not in spec.params:
            allowed = ", ".join(spec.params) or "no arguments"
            raise ClauseError(f"signal fn {name!r} has no argument {key!r} (it takes {allowed})"
                              f"{did_you_mean(key, spec.params)}", node_pos(body, "fn"))
        if not isinstance(value, (int, float)) or value < 1 or value > 1_000_000:
            raise ClauseError(f"argument {key} of {name} must be a number of points from 1 to 1e6", node_pos(body, "fn"))
        args[key] = int(value)
    clause.fn, clause.args = name, args
    smooth = body.get("smooth", 0) or 0
    if not isinstance(smooth, int) or isinstance(smooth, bool) or smooth < 0 or smooth > 1_000_000:
        raise ClauseError("smooth: is a window of logged points (a trailing mean applied before fn)",
                          node_pos(body, "smooth"))
    clause.smooth = smooth
    if spec.pair:
        other = body.get("other")
        if not isinstance(other, str) or not known_series(other):
            raise ClauseError(f"signal fn {name!r} compares two series: give other: <series>"
                              f"{did_you_mean(other, SCALAR_SERIES) if other else ''}", node_pos(body, "fn"))
        if series in LAYER_SERIES or other in LAYER_SERIES:
            raise ClauseError(f"{name} works on scalar series only", node_pos(body, "other"))
        clause.other = other
        clause.other_smooth = body.get("other_smooth", 0) or 0
    elif "other" in body:
        raise ClauseError(f"other: is only for pair functions ({', '.join(n for n, s in signals.SIGNALS.items() if s.pair)})",
                          node_pos(body, "other"))
    op = body.get("op", ">")
    if op not in OPS:
        raise ClauseError(f"unknown op {op!r}; ops are {' '.join(OPS)}", node_pos(body, "op"))
    clause.op = op
    value = body.get("value", 0)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ClauseError(f"value must be a number, got {value!r}", node_pos(body, "value"))
    clause.value = float(value)
    for_ = body.get("for", 1)
    if not isinstance(for_, int) or isinstance(for_, bool) or for_ < 1:
        raise ClauseError("for: is a number of consecutive logged points (at least 1)", node_pos(body, "for"))
    clause.for_ = for_
    at = body.get("at", "any")
    if at not in ("any", "all", "last"):
        raise ClauseError(f"at: is any, all or last, not {at!r}", node_pos(body, "at"))
    clause.at = at
    clause.min_frac = float(body.get("min_frac", 0.0))
    within = body.get("within") or {}
    if not isinstance(within, dict):
        raise ClauseError("within: takes {from: <step or N%>, to: <step or N%>}", node_pos(body, "within"))
    check_keys(within, ("from", "to"), "within") if isinstance(within, LocDict) else None
    clause.within = (parse_within_bound(within.get("from"), node_pos(body, "within")),
                     parse_within_bound(within.get("to"), node_pos(body, "within")))
    layers = body.get("layers") or {}
    if layers:
        if series not in LAYER_SERIES:
            raise ClauseError(f"layers: applies to per-layer series only ({series} is a scalar series)",
                              node_pos(body, "layers"))
        if isinstance(layers, LocDict):
            check_keys(layers, ("min_frac", "exclude_output"), "layers")
        clause.layers_min_frac = float(layers.get("min_frac", 0.0))
        clause.exclude_output = bool(layers.get("exclude_output", False))
    clause.non_finite_is_true = bool(body.get("non_finite_is_true", False))
    if body.get("ramp") is not None:
        clause.ramp = parse_ramp(body["ramp"], node_pos(body, "ramp"))
    if refused is not None:  # a checked key the checks above let through, yet of the wrong type
        raise ClauseError(f"signal {refused[1]}", located(body, refused[0]))
    fn_text = name + (f"({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")
    series_text = f"avg{smooth}({series})" if smooth > 1 else series
    target = (f"{fn_text}({series_text}{', ' + clause.other if clause.other else ''})" if fn_text != "value"
              else series_text)
    clause.text = f"{target} {op} {value:g}" + (f" for {for_} points" if for_ > 1 else "") + (
        f" at {at}" if at != "any" else "")
