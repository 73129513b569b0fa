"""Forward chaining over the knowledge base: rules in dependency order, each once per binding.

The algorithm (stratified, monotone, as in Datalog):

1. Rules run in the order ``kb.order`` (every rule after the rules whose facts it reads; the
   loader rejects cycles), so one pass reaches the fixpoint and evaluation always ends.
2. A rule runs once per binding: once, or once per layer (``for_each: layer``), or once per
   matching record (``for_each: record``). Refraction is structural: nothing fires twice.
3. A firing emits a fact keyed by ``(id, labels)`` (causes by id alone); a second firing with the
   same key adds a contribution, never a second fact. Facts are never retracted.
4. Scoring, suppression and ranking happen after the fixpoint (``scoring.py``).

A rule that raises is reported with its id on ``Diagnosis.rule_errors``; the others still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diag.engine.certainty import combine_groups
from diag.engine.conditions import (
    CF_THRESHOLD,
    Outcome,
    evaluate_clause,
    matching_records,
)
from diag.engine.expressions import EvaluationFailed
from diag.engine.facts import records_of, run_context
from diag.engine.kb import KnowledgeBase, Rule


@dataclass
class Contribution:
    rule: Rule
    premise: float
    value: float
    evidence: str
    labels: dict
    outcome: Outcome
    attrs: dict
    first_step: int | None
    last_step: int | None
    series: list[str]
    layers: list[str]
    explains: set[str]


@dataclass
class Fact:
    """A symptom or cause concluded by one or more rules."""

    id: str
    kind: str
    labels: dict
    contributions: list[Contribution] = field(default_factory=list)
    _cf: float | None = None

    @property
    def key(self) -> str:
        if not self.labels:
            return self.id
        return self.id + "{" + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())) + "}"

    @property
    def cf(self) -> float:
        if self._cf is None:
            self._cf = combine_groups([(c.rule.group, c.value) for c in self.contributions])
        return self._cf

    def best(self) -> Contribution:
        return min(self.contributions, key=lambda c: (-c.value, c.first_step if c.first_step is not None
                                                      else 1 << 62, c.rule.id))

    @property
    def attrs(self) -> dict:
        attrs = dict(self.best().attrs)
        attrs["cf"] = self.cf
        return attrs

    @property
    def first_step(self) -> int | None:
        steps = [c.first_step for c in self.contributions if c.first_step is not None and c.value > 0]
        return min(steps) if steps else None

    @property
    def last_step(self) -> int | None:
        steps = [c.last_step for c in self.contributions if c.last_step is not None and c.value > 0]
        return max(steps) if steps else None


@dataclass
class Attempt:
    """A cause rule's best binding that did not fire (for why-not)."""

    rule: Rule
    outcome: Outcome
    satisfied: int
    total: int


@dataclass
class Run:
    """The working memory of one evaluation."""

    trace: object
    kb: KnowledgeBase
    context: dict
    layer_names: tuple
    layer_index: dict
    output_mask: np.ndarray
    cache: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    facts_by_id: dict = field(default_factory=dict)
    by_key: dict = field(default_factory=dict)
    fired: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    evaluated: set = field(default_factory=set)
    attempts: dict = field(default_factory=dict)


def _primary_attrs(outcome: Outcome) -> dict:
    """Attributes of the first clause (in tree order) that bound something: what a symptom measured."""
    if outcome.attrs is not None and outcome.clause.kind in ("signal", "record", "fact"):
        return dict(outcome.attrs)
    for child in outcome.children:
        if child.ok:
            found = _primary_attrs(child)
            if found:
                return found
    return {}


def _leaves(outcome: Outcome):
    if outcome.clause.kind in ("all", "any", "not"):
        for child in outcome.children:
            yield from _leaves(child)
    else:
        yield outcome


def _bindings(rule: Rule, run: Run, base_values: dict) -> list[tuple[dict, dict]]:
    """(labels, values) for each binding of the rule."""
    if rule.spec.for_each == "layer":
        out = []
        header = run.trace.header
        infos = header.layers if header is not None and header.layers else []
        for i, name in enumerate(run.layer_names):
            values = dict(base_values)
            values["layer"] = name
            values["layer_index"] = float(i)
            values["layer_is_output"] = i == len(run.layer_names) - 1 if not infos else False
            if i < len(infos):
                values["layer_type"] = infos[i].type
                values["layer_activation"] = infos[i].activation
                values["layer_is_output"] = infos[i].is_output
            out.append(({"layer": name}, values))
        return out
    if rule.spec.for_each == "record":
        clause = next(c for c in rule.when.walk() if c.kind == "record")
        matches = matching_records(clause, run, base_values) or []
        out = []
        for attrs in matches:
            label = attrs.get("target") or attrs.get("split") or attrs.get("layer") or attrs.get("event") or "record"
            values = dict(base_values)
            values["__record__"] = (clause, attrs)
            if attrs.get("split"):
                values["split"] = attrs["split"]
            out.append(({"record": str(label)}, values))
        return out
    return [({}, dict(base_values))]


def _missing_requirements(rule: Rule, run: Run) -> list[str]:
    req = rule.spec.requires
    missing = [s for s in req.series if not run.trace.has(s)]
    missing += [f"context.{c}" for c in req.context if run.context.get(c) is None]
    missing += [f"{k} records" for k in req.records if not records_of(run.trace, k)]
    return missing


