"""What a rule file may hold: the pydantic models of ``apiVersion: diag/v1`` files.

``diag rules schema`` prints their JSON Schema (``rule_file_json_schema``).
"""

# No ``from __future__ import annotations`` in a module of pydantic models: pydantic would then
# compile and evaluate every field's annotation from its text (~450 for the trace, diagnosis and
# rule-file models, ~2% of a diag explain).
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


API_VERSION = "diag/v1"
CATEGORIES = ("gradient", "loss", "convergence", "leakage", "precision", "code", "resources", "data")
DOC_SECTIONS = ("what", "why", "example", "use_instead", "false_positives")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FixSpec(_Spec):
    action: str = Field(description="What to change, as an imperative sentence.")
    when: Optional[str] = Field(default=None, description="When this fix applies.")
    effort: Optional[Literal["low", "medium", "high"]] = None
    ref: Optional[str] = Field(default=None, description="A link to read more.")


class CauseDoc(_Spec):
    what: str = Field(description="What the rules detect (ruff: What it does).")
    why: str = Field(description="Why it breaks training, and why the thresholds are what they are.")
    example: str = Field(description="What a trace with this cause looks like.")
    use_instead: str = Field(description="What a healthy setup does instead.")
    false_positives: str = Field(description="When the rules may fire without this cause.")
    references: list[str] = Field(default_factory=list)


class CauseSpec(_Spec):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Cause id from shared/CAUSES.md.")
    title: str
    category: str
    severity: Literal["info", "low", "medium", "high", "critical"]
    prior: Optional[float] = Field(default=None, gt=0, lt=1, description="Optional base rate.")
    fix: list[FixSpec] = Field(min_length=1)
    doc: CauseDoc
    suppresses: list[str] = Field(default_factory=list, description="Causes this one explains when it is likely.")
    override: bool = Field(default=False, description="Replace a built-in cause with this id.")


class RequiresSpec(_Spec):
    series: list[str] = Field(default_factory=list)
    context: list[str] = Field(default_factory=list)
    records: list[Literal["data", "check", "eval", "event"]] = Field(default_factory=list)


class RuleSpec(_Spec):
    id: str = Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$", description="area.kebab-name, e.g. grad.norm-spike.")
    type: Literal["symptom", "cause"]
    emits: Optional[str] = Field(default=None, description="Fact id concluded: a cause id (cause rules) "
                                 "or a symptom id (defaults to the rule id).")
    title: Optional[str] = Field(default=None, description="Symptom rules: the symptom's title.")
    category: Optional[str] = None
    severity: Optional[Literal["info", "low", "medium", "high", "critical"]] = None
    status: Literal["stable", "test", "experimental", "deprecated"] = "stable"
    requires: RequiresSpec = Field(default_factory=RequiresSpec)
    for_each: Optional[Literal["layer", "record"]] = None
    when: dict = Field(description="The condition: a clause or all/any/not of clauses.")
    cf: float = Field(ge=-1, le=1, description="Certainty the rule lends its conclusion; negative argues against.")
    evidence_group: Optional[str] = Field(default=None, description="Contributions in one group count once (max).")
    explains: list[str] = Field(default_factory=list)
    suppresses: list[str] = Field(default_factory=list)
    evidence: str = Field(description="One sentence with {{ expression | filter }} slots.")
    tags: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    author: Optional[str] = None
    since: Optional[str] = None
    doc: Optional[str] = Field(default=None, description="Why this rule's thresholds are what they are.")
    override: bool = Field(default=False, description="Replace a built-in rule with this id.")


class RuleFile(_Spec):
    apiVersion: Literal["diag/v1"]
    causes: list[CauseSpec] = Field(default_factory=list)
    rules: list[RuleSpec] = Field(default_factory=list)


def rule_file_json_schema() -> dict:
    """JSON Schema of a rule file (``diag rules schema``)."""
    schema = RuleFile.model_json_schema()
    schema["title"] = "diag knowledge-base rule file (diag/v1)"
    return schema
