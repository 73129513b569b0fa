"""The loaded knowledge base: causes and compiled rules with where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from diag.engine.conditions import Clause
from diag.engine.expressions import Template
from diag.engine.kb.schema import CauseSpec, RuleSpec
from diag.engine.yamlloc import RuleProblem


@dataclass
class Cause:
    spec: CauseSpec
    path: str
    pos: tuple[int, int]
    source: str

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class Rule:
    spec: RuleSpec
    path: str
    pos: tuple[int, int]
    source: str
    when: Clause
    evidence: Template
    emits: str
    reads: frozenset[str]
    specificity: int
    bound_names: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def group(self) -> str:
        return self.spec.evidence_group or self.spec.id

    def required_series(self) -> set[str]:
        names = set(self.spec.requires.series)
        return names


@dataclass
class KnowledgeBase:
    causes: dict[str, Cause] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def symptom_title(self, fact_id: str) -> str:
        for rule in self.rules.values():
            if rule.spec.type == "symptom" and rule.emits == fact_id and rule.spec.title:
                return rule.spec.title
        return fact_id

    def rules_for(self, fact_id: str) -> list[Rule]:
        return [r for r in self.rules.values() if r.emits == fact_id]

    def emitted(self) -> set[str]:
        return {r.emits for r in self.rules.values()}
