"""The result of a diagnosis: ranked causes with evidence, fixes and why-chains (``diag.diagnosis/1``).

This is the contract between the engine and everything that shows a diagnosis (``diag explain``,
the TUI, the demo, evaluations). ``diag explain --format json`` prints ``Diagnosis.model_dump_json``;
``diagnosis_json_schema()`` is its JSON Schema (``diag rules schema --diagnosis``).

Vocabulary:

* a **symptom** is something the trace shows (``grad.norm-spike`` on layer ``fc1`` from step 91);
* a **cause** is a root cause of ``shared/CAUSES.md`` (``exploding_gradients``) concluded by rules;
* **certainty** is an EMYCIN certainty factor in [-1, 1]: 1 certain, 0 no evidence, negative means
  the evidence argues against; it is not a probability;
* a **justification** is one rule's contribution to a fact, with the clauses it checked, what they
  observed, and (for clauses that used another fact) that fact's own justification: the why-chain.
"""

# No ``from __future__ import annotations`` in a module of pydantic models: pydantic would then
# compile and evaluate every field's annotation from its text (~450 for the trace, diagnosis and
# rule-file models, ~2% of a diag explain).
from typing import Callable, Literal, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field

DIAGNOSIS_SCHEMA = "diag.diagnosis/1"

Bucket = Literal["likely", "possible", "weak"]
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITY_ORDER: tuple[str, ...] = ("info", "low", "medium", "high", "critical")

Observed = Union[float, int, str, bool, None, list[Union[float, int, str, None]]]


class _Model(BaseModel):
    # NaN/Inf are real observations (a loss of NaN): keep them as JSON strings, never null.
    # defer_build: the validators and serializers are built on first use, not at import: the text
    # output of ``diag explain`` never uses them (``built``), JSON output and model_validate do.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings", defer_build=True)


class ClauseResult(_Model):
    """One clause of a rule's condition as it was evaluated."""

    kind: Literal["signal", "fact", "absent", "context", "expr", "record", "all", "any", "not"]
    text: str = Field(description="The clause as written in the rule, in one line.")
    result: bool = Field(description="Whether the clause held.")
    cf: float = Field(description="The clause's certainty (0 or 1 for crisp clauses).")
    observed: Observed = Field(default=None, description="The value the clause saw (first qualifying point).")
    threshold: Observed = None
    steps: Optional[list[int]] = Field(default=None, description="[first, last] step the clause points at.")
    layer: Optional[str] = None
    missing: list[str] = Field(default_factory=list, description="Inputs the clause needed and the trace lacks.")
    fact: Optional[str] = Field(default=None, description="Key of the fact a fact: clause used.")
    because: list["Justification"] = Field(
        default_factory=list, description="For a fact: clause, the justification of the fact it used."
    )
    children: list["ClauseResult"] = Field(default_factory=list, description="Sub-clauses of all/any/not.")


class Justification(_Model):
    """One rule's contribution to a symptom or cause: MYCIN's HOW."""

    rule_id: str
    fact: str = Field(description="Key of the fact this rule concluded, e.g. 'grad.norm-spike{layer=fc1}'.")
    rule_cf: float
    premise_cf: float = Field(description="Certainty of the rule's condition (all: min, any: max).")
    contribution: float = Field(description="rule_cf x premise_cf: what this rule adds to the fact.")
    group: str = Field(description="Evidence group; contributions within one group count once (max).")
    evidence: str = Field(description="The rule's evidence sentence with the observed numbers.")
    labels: dict[str, str] = Field(default_factory=dict)
    first_step: Optional[int] = None
    clauses: list[ClauseResult] = Field(default_factory=list)


class FixItem(_Model):
    action: str
    when: Optional[str] = None
    effort: Optional[str] = None
    ref: Optional[str] = None


class CauseResult(_Model):
    """One root cause concluded from the trace."""

    id: str = Field(description="Cause id from the catalog (shared/CAUSES.md), e.g. 'exploding_gradients'.")
    rank: int = Field(description="1 for the most likely cause; suppressed and ruled-out causes rank after all.")
    certainty: float = Field(description="Combined EMYCIN certainty factor in [-1, 1].")
    bucket: Optional[Bucket] = Field(description="likely >= 0.6, possible >= 0.3, weak >= 0.2; None if ruled out.")
    probability: Optional[float] = Field(
        default=None, description="Naive-Bayes estimate from the cause's prior, when the catalog gives one."
    )
    title: str
    severity: Severity
    category: str
    first_step: Optional[int] = Field(default=None, description="Earliest step of the evidence.")
    evidence: list[str] = Field(description="One sentence per contributing rule, with the observed numbers.")
    layers: list[str] = Field(default_factory=list, description="Layers the evidence points at, forward order.")
    series: list[str] = Field(default_factory=list, description="Series the evidence was read from.")
    steps: Optional[list[int]] = Field(default=None, description="[first, last] step of the evidence.")
    fix: list[FixItem] = Field(default_factory=list)
    explains: list[str] = Field(default_factory=list, description="Observed symptoms this cause accounts for.")
    suppressed_by: Optional[str] = Field(default=None, description="The cause that explains this one better.")
    docs: str = Field(default="", description="Command that prints the cause's documentation.")
    justification: list[Justification] = Field(default_factory=list)


class SymptomResult(_Model):
    """A symptom observed in the trace."""

    id: str
    key: str = Field(description="id plus labels, e.g. 'grad.zero{layer=fc3}'.")
    title: str
    labels: dict[str, str] = Field(default_factory=dict)
    certainty: float
    first_step: Optional[int] = None
    last_step: Optional[int] = None
    evidence: list[str] = Field(default_factory=list)
    series: list[str] = Field(default_factory=list)


