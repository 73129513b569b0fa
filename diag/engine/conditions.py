"""The condition language of rules: a tree of clauses, compiled at load and evaluated per binding.

A ``when:`` block is ``all:`` / ``any:`` / ``not:`` over six clause kinds:

* ``signal:`` a time-series predicate: a series, a signal function, a comparison, ``for: N``
  consecutive points, ``at: any|all|last``, ``within: {from, to}``, ``layers: {min_frac}``;
* ``fact:`` a symptom or cause concluded by another rule (``as:`` binds it, ``before:``/``after:``
  order it in time against another bound fact, ``where:`` filters on its attributes);
* ``absent:`` no such fact;
* ``context:`` / ``expr:`` a rule-engine expression over the run context and bound facts;
* ``record:`` a ``data``/``check``/``eval``/``event`` record matching ``where:``.

Every clause yields an ``Outcome``: whether it held, its certainty (crisp clauses 0 or 1, a
``fact:`` clause the fact's certainty, ``ramp: [lo, hi]`` a graded value), what it observed, the
steps and layer it points at, and the inputs it missed. Outcomes are the justification tree.

Example (a clause as written in a rule file):
  >>> clause = compile_clause({"signal": {"series": "loss", "fn": "non_finite"}}, "x.yaml", set())
  >>> clause.kind, clause.series
  ('signal', 'loss')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diag.engine import signals
from diag.engine.expressions import (
    EvaluationFailed,
    Expression,
    ExpressionError,
    compile_expression,
    evaluate,
)
from diag.engine.facts import CONTEXT_TYPES, FACT_TYPE, RECORD_TYPES, record_attrs, records_of
from diag.engine.yamlloc import LocDict, RuleProblem, did_you_mean

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


# --------------------------------------------------------------------------- compiled clauses


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


def _pos(node, key=None) -> tuple[int, int]:
    if isinstance(node, LocDict):
        return node.value_pos(key) if key is not None else node.pos
    return getattr(node, "pos", (0, 0))


def _fn_call(text: str, pos) -> tuple[str, dict]:
    m = re.fullmatch(r"\s*([a-z_0-9]+)\s*(?:\((.*)\))?\s*", str(text))
    if not m:
        raise ClauseError(f"signal fn {text!r} is not 'name' or 'name(arg=value, ...)'", pos)
    name, inner = m.group(1), m.group(2)
    args: dict = {}
    if inner and inner.strip():
        for part in inner.split(","):
            km = re.fullmatch(r"\s*([a-z_]+)\s*=\s*(-?[0-9.eE+]+)\s*", part)
            if not km:
                raise ClauseError(f"signal fn argument {part.strip()!r} is not name=number", pos)
            args[km.group(1)] = float(km.group(2))
    return name, args


def _check_keys(node: LocDict, allowed, what: str) -> None:
    for key in node:
        if key not in allowed:
            raise ClauseError(f"unknown key {key!r} in {what}{did_you_mean(key, allowed)}", node.key_pos(key))


def _within_bound(value, pos):
    if value is None:
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return ("pct", float(value.strip()[:-1]) / 100.0)
        except ValueError:
            raise ClauseError(f"within bound {value!r} is not a number of steps or a percentage", pos) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("step", float(value))
    raise ClauseError(f"within bound {value!r} is not a number of steps or a percentage like '50%'", pos)


def expression_types(bound_names) -> dict:
    types = dict(CONTEXT_TYPES)
    for name in bound_names:
        types[name] = FACT_TYPE
    return types


def compile_clause(node: Any, path: str, bound_names: set[str], *, depth: int = 0) -> Clause:
    """Compile one clause mapping (``bound_names`` are all ``as:`` names of the rule).

    Raises:
      ClauseError: with the position of the offending key or value.
    """
    if depth > 12:
        raise ClauseError("condition nests deeper than 12 levels", _pos(node))
    if not isinstance(node, dict):
        raise ClauseError(f"a clause is a mapping like {{signal: ...}} or {{fact: ...}}, not {node!r}", _pos(node))
    kinds = [k for k in node if k in CLAUSE_KINDS]
    unknown = [k for k in node if k not in CLAUSE_KINDS and k not in MODIFIERS]
    if unknown:
        key = unknown[0]
        pos = node.key_pos(key) if isinstance(node, LocDict) else (0, 0)
        raise ClauseError(f"unknown clause key {key!r}{did_you_mean(key, CLAUSE_KINDS + MODIFIERS)}", pos)
    if len(kinds) != 1:
        raise ClauseError(f"a clause needs exactly one of {', '.join(CLAUSE_KINDS)}; found {kinds or 'none'}",
                          _pos(node))
    kind = kinds[0]
    body = node[kind]
    _check_name(node)
    pos = node.key_pos(kind) if isinstance(node, LocDict) else (0, 0)
    types = expression_types(bound_names)
    clause = Clause(kind=kind, text="", pos=pos, as_=node.get("as"))

    def expr(text, where_pos):
        try:
            return compile_expression(text, types)
        except ExpressionError as e:
            raise ClauseError(str(e), where_pos) from None

    if kind in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise ClauseError(f"{kind}: takes a non-empty list of clauses", pos)
        clause.children = [compile_clause(child, path, bound_names, depth=depth + 1) for child in body]
        clause.text = f"{kind} of {len(body)}"
    elif kind == "not":
        clause.children = [compile_clause(body, path, bound_names, depth=depth + 1)]
        clause.text = f"not ({clause.children[0].text})"
    elif kind in ("context", "expr"):
        clause.expression = expr(body, _pos(node, kind))
        clause.text = str(body)
    elif kind in ("fact", "absent"):
        if not isinstance(body, str):
            raise ClauseError(f"{kind}: takes a fact id", pos)
        clause.fact_id = body
        clause.before, clause.after = node.get("before"), node.get("after")
        for key in ("before", "after"):
            ref = node.get(key)
            if ref is not None and ref not in bound_names:
                raise ClauseError(f"{key}: {ref!r} is not a name bound with as:{did_you_mean(ref, bound_names)}",
                                  _pos(node, key))
        if "where" in node:
            clause.where = expr(node["where"], _pos(node, "where"))
        clause.text = f"{kind} {body}" + (f" before {clause.before}" if clause.before else "") + (
            f" after {clause.after}" if clause.after else "")
    elif kind == "record":
        if not isinstance(body, dict):
            raise ClauseError("record: takes a mapping {kind: data|check|eval|event, where: '...'}", pos)
        _check_keys(body, ("kind", "where", "as", "ramp", "ramp_of"), "record")
        record_kind = body.get("kind")
        if record_kind not in RECORD_TYPES:
            raise ClauseError(f"record kind {record_kind!r} is not one of {', '.join(RECORD_TYPES)}"
                              f"{did_you_mean(record_kind, RECORD_TYPES)}", _pos(body, "kind"))
        clause.record_kind = record_kind
        clause.as_ = clause.as_ or body.get("as")
        rtypes = {**CONTEXT_TYPES, **RECORD_TYPES[record_kind]}
        for name in bound_names:
            rtypes[name] = FACT_TYPE
        if "where" in body:
            try:
                clause.expression = compile_expression(body["where"], rtypes)
            except ExpressionError as e:
                raise ClauseError(str(e), _pos(body, "where")) from None
        ramp_of = body.get("ramp_of", node.get("ramp_of"))
        ramp = body.get("ramp", node.get("ramp"))
        if ramp is not None:
            clause.ramp = _ramp(ramp, _pos(body, "ramp"))
            if ramp_of not in RECORD_TYPES[record_kind]:
                raise ClauseError(f"ramp_of must name a {record_kind} attribute"
                                  f"{did_you_mean(ramp_of, RECORD_TYPES[record_kind])}", _pos(body, "ramp"))
            clause.ramp_of = ramp_of
        clause.text = f"record {record_kind}" + (f" where {body['where']}" if "where" in body else "")
    elif kind == "signal":
        _compile_signal(clause, body, pos)
        if node.get("ramp") is not None:
            clause.ramp = _ramp(node["ramp"], _pos(node, "ramp"))
    return clause


RESERVED = ("true", "false", "inf", "nan", "null", "and", "in", "or", "not", "for", "if", "else")


def _check_name(node) -> None:
    for holder in (node, *(node[k] for k in ("signal", "record") if isinstance(node.get(k), dict))):
        name = holder.get("as")
        if name is None:
            continue
        where = holder.key_pos("as") if isinstance(holder, LocDict) else (0, 0)
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ClauseError(f"as: {name!r} must be a lowercase name like 'spike'", where)
        if name in RESERVED or name in CONTEXT_TYPES:
            raise ClauseError(f"as: {name!r} is a reserved word or a context name; pick another name", where)


def _ramp(value, pos) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) or value[0] == value[1]):
        raise ClauseError("ramp takes two different numbers [lo, hi]", pos)
    return float(value[0]), float(value[1])


def _compile_signal(clause: Clause, body, pos) -> None:
    if isinstance(body, str):
        body = LocDict(series=body)
    if not isinstance(body, dict):
        raise ClauseError("signal: takes a mapping {series, fn, op, value, for, ...}", pos)
    _check_keys(body, SIGNAL_KEYS + ("as",), "signal")
    series = body.get("series")
    if not isinstance(series, str) or not known_series(series):
        raise ClauseError(f"unknown series {series!r}{did_you_mean(series, SCALAR_SERIES + LAYER_SERIES)}",
                          _pos(body, "series"))
    clause.series = series
    clause.as_ = clause.as_ or body.get("as")
    name, args = _fn_call(body.get("fn", "value"), _pos(body, "fn"))
    spec = signals.SIGNALS.get(name)
    if spec is None:
        raise ClauseError(f"unknown signal fn {name!r}{did_you_mean(name, signals.SIGNALS)}", _pos(body, "fn"))
    args.update(body.get("args") or {})
    for key, value in args.items():
        if key not in spec.params:
            allowed = ", ".join(spec.params) or "no arguments"
            raise ClauseError(f"signal fn {name!r} has no argument {key!r} (it takes {allowed})"
                              f"{did_you_mean(key, spec.params)}", _pos(body, "fn"))
        if not isinstance(value, (int, float)) or value < 1 or value > 1_000_000:
            raise ClauseError(f"argument {key} of {name} must be a number of points from 1 to 1e6", _pos(body, "fn"))
        args[key] = int(value)
    clause.fn, clause.args = name, args
    smooth = body.get("smooth", 0) or 0
    if not isinstance(smooth, int) or isinstance(smooth, bool) or smooth < 0 or smooth > 1_000_000:
        raise ClauseError("smooth: is a window of logged points (a trailing mean applied before fn)",
                          _pos(body, "smooth"))
    clause.smooth = smooth
    if spec.pair:
        other = body.get("other")
        if not isinstance(other, str) or not known_series(other):
            raise ClauseError(f"signal fn {name!r} compares two series: give other: <series>"
                              f"{did_you_mean(other, SCALAR_SERIES) if other else ''}", _pos(body, "fn"))
        if series in LAYER_SERIES or other in LAYER_SERIES:
            raise ClauseError(f"{name} works on scalar series only", _pos(body, "other"))
        clause.other = other
        clause.other_smooth = int(body.get("other_smooth", 0) or 0)
    elif "other" in body:
        raise ClauseError(f"other: is only for pair functions ({', '.join(n for n, s in signals.SIGNALS.items() if s.pair)})",
                          _pos(body, "other"))
    op = body.get("op", ">")
    if op not in OPS:
        raise ClauseError(f"unknown op {op!r}; ops are {' '.join(OPS)}", _pos(body, "op"))
    clause.op = op
    value = body.get("value", 0)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ClauseError(f"value must be a number, got {value!r}", _pos(body, "value"))
    clause.value = float(value)
    for_ = body.get("for", 1)
    if not isinstance(for_, int) or isinstance(for_, bool) or for_ < 1:
        raise ClauseError("for: is a number of consecutive logged points (at least 1)", _pos(body, "for"))
    clause.for_ = for_
    at = body.get("at", "any")
    if at not in ("any", "all", "last"):
        raise ClauseError(f"at: is any, all or last, not {at!r}", _pos(body, "at"))
    clause.at = at
    clause.min_frac = float(body.get("min_frac", 0.0))
    within = body.get("within") or {}
    if not isinstance(within, dict):
        raise ClauseError("within: takes {from: <step or N%>, to: <step or N%>}", _pos(body, "within"))
    _check_keys(within, ("from", "to"), "within") if isinstance(within, LocDict) else None
    clause.within = (_within_bound(within.get("from"), _pos(body, "within")),
                     _within_bound(within.get("to"), _pos(body, "within")))
    layers = body.get("layers") or {}
    if layers:
        if series not in LAYER_SERIES:
            raise ClauseError(f"layers: applies to per-layer series only ({series} is a scalar series)",
                              _pos(body, "layers"))
        if isinstance(layers, LocDict):
            _check_keys(layers, ("min_frac", "exclude_output"), "layers")
        clause.layers_min_frac = float(layers.get("min_frac", 0.0))
        clause.exclude_output = bool(layers.get("exclude_output", False))
    clause.non_finite_is_true = bool(body.get("non_finite_is_true", False))
    if body.get("ramp") is not None:
        clause.ramp = _ramp(body["ramp"], _pos(body, "ramp"))
    fn_text = name + (f"({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")
    series_text = f"avg{smooth}({series})" if smooth > 1 else series
    target = (f"{fn_text}({series_text}{', ' + clause.other if clause.other else ''})" if fn_text != "value"
              else series_text)
    clause.text = f"{target} {op} {value:g}" + (f" for {for_} points" if for_ > 1 else "") + (
        f" at {at}" if at != "any" else "")


def bound_names_of(when) -> set[str]:
    """Every ``as:`` name in a raw ``when`` tree, plus the default names ``signal``/``record``."""
    names: set[str] = set()

    def visit(node):
        if isinstance(node, dict):
            if isinstance(node.get("as"), str):
                names.add(node["as"])
            for key in ("signal", "record"):
                if isinstance(node.get(key), dict) and isinstance(node[key].get("as"), str):
                    names.add(node[key]["as"])
                if key in node:
                    names.add(key)
            for key in ("all", "any"):
                if isinstance(node.get(key), list):
                    for child in node[key]:
                        visit(child)
            if "not" in node:
                visit(node["not"])

    visit(when)
    return names


# --------------------------------------------------------------------------- evaluation


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


def evaluate_clause(clause: Clause, env, labels: dict, values: dict) -> Outcome:
    """Evaluate a clause; ``values`` holds context and bound names and gains new bindings."""
    kind = clause.kind
    if kind == "all":
        children = [evaluate_clause(c, env, labels, values) for c in clause.children]
        cf = min(c.cf for c in children)
        ok = cf >= CF_THRESHOLD
        missing = [m for c in children if not c.ok for m in c.missing]
        return Outcome(clause, ok, cf, children=children, missing=missing)
    if kind == "any":
        children = [evaluate_clause(c, env, labels, values) for c in clause.children]
        cf = max(c.cf for c in children)
        ok = cf >= CF_THRESHOLD
        missing = [] if ok else [m for c in children for m in c.missing]
        return Outcome(clause, ok, cf, children=children, missing=missing)
    if kind == "not":
        inner = evaluate_clause(clause.children[0], env, labels, dict(values))
        if inner.missing and not inner.ok:
            return Outcome(clause, False, 0.0, children=[inner], missing=inner.missing)
        ok = not inner.ok
        return Outcome(clause, ok, 1.0 if ok else 0.0, children=[inner])
    if kind in ("context", "expr"):
        return _eval_expression(clause, values)
    if kind == "signal":
        return _eval_signal(clause, env, labels, values)
    if kind in ("fact", "absent"):
        return _eval_fact(clause, env, labels, values)
    if kind == "record":
        return _eval_record(clause, env, labels, values)
    raise AssertionError(kind)


def _bind(clause: Clause, values: dict, attrs: dict) -> None:
    name = clause.as_ or clause.kind
    values[name] = attrs


def _eval_expression(clause: Clause, values: dict) -> Outcome:
    expression = clause.expression
    # A context value the trace lacks makes the clause unknown (missing input). A bound name that is
    # null is not missing input: its clause did not hold, and `a ?? b` may handle it.
    missing = sorted(s for s in expression.symbols if s in CONTEXT_TYPES and values.get(s) is None)
    if missing:
        return Outcome(clause, False, 0.0, missing=[f"context.{m}" for m in missing])
    try:
        result = bool(evaluate(expression, values))
    except EvaluationFailed as e:
        unbound = any(values.get(s) is None for s in expression.symbols)
        return Outcome(clause, False, 0.0, missing=[] if unbound else [str(e)])
    observed = {s: values[s] for s in sorted(expression.symbols) if not isinstance(values[s], dict)}
    text_obs = ", ".join(f"{k}={v}" for k, v in observed.items()) or None
    return Outcome(clause, result, 1.0 if result else 0.0, observed=text_obs)


def _fact_matches(fact, labels: dict) -> bool:
    return all(fact.labels.get(k, v) == v for k, v in labels.items())


def _eval_fact(clause: Clause, env, labels: dict, values: dict) -> Outcome:
    candidates = [f for f in env.facts_by_id.get(clause.fact_id, ()) if f.cf >= CF_THRESHOLD
                  and _fact_matches(f, labels)]
    if clause.before or clause.after:
        def in_order(fact):
            ref = values.get(clause.before or clause.after)
            if not ref or ref.get("first_step") is None or fact.first_step is None:
                return False
            if clause.before:
                return fact.first_step < ref["first_step"]
            return fact.first_step > ref["first_step"]
        candidates = [f for f in candidates if in_order(f)]
    if clause.where is not None and candidates:
        kept = []
        for fact in candidates:
            trial = dict(values)
            trial[clause.as_ or "fact"] = fact.attrs
            try:
                if evaluate(clause.where, trial):
                    kept.append(fact)
            except EvaluationFailed:
                pass
        candidates = kept
    if clause.kind == "absent":
        ok = not candidates
        return Outcome(clause, ok, 1.0 if ok else 0.0,
                       fact_key=candidates[0].key if candidates else None)
    if not candidates:
        return Outcome(clause, False, 0.0)
    best = min(candidates, key=lambda f: (-f.cf, f.first_step if f.first_step is not None else 1 << 62, f.key))
    attrs = dict(best.attrs)
    if len(candidates) > 1:
        layers = [f.labels.get("layer") for f in candidates if f.labels.get("layer")]
        order = {name: i for i, name in enumerate(env.layer_names)}
        attrs["layers"] = sorted(set(layers), key=lambda n: order.get(n, 1 << 30))
        attrs["count"] = float(len(candidates))
        attrs["n_layers"] = float(len(attrs["layers"]))
    _bind(clause, values, attrs)
    steps = [best.first_step, best.last_step] if best.first_step is not None else None
    return Outcome(clause, True, best.cf, attrs=attrs, observed=best.cf, steps=steps,
                   layer=best.labels.get("layer") or attrs.get("layer"), fact_key=best.key)


def _eval_record(clause: Clause, env, labels: dict, values: dict) -> Outcome:
    preset = values.get("__record__")
    if preset is not None and preset[0] is clause:
        matches = [preset[1]]
    else:
        matches = matching_records(clause, env, values)
        if matches is None:
            return Outcome(clause, False, 0.0, missing=[f"{clause.record_kind} records"])
    if not matches:
        return Outcome(clause, False, 0.0)
    if clause.ramp_of:
        matches = sorted(matches, key=lambda a: -(a.get(clause.ramp_of) or 0.0))
    attrs = dict(matches[0])
    attrs["count"] = float(len(matches))
    cf = 1.0
    observed = None
    if clause.ramp is not None:
        observed = attrs.get(clause.ramp_of)
        cf = _ramp_cf(observed, clause.ramp)
    _bind(clause, values, attrs)
    step = attrs.get("step")
    return Outcome(clause, cf >= CF_THRESHOLD, cf, attrs=attrs, observed=observed,
                   threshold=list(clause.ramp) if clause.ramp else None,
                   steps=[int(step), int(step)] if step is not None else None,
                   layer=attrs.get("target") or attrs.get("layer"))


def matching_records(clause: Clause, env, values: dict) -> list[dict] | None:
    """Attributes of every record of the clause's kind that satisfies its ``where`` (None: no records)."""
    records = records_of(env.trace, clause.record_kind)
    if not records:
        return None
    train = None
    if clause.record_kind == "data":
        train = next((r for r in records if getattr(r, "split", None) == "train"), None)
    out = []
    for record in records:
        attrs = record_attrs(clause.record_kind, record, train)
        if clause.expression is None:
            out.append(attrs)
            continue
        scope = {**values, **attrs}
        try:
            if evaluate(clause.expression, scope):
                out.append(attrs)
        except EvaluationFailed:
            continue
    return out


