"""From the facts of a run to a ranked ``Diagnosis``: scoring, suppression, ranking, why-chains.

Ranking (KNOWLEDGE_BASE.md section 6):

1. certainty (EMYCIN, see ``certainty.py``), highest first;
2. coverage: the share of observed symptoms the cause explains (parsimonious covering);
3. specificity: clauses of its strongest rule;
4. severity; 5. earliest first step; 6. id, so the order is deterministic.

Suppression (Alertmanager's inhibit rules): a cause A with certainty >= 0.5 that lists B in
``suppresses`` (on the cause or on a rule that concluded it) moves B to ``suppressed`` ("also
consistent, explained by A") when they explain a common symptom (or either explains none). The
explaining cause thus ranks above the one it explains; B is not hidden.
"""

from __future__ import annotations

from diag.engine.certainty import bucket, probability
from diag.engine.conditions import CF_THRESHOLD, Outcome
from diag.engine.diagnosis import (
    SEVERITY_ORDER,
    CauseResult,
    ClauseResult,
    Diagnosis,
    FixItem,
    Justification,
    NearMiss,
    RuleError,
    SkippedRule,
    SymptomResult,
    built,
)
from diag.engine.engine import Fact, Run

SUPPRESS_AT = 0.5
MAX_DEPTH = 6


def _clean(value):
    if isinstance(value, float) and value != value:
        return "nan"
    return value


def clause_result(outcome: Outcome, run: Run, depth: int = 0) -> ClauseResult:
    because = []
    if outcome.fact_key and outcome.clause.kind == "fact" and depth < MAX_DEPTH:
        fact = _fact_by_key(run, outcome.fact_key)
        if fact is not None:
            because = [justification(c, fact, run, depth + 1) for c in fact.contributions]
    observed = outcome.observed
    if isinstance(observed, dict):
        observed = str(observed)
    return built(
        ClauseResult,
        kind=outcome.clause.kind, text=outcome.clause.text, result=outcome.ok, cf=round(outcome.cf, 4),
        observed=observed, threshold=outcome.threshold, steps=outcome.steps, layer=outcome.layer,
        missing=list(outcome.missing), fact=outcome.fact_key, because=because,
        children=[clause_result(c, run, depth) for c in outcome.children],
    )


def _fact_by_key(run: Run, key: str) -> Fact | None:
    return run.by_key.get(key)


def justification(c, fact: Fact, run: Run, depth: int = 0) -> Justification:
    return built(
        Justification,
        rule_id=c.rule.id, fact=fact.key, rule_cf=c.rule.spec.cf, premise_cf=round(c.premise, 4),
        contribution=round(c.value, 4), group=c.rule.group, evidence=c.evidence,
        labels={k: str(v) for k, v in c.labels.items()}, first_step=c.first_step,
        clauses=[clause_result(c.outcome, run, depth)],
    )


def _ordered_layers(names, run: Run) -> list[str]:
    order = run.layer_index
    return sorted(set(n for n in names if n), key=lambda n: (order.get(n, 1 << 30), n))


def _suppressors(fact: Fact, run: Run) -> set[str]:
    cause = run.kb.causes.get(fact.id)
    listed = set(cause.spec.suppresses) if cause else set()
    for c in fact.contributions:
        if c.value > 0:
            listed |= set(c.rule.spec.suppresses)
    return listed


def _explains(fact: Fact) -> set[str]:
    out: set[str] = set()
    for c in fact.contributions:
        if c.value > 0:
            out |= c.explains
    return out