class SkippedRule(_Model):
    """A rule that could not be checked because the trace lacks what it reads."""

    id: str
    missing: list[str]


class RuleError(_Model):
    """A rule that raised while being evaluated; the other rules still ran."""

    id: str
    message: str


class NearMiss(_Model):
    """The closest a cause's rules came to firing (why-not)."""

    cause: str
    rule_id: str
    satisfied: int
    total: int
    clauses: list[ClauseResult] = Field(default_factory=list)


class TraceInfo(_Model):
    path: str
    run_id: Optional[str] = None
    framework: Optional[str] = None
    steps: int = Field(description="Number of step records.")
    first_step: Optional[int] = None
    last_step: Optional[int] = None
    layers: int = 0
    series: list[str] = Field(default_factory=list, description="Series the trace recorded.")


class Diagnosis(_Model):
    """Everything ``diag explain`` knows about one trace."""

    schema_version: Literal["diag.diagnosis/1"] = Field(default=DIAGNOSIS_SCHEMA, alias="schema")
    trace: TraceInfo
    causes: list[CauseResult] = Field(default_factory=list, description="Ranked causes, certainty >= 0.2.")
    suppressed: list[CauseResult] = Field(
        default_factory=list, description="Also consistent, but explained by a higher-ranked cause."
    )
    ruled_out: list[CauseResult] = Field(default_factory=list, description="Causes the evidence argues against.")
    symptoms: list[SymptomResult] = Field(default_factory=list)
    rules_fired: list[str] = Field(default_factory=list)
    rules_skipped: list[SkippedRule] = Field(default_factory=list)
    rule_errors: list[RuleError] = Field(default_factory=list)
    checks_run: list[str] = Field(default_factory=list, description="Cause ids whose rules were evaluated.")
    checks_skipped: list[str] = Field(
        default_factory=list, description="Cause ids none of whose rules could be evaluated (inputs missing)."
    )
    near_misses: list[NearMiss] = Field(default_factory=list)
    knowledge_base: list[str] = Field(default_factory=list, description="Rule folders that were loaded.")

    model_config = ConfigDict(populate_by_name=True, extra="forbid", ser_json_inf_nan="strings", defer_build=True)

    def cause(self, cause_id: str) -> Optional[CauseResult]:
        """The cause with this id in causes, suppressed or ruled_out, or None."""
        for entry in (*self.causes, *self.suppressed, *self.ruled_out):
            if entry.id == cause_id:
                return entry
        return None

    @property
    def top(self) -> Optional[CauseResult]:
        """The first-ranked cause, or None for a run where nothing was found."""
        return self.causes[0] if self.causes else None

    def at_or_above(self, severity: str) -> list[CauseResult]:
        """Ranked causes whose severity is at least ``severity`` (for ``--fail-on``)."""
        floor = SEVERITY_ORDER.index(severity)
        return [c for c in self.causes if SEVERITY_ORDER.index(c.severity) >= floor]

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(by_alias=True, indent=indent)


M = TypeVar("M", bound=_Model)
_ACCEPTS: dict[type, dict[str, Callable[[object], bool]]] = {}


def built(cls: type[M], **values) -> M:
    """``cls(**values)``, without running pydantic's validation when it would change nothing.

    When every value already has its field's exact type (a ``float`` for a float, a list of
    ``int`` for ``list[int]``, an instance of the nested model, a listed literal), validation would
    return the same values, so the model is constructed from them directly: building the models'
    validators costs ~10 ms of each ``diag explain`` (11 models), validating them ~3 ms. Any other
    value (a numpy scalar, a tuple, an int where a float is declared, an unknown field) goes through
    ``cls(**values)``, which converts or refuses it exactly as before.
    """
    accepts = _ACCEPTS.get(cls) or _field_checks(cls)
    for name, value in values.items():
        check = accepts.get(name)
        if check is None or not check(value):
            return cls(**values)
    return cls.model_construct(**values)


def _field_checks(cls: type) -> dict[str, Callable[[object], bool]]:
    hints = get_type_hints(cls)
    _ACCEPTS[cls] = checks = {name: _exact(hints[name]) for name in cls.__pydantic_fields__}
    return checks


def _exact(hint) -> Callable[[object], bool]:
    """Whether a value is already of type ``hint`` exactly, as validation would return it."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union:
        options = [_exact(a) for a in args]
        return lambda v: any(accepts(v) for accepts in options)
    if origin is Literal:
        return lambda v: any(type(v) is type(a) and v == a for a in args)
    if origin is list:
        item = _exact(args[0])
        return lambda v: type(v) is list and all(item(x) for x in v)
    if origin is dict:
        key, item = _exact(args[0]), _exact(args[1])
        return lambda v: type(v) is dict and all(key(k) and item(x) for k, x in v.items())
    if hint is type(None):
        return lambda v: v is None
    if isinstance(hint, type):
        return lambda v: type(v) is hint
    return lambda v: False  # a type this check does not know: validate


def diagnosis_json_schema() -> dict:
    """JSON Schema of ``diag explain --format json`` output (``diag.diagnosis/1``)."""
    schema = Diagnosis.model_json_schema(by_alias=True)
    schema["$id"] = "https://diag.dev/schemas/diag.diagnosis-1.json"
    schema["title"] = "diag.diagnosis/1"
    return schema