def _ramp_cf(x, ramp) -> float:
    if x is None or not np.isfinite(x):
        return 1.0 if x is not None and np.isinf(x) and (x > 0) == (ramp[1] > ramp[0]) else 0.0
    lo, hi = ramp
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


# --------------------------------------------------------------------------- signals


@dataclass
class SignalResult:
    """A signal clause evaluated over every layer (or the one scalar column) at once."""

    steps: np.ndarray
    fired: np.ndarray  # (columns,) bool
    start: np.ndarray  # (columns,) first index of the qualifying run
    measured: np.ndarray  # (columns,) bool: the column has data
    y: np.ndarray  # (points, columns)
    raw: np.ndarray
    hold: np.ndarray
    fired_at: np.ndarray
    _stats: dict | None = None

    def stats(self) -> dict:
        """Per-column attributes, computed for all columns at once (a few passes, not one per layer)."""
        if self._stats is None:
            self._stats = _column_stats(self)
        return self._stats


def _column_stats(r: SignalResult) -> dict:
    """Attributes of the fired columns, from the rows where something holds (few in most runs)."""
    n, cols = r.y.shape
    nan = np.full(cols, np.nan)
    out = {k: nan.copy() for k in ("value", "raw", "peak", "low", "count", "frac", "last")}
    out["last_true"] = np.full(cols, -1)
    fired = np.flatnonzero(r.fired)
    if not n or not fired.size:
        return out
    start = np.clip(r.start[fired], 0, n - 1)
    rows = np.flatnonzero(r.hold.any(axis=1))
    # Gathering rows costs a copy; worth it only when few rows hold (the usual case).
    hold, y = (r.hold[rows], r.y[rows]) if rows.size < n // 2 else (r.hold, r.y)
    if rows.size >= n // 2:
        rows = np.arange(n)
    if fired.size < cols:
        hold, y = hold[:, fired], y[:, fired]
    with np.errstate(invalid="ignore"):
        peak = np.where(hold, y, -np.inf).max(axis=0)
        low = np.where(hold, y, np.inf).min(axis=0)
    value = r.y[start, fired]
    count = hold.sum(axis=0)
    out["value"][fired] = value
    out["raw"][fired] = r.raw[start, fired]
    out["peak"][fired] = np.where(np.isneginf(peak), value, peak)
    out["low"][fired] = np.where(np.isposinf(low), value, low)
    out["count"][fired] = count
    out["frac"][fired] = count / n
    out["last"][fired] = r.y[-1, fired]
    out["last_true"][fired] = rows[np.where(hold, np.arange(len(rows))[:, None], -1).max(axis=0)]
    return out