def _run_rule(rule: Rule, run: Run) -> None:
    missing = _missing_requirements(rule, run)
    if rule.spec.for_each == "record":
        clause = next(c for c in rule.when.walk() if c.kind == "record")
        if not records_of(run.trace, clause.record_kind):
            missing.append(f"{clause.record_kind} records")
    if missing:
        run.skipped[rule.id] = missing
        return
    fired = False
    clean = False  # some binding was evaluated with all its inputs
    missed: list[str] = []
    base = dict(run.context)
    for name in rule.bound_names:
        base.setdefault(name, None)
    for labels, values in _bindings(rule, run, base):
        outcome = evaluate_clause(rule.when, run, labels, values)
        if not outcome.ok:
            missed += outcome.missing
            clean = clean or not outcome.missing
            if rule.spec.type == "cause":
                satisfied, total = outcome.satisfied()
                best = run.attempts.get(rule.emits)
                if satisfied and (best is None or satisfied / total > best.satisfied / best.total):
                    run.attempts[rule.emits] = Attempt(rule, outcome, satisfied, total)
            continue
        fired = True
        _emit(rule, run, labels, values, outcome)
    if fired:
        run.fired.append(rule.id)
        run.evaluated.add(rule.id)
    elif missed and not clean:
        # Skipped only when no binding could be evaluated (one unmeasured layer does not count).
        run.skipped[rule.id] = sorted(set(missed))
    else:
        run.evaluated.add(rule.id)


def _emit(rule: Rule, run: Run, labels: dict, values: dict, outcome: Outcome) -> None:
    leaves = list(_leaves(outcome))
    attrs = _primary_attrs(outcome)
    render_values = {k: v for k, v in values.items() if not k.startswith("__")}
    evidence = rule.evidence.render(render_values)
    steps = [s for leaf in leaves if leaf.ok and leaf.steps for s in leaf.steps]
    layers = [leaf.layer for leaf in leaves if leaf.ok and leaf.layer]
    for leaf in leaves:
        if leaf.ok and leaf.attrs and leaf.attrs.get("layers"):
            layers += leaf.attrs["layers"]
    if labels.get("layer"):
        layers.insert(0, labels["layer"])
    series = [leaf.clause.series for leaf in leaves if leaf.ok and leaf.clause.kind == "signal"]
    for leaf in leaves:
        used = run.by_key.get(leaf.fact_key) if leaf.ok and leaf.clause.kind == "fact" else None
        if used is not None:
            series += [s for c in used.contributions for s in c.series]
    explains = set(rule.spec.explains) | {leaf.clause.fact_id for leaf in leaves
                                          if leaf.ok and leaf.clause.kind == "fact"}
    contribution = Contribution(
        rule=rule, premise=outcome.cf, value=rule.spec.cf * outcome.cf, evidence=evidence, labels=dict(labels),
        outcome=outcome, attrs={**attrs, **({"layer": labels["layer"]} if labels.get("layer") else {})},
        first_step=min(steps) if steps else None, last_step=max(steps) if steps else None,
        series=series, layers=layers, explains=explains,
    )
    kind = rule.spec.type
    fact_labels = {} if kind == "cause" else {k: v for k, v in labels.items() if k == "layer"}
    key = (rule.emits, tuple(sorted(fact_labels.items())))
    fact = run.facts.get(key)
    if fact is None:
        fact = Fact(id=rule.emits, kind=kind, labels=fact_labels)
        run.facts[key] = fact
        run.by_key[fact.key] = fact
        run.facts_by_id.setdefault(rule.emits, []).append(fact)
    fact.contributions.append(contribution)
    fact._cf = None


def forward_chain(trace, kb: KnowledgeBase) -> Run:
    """Evaluate every rule of ``kb`` on ``trace``; returns the working memory with all facts."""
    names = tuple(trace.layer_names)
    header = trace.header
    output = np.zeros(len(names), dtype=bool)
    if header is not None and header.layers:
        for i, info in enumerate(header.layers[: len(names)]):
            output[i] = info.is_output
    run = Run(trace=trace, kb=kb, context=run_context(trace), layer_names=names,
              layer_index={n: i for i, n in enumerate(names)}, output_mask=output)
    for rule_id in kb.order:
        rule = kb.rules[rule_id]
        try:
            _run_rule(rule, run)
        except (EvaluationFailed, ArithmeticError, ValueError, TypeError, KeyError, IndexError) as e:
            run.errors[rule_id] = f"{type(e).__name__}: {e}"
    _mark_unreachable(run)
    return run


def _mark_unreachable(run: Run) -> None:
    """A rule that only reads facts no rule could measure was not really checked: list it as skipped.

    Without this, a trace that lacks a series would report the cause rules reading its symptom
    as "checked", and "nothing found" would sound more believable than it is.
    """
    producers: dict[str, list[str]] = {}
    for rule in run.kb.rules.values():
        producers.setdefault(rule.emits, []).append(rule.id)
    reachable: dict[str, bool] = {}
    for rule_id in run.kb.order:
        rule = run.kb.rules[rule_id]
        if rule_id not in run.evaluated:
            reachable[rule_id] = False
            continue
        reads = [f for f in rule.reads if f in producers]
        if not reads or rule_id in run.fired:
            reachable[rule_id] = True
            continue
        sources = [p for f in reads for p in producers[f]]
        reachable[rule_id] = any(reachable.get(p, False) for p in sources)
        if not reachable[rule_id]:
            run.evaluated.discard(rule_id)
            run.skipped[rule_id] = sorted({m for p in sources for m in run.skipped.get(p, [])}) or ["its symptoms"]


__all__ = ["CF_THRESHOLD", "Fact", "Run", "forward_chain"]
