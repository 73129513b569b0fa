"""Evaluating a compiled clause for one binding: boolean structure, expressions, facts, records."""

from __future__ import annotations

from diag.engine.conditions.clause import CF_THRESHOLD, Clause, Outcome, bind, ramp_cf
from diag.engine.conditions.signal_clause import evaluate_signal
from diag.engine.expressions import EvaluationFailed, evaluate
from diag.engine.facts import CONTEXT_TYPES, record_attrs, records_of


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
        return evaluate_signal(clause, env, labels, values)
    if kind in ("fact", "absent"):
        return _eval_fact(clause, env, labels, values)
    if kind == "record":
        return _eval_record(clause, env, labels, values)
    raise AssertionError(kind)


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
    bind(clause, values, attrs)
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
        cf = ramp_cf(observed, clause.ramp)
    bind(clause, values, attrs)
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