def _base(env, name: str):
    trace = env.trace
    if not trace.has(name):
        return None
    if name in trace.layer_columns:
        mask = trace.layer_present[name]
        if mask.all():  # the common case: no copy of a (steps, layers) matrix
            return trace.steps, trace.layer_columns[name]
        matrix = trace.layer_matrix(name)
        return matrix.steps, matrix.values
    series = trace.series(name)
    return series.steps, series.values


def _transform(clause: Clause, env):
    key = ("y", clause.series, clause.smooth, clause.fn, tuple(sorted(clause.args.items())), clause.other, clause.other_smooth)
    if key in env.cache:
        return env.cache[key]
    base = _base(env, clause.series)
    if base is None:
        env.cache[key] = None
        return None
    steps, raw = base
    spec = signals.SIGNALS[clause.fn]
    source = signals.avg(raw, clause.smooth) if clause.smooth > 1 else raw
    if spec.pair:
        other = _base(env, clause.other)
        if other is None:
            env.cache[key] = None
            return None
        o_steps, o_values = other
        if clause.other_smooth > 1:
            o_values = signals.avg(o_values, clause.other_smooth)
        y = spec.fn(source, signals.align(steps, o_steps, o_values))
    else:
        y = spec.fn(source, **clause.args)
    out = (steps, np.asarray(raw, dtype=np.float64), np.asarray(y, dtype=np.float64))
    env.cache[key] = out
    return out