def build_diagnosis(run: Run, trace_info) -> Diagnosis:
    """Score and rank the facts of ``run`` into a ``Diagnosis``."""
    kb = run.kb
    symptoms = [f for f in run.facts.values() if f.kind == "symptom" and f.cf >= CF_THRESHOLD]
    observed = {f.id for f in symptoms}
    causes = [f for f in run.facts.values() if f.kind == "cause"]

    def rank_key(f: Fact):
        explains = _explains(f) & observed
        coverage = len(explains) / len(observed) if observed else 0.0
        specificity = max((c.rule.specificity for c in f.contributions), default=0)
        severity = SEVERITY_ORDER.index(kb.causes[f.id].spec.severity) if f.id in kb.causes else 0
        first = f.first_step if f.first_step is not None else 1 << 62
        return (-round(f.cf, 9), -coverage, -specificity, -severity, first, f.id)

    positive = sorted((f for f in causes if f.cf >= CF_THRESHOLD), key=rank_key)
    ruled_out = sorted((f for f in causes if f.cf < 0), key=lambda f: (f.cf, f.id))

    suppressed_by = _suppression(positive, run)
    ranked = [f for f in positive if f.id not in suppressed_by]
    hidden = [f for f in positive if f.id in suppressed_by]

    results = [_cause_result(f, i + 1, run, None) for i, f in enumerate(ranked)]
    results_hidden = [_cause_result(f, len(ranked) + i + 1, run, suppressed_by[f.id]) for i, f in enumerate(hidden)]
    results_out = [_cause_result(f, len(ranked) + len(hidden) + i + 1, run, None) for i, f in enumerate(ruled_out)]

    symptom_results = [
        built(
        SymptomResult,
            id=f.id, key=f.key, title=kb.symptom_title(f.id), labels={k: str(v) for k, v in f.labels.items()},
            certainty=round(f.cf, 4), first_step=f.first_step, last_step=f.last_step,
            evidence=[c.evidence for c in f.contributions if c.value > 0],
            series=sorted({s for c in f.contributions for s in c.series}),
        )
        for f in sorted(symptoms, key=lambda f: (f.first_step if f.first_step is not None else 1 << 62, f.key))
    ]

    cause_rules: dict[str, list[str]] = {}
    for rule in kb.rules.values():
        if rule.spec.type == "cause":
            cause_rules.setdefault(rule.emits, []).append(rule.id)
    checks_run = sorted(c for c, rules in cause_rules.items() if any(r in run.evaluated for r in rules))
    checks_skipped = sorted(c for c, rules in cause_rules.items() if c not in checks_run)

    concluded = {f.id for f in positive}
    near = []
    for cause_id, attempt in sorted(run.attempts.items()):
        if cause_id in concluded:
            continue
        near.append(built(
        NearMiss,
            cause=cause_id, rule_id=attempt.rule.id, satisfied=attempt.satisfied, total=attempt.total,
            clauses=[clause_result(c, run, MAX_DEPTH) for c in
                     (attempt.outcome.children if attempt.outcome.clause.kind == "all" else [attempt.outcome])],
        ))

    return built(
        Diagnosis,
        trace=trace_info,
        causes=results,
        suppressed=results_hidden,
        ruled_out=results_out,
        symptoms=symptom_results,
        rules_fired=sorted(run.fired),
        rules_skipped=[built(SkippedRule, id=r, missing=m) for r, m in sorted(run.skipped.items())],
        rule_errors=[built(RuleError, id=r, message=m) for r, m in sorted(run.errors.items())],
        checks_run=checks_run,
        checks_skipped=checks_skipped,
        near_misses=near,
        knowledge_base=list(kb.sources),
    )


def _suppression(ranked: list[Fact], run: Run) -> dict[str, str]:
    """cause id -> id of the cause that suppresses it (decided in rank order; cycles break by rank)."""
    edges: dict[str, list[Fact]] = {}
    for a in ranked:
        if a.cf < SUPPRESS_AT:
            continue
        for b_id in _suppressors(a, run):
            edges.setdefault(b_id, []).append(a)
    status: dict[str, str] = {}
    by: dict[str, str] = {}
    undecided = [f for f in ranked]
    while undecided:
        progressed = False
        for f in list(undecided):
            suppressors = [a for a in edges.get(f.id, []) if a.id != f.id and _share_symptom(a, f)]
            accepted = [a for a in suppressors if status.get(a.id) == "accepted"]
            if accepted:
                status[f.id] = "suppressed"
                by[f.id] = accepted[0].id
            elif all(status.get(a.id) == "suppressed" for a in suppressors):
                status[f.id] = "accepted"
            else:
                continue
            undecided.remove(f)
            progressed = True
        if not progressed:
            status[undecided[0].id] = "accepted"
            undecided.pop(0)
    return by


def _share_symptom(a: Fact, b: Fact) -> bool:
    ea, eb = _explains(a), _explains(b)
    return not ea or not eb or bool(ea & eb)


def _cause_result(f: Fact, rank: int, run: Run, suppressed_by: str | None) -> CauseResult:
    kb = run.kb
    cause = kb.causes[f.id]
    spec = cause.spec
    positives = [c for c in f.contributions if c.value > 0] or f.contributions
    positives = sorted(positives, key=lambda c: (-c.value, c.rule.id))
    evidence: list[str] = []
    for c in positives:
        if c.evidence not in evidence:
            evidence.append(c.evidence)
    steps = [s for c in positives for s in (c.first_step, c.last_step) if s is not None]
    return built(
        CauseResult,
        id=f.id, rank=rank, certainty=round(f.cf, 4), bucket=bucket(f.cf),
        probability=round(probability(f.cf, spec.prior), 4) if spec.prior and f.cf > 0 else None,
        title=spec.title, severity=spec.severity, category=spec.category,
        first_step=min(steps) if steps else None, evidence=evidence,
        layers=_ordered_layers([n for c in positives for n in c.layers], run),
        series=sorted({s for c in positives for s in c.series}),
        steps=[min(steps), max(steps)] if steps else None,
        fix=[built(FixItem, **fx.model_dump()) for fx in spec.fix],
        explains=sorted(_explains(f)), suppressed_by=suppressed_by, docs=f"diag rules show {f.id}",
        justification=[justification(c, f, run) for c in sorted(f.contributions, key=lambda c: (-c.value, c.rule.id))],
    )
