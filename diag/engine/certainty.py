"""Certainty factors (EMYCIN): how several rules' contributions to one conclusion combine.

* A rule contributes ``rule.cf x premise_cf`` when its premise reaches 0.2 (MYCIN's threshold).
* Contributions in one ``evidence_group`` are correlated evidence: the strongest counts, once.
* Groups combine with EMYCIN's rule: two confirming factors ``a + b - ab``, two disconfirming
  ``a + b + ab``, mixed ``(a + b) / (1 - min(|a|, |b|))``. Confirming and disconfirming factors
  are each folded first, then the two results are combined, so the result does not depend on the
  order rules ran in.

Example:
  >>> round(combine_all([0.8, 0.4]), 2)
  0.88
  >>> round(combine_all([0.5, -0.6]), 2)
  -0.2
"""

from __future__ import annotations

from functools import reduce

LIKELY = 0.6
POSSIBLE = 0.3
WEAK = 0.2


def combine(a: float, b: float) -> float:
    """EMYCIN combination of two certainty factors."""
    if a >= 0 and b >= 0:
        return a + b - a * b
    if a < 0 and b < 0:
        return a + b + a * b
    denominator = 1 - min(abs(a), abs(b))
    return (a + b) / denominator if denominator > 0 else 0.0


def combine_all(factors) -> float:
    """Combine many factors order-independently (confirming and disconfirming folded apart)."""
    positive = reduce(combine, sorted(f for f in factors if f > 0), 0.0)
    negative = reduce(combine, sorted(f for f in factors if f < 0), 0.0)
    if positive and negative:
        return combine(positive, negative)
    return positive or negative


def combine_groups(contributions: list[tuple[str, float]]) -> float:
    """Combine ``(group, value)`` contributions: strongest per group, then EMYCIN across groups."""
    best: dict[str, float] = {}
    for group, value in contributions:
        if group not in best or abs(value) > abs(best[group]):
            best[group] = value
    return combine_all(best.values())


def bucket(cf: float) -> str | None:
    """'likely', 'possible', 'weak' or None (below the reporting threshold)."""
    if cf >= LIKELY:
        return "likely"
    if cf >= POSSIBLE:
        return "possible"
    if cf >= WEAK:
        return "weak"
    return None


def probability(cf: float, prior: float) -> float:
    """Naive-Bayes reading of a certainty factor given a base rate (labelled as an estimate)."""
    likelihood = 1 / (1 - cf) if cf >= 0 and cf < 1 else (1e9 if cf >= 1 else 1 + cf)
    odds = prior / (1 - prior) * likelihood
    return odds / (1 + odds)