def _within_slice(steps: np.ndarray, within) -> slice:
    if not len(steps):
        return slice(0, 0)
    first, last = float(steps[0]), float(steps[-1])

    def to_step(bound):
        kind, v = bound
        return first + v * (last - first) if kind == "pct" else v

    lo = 0 if within[0] is None else int(np.searchsorted(steps, to_step(within[0]), side="left"))
    hi = len(steps) if within[1] is None else int(np.searchsorted(steps, to_step(within[1]), side="right"))
    return slice(lo, hi)


def _measured(env, clause: Clause, raw: np.ndarray) -> np.ndarray:
    if not len(raw):
        return np.zeros(raw.shape[1], dtype=bool)
    key = ("measured", clause.series, clause.within)
    if key not in env.cache:
        # Most columns have a number in their first row; only the others need a full scan.
        measured = ~np.isnan(raw[0])
        rest = np.flatnonzero(~measured)
        if rest.size:
            measured[rest] = ~np.isnan(raw[:, rest]).all(axis=0)
        env.cache[key] = measured
    return env.cache[key]


def signal_result(clause: Clause, env) -> SignalResult | None:
    """The clause's predicate over all columns, cached per clause for per-layer bindings."""
    key = ("r", id(clause))
    if key in env.cache:
        return env.cache[key]
    transformed = _transform(clause, env)
    if transformed is None:
        env.cache[key] = None
        return None
    steps, raw, y = transformed
    window = _within_slice(steps, clause.within)
    steps, raw, y = steps[window], raw[window], y[window]
    if y.ndim == 1:
        y, raw = y[:, None], raw[:, None]
    with np.errstate(invalid="ignore"):
        hold = OPS[clause.op](y, clause.value)
    # NaN (a NaN value, or missing history at the start of a window) never satisfies a
    # comparison; +-Inf compares as the number it is. With non_finite_is_true, an infinite
    # *recorded* value holds even where the derived value is NaN (inf/inf); a recorded NaN does
    # not (NaN is not a magnitude: a NaN gradient norm is not a spike).
    if clause.op == "!=":  # the only comparison NaN satisfies
        hold = hold & ~np.isnan(y)
    if clause.non_finite_is_true:
        hold = hold | np.isinf(raw)
    if clause.is_layer_signal:
        # A per-layer column that is NaN at every point was not measured (null in the trace).
        measured = _measured(env, clause, raw)
    else:
        measured = np.full(y.shape[1], len(raw) > 0)
    n = len(steps)
    need = clause.for_
    if n == 0:
        start = np.full(y.shape[1], -1)
        fired = np.zeros(y.shape[1], dtype=bool)
    elif clause.at == "all":
        fired = hold.all(axis=0)
        start = np.where(fired, 0, -1)
    elif clause.at == "last":
        # Only the last `need` points decide; the start of the trailing run is searched only
        # for the columns that fired.
        fired = hold[-need:].all(axis=0) if n >= need else np.zeros(hold.shape[1], dtype=bool)
        start = np.full(hold.shape[1], -1)
        for j in np.flatnonzero(fired):
            falses = np.flatnonzero(~hold[:, j])
            start[j] = falses[-1] + 1 if falses.size else 0
    else:
        start = signals.first_run(hold, need)
        fired = start >= 0
    if clause.min_frac > 0 and n:
        fired = fired & (np.count_nonzero(hold, axis=0) >= clause.min_frac * n)
        start = np.where(fired, start, -1)
    fired &= measured
    fired_at = np.where(fired, np.minimum(start + (need - 1 if clause.at == "any" else 0), max(n - 1, 0)), -1)
    result = SignalResult(steps, fired, start, measured, y, raw, hold, fired_at)
    env.cache[key] = result
    return result


def _column_attrs(clause: Clause, r: SignalResult, j: int, layer: str | None) -> dict:
    st = r.stats()
    s = int(r.start[j])
    last_true = int(st["last_true"][j])
    return {
        "first_step": float(r.steps[s]), "fired_at": float(r.steps[int(r.fired_at[j])]),
        "last_step": float(r.steps[last_true if last_true >= 0 else s]),
        "value": float(st["value"][j]), "peak": float(st["peak"][j]), "low": float(st["low"][j]),
        "last": float(st["last"][j]), "raw": float(st["raw"][j]), "count": float(st["count"][j]),
        "frac": float(st["frac"][j]), "n": float(len(r.steps)), "series": clause.series, "layer": layer,
    }


def _eval_signal(clause: Clause, env, labels: dict, values: dict) -> Outcome:
    r = signal_result(clause, env)
    if r is None:
        missing = [clause.series] + ([clause.other] if clause.other and _base(env, clause.other) is None else [])
        if clause.other and _base(env, clause.series) is not None:
            missing = [clause.other]
        return Outcome(clause, False, 0.0, missing=missing)
    is_layer = clause.is_layer_signal
    names = env.layer_names
    if is_layer and "layer" in labels:
        j = env.layer_index[labels["layer"]]
        if j >= r.fired.shape[0] or not r.measured[j]:
            return Outcome(clause, False, 0.0, missing=[f"{clause.series}{{layer={labels['layer']}}}"])
        columns = [j] if r.fired[j] else []
        chosen = j
    else:
        eligible = r.measured.copy()
        if is_layer and clause.exclude_output:
            eligible &= ~env.output_mask[: len(eligible)]
        columns = [j for j in np.flatnonzero(r.fired & eligible)]
        if is_layer and clause.layers_min_frac > 0:
            if eligible.sum() == 0 or len(columns) / eligible.sum() < clause.layers_min_frac:
                columns_ok = False
            else:
                columns_ok = True
        else:
            columns_ok = bool(columns)
        if not columns_ok:
            observed = None
            if columns:
                observed = f"{len(columns)}/{int(eligible.sum())} layers"
            return Outcome(clause, False, 0.0, observed=observed, threshold=clause.value)
        chosen = min(columns, key=lambda j: (int(r.start[j]) if r.start[j] >= 0 else 1 << 62, j))
    if not columns:
        # The last value is what a reader compares with the threshold in a why-not report.
        last = float(r.y[-1, chosen]) if len(r.steps) else float("nan")
        return Outcome(clause, False, 0.0, observed=last if np.isfinite(last) else None, threshold=clause.value)
    layer = names[chosen] if is_layer and chosen < len(names) else None
    attrs = _column_attrs(clause, r, chosen, layer)
    if is_layer:
        fired_layers = [names[j] for j in columns if j < len(names)]
        attrs["layers"] = fired_layers
        attrs["n_layers"] = float(len(fired_layers))
        eligible_count = max(int(r.measured.sum()), 1)
        attrs["frac_layers"] = len(fired_layers) / eligible_count
    cf = 1.0
    if clause.ramp is not None:
        x = attrs["peak"] if clause.op in (">", ">=") else attrs["low"]
        cf = _ramp_cf(x, clause.ramp)
    attrs["cf"] = cf
    _bind(clause, values, attrs)
    observed = attrs["last"] if clause.at == "last" else attrs["value"]
    return Outcome(clause, cf >= CF_THRESHOLD, cf, attrs=attrs, observed=observed, threshold=clause.value,
                   steps=[int(attrs["first_step"]), int(attrs["last_step"])], layer=layer)


def count_clauses(clause: Clause) -> int:
    """Number of leaf clauses (specificity, for ranking ties)."""
    return sum(1 for c in clause.walk() if c.kind not in ("all", "any", "not"))


__all__ = [
    "CF_THRESHOLD", "Clause", "ClauseError", "Outcome", "bound_names_of", "compile_clause", "count_clauses",
    "evaluate_clause", "known_series", "matching_records", "signal_result",
]
