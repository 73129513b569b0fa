"""The knowledge base: rule files on disk, their schema, loading and validation.

A rule file (``knowledge_base/<domain>/<name>.yaml``) holds a catalog of causes and a list of
rules (see ``knowledge_base/README.md`` for the template). Loading a knowledge base:

1. reads every ``*.yaml`` (not ``*.test.yaml``) under the built-in folder, then each user folder
   (``--rules DIR`` and ``DIAG_RULES_PATH``), with a safe YAML loader that keeps positions;
2. checks each file against the schema (``RuleFile``; ``diag rules schema`` prints it);
3. compiles every condition and evidence template (unknown names fail here, with suggestions);
4. merges: a user rule or cause with the id of a built-in one replaces it only with
   ``override: true``;
5. checks references (facts, causes) and orders rules so that every rule runs after the rules
   whose facts it reads; a cycle is an error, so evaluation always ends.

Every problem is reported as ``file:line:col: message``. By default any error stops the load
(nothing runs half-loaded); ``keep_going=True`` drops the broken rules, keeps the rest and lists
the problems on ``KnowledgeBase.problems``.

Example:
  >>> kb = load_knowledge_base()
  >>> "exploding_gradients" in kb.causes
  True
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diag.engine.conditions import (
    Clause,
    ClauseError,
    bound_names_of,
    compile_clause,
    count_clauses,
    known_series,
)
from diag.engine.expressions import ExpressionError, Template, compile_template
from diag.engine.facts import CONTEXT_TYPES
from diag.engine.conditions import expression_types
from diag.engine.yamlloc import (
    LocDict,
    LocList,
    RuleFileError,
    RuleProblem,
    did_you_mean,
    load_yaml_file,
)

API_VERSION = "diag/v1"
CATEGORIES = ("gradient", "loss", "convergence", "leakage", "precision", "code", "resources", "data")
RULES_PATH_ENV = "DIAG_RULES_PATH"
DOC_SECTIONS = ("what", "why", "example", "use_instead", "false_positives")

# --------------------------------------------------------------------------- file schema


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


# --------------------------------------------------------------------------- loaded objects


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


# --------------------------------------------------------------------------- discovery


def builtin_rules_dir() -> Path:
    """The folder of the built-in knowledge base (installed as ``diag.knowledge_base``)."""
    return Path(str(resources.files("diag.knowledge_base")))


def user_rule_dirs(extra_dirs=(), *, use_env: bool = True) -> list[str]:
    """User rule folders: ``extra_dirs`` then the entries of ``DIAG_RULES_PATH``."""
    dirs = [str(d) for d in extra_dirs]
    if use_env:
        dirs += [d for d in os.environ.get(RULES_PATH_ENV, "").split(os.pathsep) if d.strip()]
    return dirs


def rule_files(path: str | Path) -> list[Path]:
    """Rule files under a path: the file itself, or ``*.yaml`` (not ``*.test.yaml``) below a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RuleFileError([RuleProblem(str(path), 0, 0, "no such rule file or folder")])
    return sorted(p for p in path.rglob("*.yaml")
                  if not p.name.endswith(".test.yaml") and "fixtures" not in p.parts
                  and not p.name.endswith(".expect.yaml"))


# --------------------------------------------------------------------------- loading


def _locate(doc, loc: tuple) -> tuple[int, int]:
    node, pos = doc, getattr(doc, "pos", (1, 1))
    for part in loc:
        if isinstance(node, LocDict) and part in node:
            pos = node.value_pos(part) if not isinstance(node[part], (LocDict, LocList)) else node[part].pos
            if isinstance(node[part], (LocDict, LocList)):
                pos = node.key_pos(part)
            node = node[part]
        elif isinstance(node, LocList) and isinstance(part, int) and part < len(node):
            pos = node.item_pos(part)
            node = node[part]
        else:
            break
    return pos


def _key_position(doc, loc: tuple) -> tuple[int, int]:
    parent = doc
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return _locate(doc, loc)
    if isinstance(parent, LocDict):
        return parent.key_pos(loc[-1])
    return _locate(doc, loc)


def _schema_problems(doc, error: ValidationError, path: str) -> list[RuleProblem]:
    problems = []
    for err in error.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            line, col = _key_position(doc, loc)
            model = _model_at(loc[:-1])
            hint = did_you_mean(loc[-1], model.model_fields) if model else ""
            message = f"unknown field {loc[-1]!r}{hint}"
        elif err["type"] == "missing":
            line, col = _locate(doc, loc[:-1])
            message = f"missing required field {loc[-1]!r}" + (f" in {'.'.join(map(str, loc[:-1]))}" if loc[:-1] else "")
        else:
            line, col = _locate(doc, loc)
            message = f"{where}: {err['msg']}"
            if err["type"] == "literal_error":
                message += f" (got {err.get('input')!r})"
        rule_id = _rule_id_at(doc, loc)
        problems.append(RuleProblem(path, line, col, message, rule_id))
    return problems


def _model_at(loc: tuple):
    model = RuleFile
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
        inner = getattr(annotation, "__args__", None)
        candidate = inner[0] if inner else annotation
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            model = candidate
        else:
            return None
    return model


def _rule_id_at(doc, loc) -> str | None:
    if len(loc) >= 2 and loc[0] in ("rules", "causes") and isinstance(loc[1], int):
        try:
            return doc[loc[0]][loc[1]].get("id")
        except (KeyError, IndexError, AttributeError, TypeError):
            return None
    return None


def _compile_rule(spec: RuleSpec, raw: LocDict, path: str, source: str, problems: list) -> Rule | None:
    pos = raw.pos if isinstance(raw, LocDict) else (0, 0)
    try:
        bound = bound_names_of(raw.get("when"))
        when = compile_clause(raw.get("when"), path, bound)
    except ClauseError as e:
        problems.append(RuleProblem(path, *e.pos, f"rule {spec.id}: {e.message}", spec.id))
        return None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as e:
        # A clause value of the wrong type or form that the clause compiler did not name itself:
        # still a located error of this rule, never a crash of the load.
        text = str(e).splitlines()[0][:120] if str(e) else ""
        problems.append(RuleProblem(path, *raw.value_pos("when"), f"rule {spec.id}: when: a clause value has the "
                                    f"wrong type or form ({type(e).__name__}: {text})", spec.id))
        return None
    try:
        evidence = compile_template(spec.evidence, expression_types(bound))
    except ExpressionError as e:
        problems.append(RuleProblem(path, *raw.value_pos("evidence"), f"rule {spec.id}: evidence: {e}", spec.id))
        return None
    for name in spec.requires.series:
        if not known_series(name):
            problems.append(RuleProblem(path, *raw.value_pos("requires"),
                                        f"rule {spec.id}: requires unknown series {name!r}", spec.id))
            return None
    for name in spec.requires.context:
        if name not in CONTEXT_TYPES:
            problems.append(RuleProblem(path, *raw.value_pos("requires"),
                                        f"rule {spec.id}: requires unknown context {name!r}"
                                        f"{did_you_mean(name, CONTEXT_TYPES)}", spec.id))
            return None
    if spec.type == "symptom" and not spec.title:
        problems.append(RuleProblem(path, *pos, f"rule {spec.id}: a symptom rule needs a title", spec.id))
        return None
    if spec.type == "cause" and not spec.emits:
        problems.append(RuleProblem(path, *pos, f"rule {spec.id}: a cause rule needs emits: <cause id>", spec.id))
        return None
    if spec.for_each == "record" and not any(c.kind == "record" for c in when.walk()):
        problems.append(RuleProblem(path, *raw.key_pos("for_each"),
                                    f"rule {spec.id}: for_each: record needs a record: clause", spec.id))
        return None
    reads = frozenset(c.fact_id for c in when.walk() if c.kind in ("fact", "absent"))
    emits = spec.emits or spec.id
    return Rule(spec=spec, path=path, pos=pos, source=source, when=when, evidence=evidence, emits=emits,
                reads=reads, specificity=count_clauses(when), bound_names=frozenset(bound))


def load_rule_file(path: str | Path, source: str = "user") -> tuple[list[Cause], list[Rule], list[RuleProblem]]:
    """Load one rule file; returns what loaded and the problems (bad rules are left out)."""
    path = str(path)
    problems: list[RuleProblem] = []
    try:
        doc = load_yaml_file(path)
    except RuleFileError as e:
        return [], [], list(e.problems)
    if not isinstance(doc, dict):
        return [], [], [RuleProblem(path, 1, 1, "a rule file is a mapping with apiVersion, causes and rules")]
    try:
        parsed = RuleFile.model_validate(doc)
    except ValidationError as e:
        problems += _schema_problems(doc, e, path)
        # Keep the entries that are valid on their own, so --keep-going loads the rest of the file.
        parsed = _partial(doc, path)
        if parsed is None:
            return [], [], problems
    causes = []
    for i, spec in enumerate(parsed.causes):
        raw = _raw_entry(doc, "causes", spec.id)
        causes.append(Cause(spec, path, raw.pos if isinstance(raw, LocDict) else (0, 0), source))
    rules = []
    for spec in parsed.rules:
        raw = _raw_entry(doc, "rules", spec.id)
        rule = _compile_rule(spec, raw, path, source, problems)
        if rule is not None:
            rules.append(rule)
    return causes, rules, problems


def _raw_entry(doc, section: str, entry_id: str):
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("id") == entry_id:
            return entry
    return LocDict()


def _partial(doc, path) -> RuleFile | None:
    if doc.get("apiVersion") != API_VERSION:
        return None
    causes, rules = [], []
    for entry in doc.get("causes") or []:
        try:
            causes.append(CauseSpec.model_validate(entry))
        except ValidationError:
            pass
    for entry in doc.get("rules") or []:
        try:
            rules.append(RuleSpec.model_validate(entry))
        except ValidationError:
            pass
    return RuleFile(apiVersion=API_VERSION, causes=causes, rules=rules)


def load_knowledge_base(extra_dirs=(), *, builtin: bool = True, use_env: bool = True,
                        keep_going: bool = False, paths=None) -> KnowledgeBase:
    """Load and validate the built-in rules plus user rule folders.

    Args:
      extra_dirs: user rule folders or files (``--rules``), loaded after the built-in ones.
      builtin: include the built-in knowledge base.
      use_env: also read folders from ``DIAG_RULES_PATH``.
      keep_going: drop broken rules and keep the rest (problems on ``kb.problems``) instead of raising.
      paths: load exactly these files/folders as the built-in set (for ``diag rules validate PATH``).

    Returns:
      A ``KnowledgeBase`` with rules in evaluation order.

    Raises:
      RuleFileError: every problem found, unless ``keep_going``.
    """
    kb = KnowledgeBase()
    problems: list[RuleProblem] = []
    sources: list[tuple[str, str]] = []
    if paths is not None:
        sources += [(str(p), "builtin") for p in paths]
    elif builtin:
        sources.append((str(builtin_rules_dir()), "builtin"))
    sources += [(d, "user") for d in user_rule_dirs(extra_dirs, use_env=use_env)]
    for folder, source in sources:
        kb.sources.append(folder)
        try:
            files = rule_files(folder)
        except RuleFileError as e:
            problems += e.problems
            continue
        for path in files:
            kb.files.append(str(path))
            causes, rules, file_problems = load_rule_file(path, source)
            problems += file_problems
            for cause in causes:
                _merge(kb.causes, cause, "cause", problems)
            for rule in rules:
                _merge(kb.rules, rule, "rule", problems)
    problems += _check_references(kb)
    problems += _order(kb)
    errors = [p for p in problems if p.severity == "error"]
    if errors and not keep_going:
        raise RuleFileError(problems)
    kb.problems = problems
    return kb


def _merge(table: dict, item, what: str, problems: list) -> None:
    existing = table.get(item.id)
    if existing is None:
        table[item.id] = item
        return
    if item.spec.override and existing.source == "builtin" and item.source == "user":
        table[item.id] = item
        return
    hint = "; set override: true to replace the built-in one" if existing.source == "builtin" and \
        item.source == "user" else ""
    problems.append(RuleProblem(item.path, *item.pos,
                                f"duplicate {what} id {item.id!r} (first defined at {existing.path}:"
                                f"{existing.pos[0]}){hint}", item.id))


def _check_references(kb: KnowledgeBase) -> list[RuleProblem]:
    problems = []
    emitted = kb.emitted() | set(kb.causes)
    for rule in list(kb.rules.values()):
        bad = False
        if rule.spec.type == "cause" and rule.emits not in kb.causes:
            problems.append(RuleProblem(rule.path, *rule.pos, f"rule {rule.id}: emits unknown cause "
                                        f"{rule.emits!r}{did_you_mean(rule.emits, kb.causes)}", rule.id))
            bad = True
        if rule.spec.type == "symptom" and rule.emits in kb.causes:
            problems.append(RuleProblem(rule.path, *rule.pos, f"rule {rule.id}: a symptom rule cannot emit the "
                                        f"cause {rule.emits!r}; use type: cause", rule.id))
            bad = True
        for clause in rule.when.walk():
            if clause.kind in ("fact", "absent") and clause.fact_id not in emitted:
                problems.append(RuleProblem(rule.path, *clause.pos, f"rule {rule.id}: no rule concludes "
                                            f"{clause.fact_id!r}{did_you_mean(clause.fact_id, emitted)}", rule.id))
                bad = True
        for cause_id in rule.spec.suppresses:
            if cause_id not in kb.causes:
                problems.append(RuleProblem(rule.path, *rule.pos, f"rule {rule.id}: suppresses unknown cause "
                                            f"{cause_id!r}{did_you_mean(cause_id, kb.causes)}", rule.id))
        for symptom in rule.spec.explains:
            if symptom not in emitted:
                problems.append(RuleProblem(rule.path, *rule.pos, f"rule {rule.id}: explains unknown symptom "
                                            f"{symptom!r}{did_you_mean(symptom, emitted)}", rule.id))
        if rule.spec.status == "deprecated":
            problems.append(RuleProblem(rule.path, *rule.pos, f"rule {rule.id} is deprecated", rule.id,
                                        severity="warning"))
        if bad:
            del kb.rules[rule.id]
    for cause in kb.causes.values():
        for other in cause.spec.suppresses:
            if other not in kb.causes:
                problems.append(RuleProblem(cause.path, *cause.pos, f"cause {cause.id}: suppresses unknown cause "
                                            f"{other!r}{did_you_mean(other, kb.causes)}", cause.id))
        if cause.spec.category not in CATEGORIES:
            problems.append(RuleProblem(cause.path, *cause.pos, f"cause {cause.id}: category "
                                        f"{cause.spec.category!r} is not one of {', '.join(CATEGORIES)}"
                                        f"{did_you_mean(cause.spec.category, CATEGORIES)}", cause.id,
                                        severity="warning"))
    return problems


def _order(kb: KnowledgeBase) -> list[RuleProblem]:
    """Order rules so that producers of a fact run before its readers; report cycles."""
    producers: dict[str, set[str]] = {}
    for rule in kb.rules.values():
        producers.setdefault(rule.emits, set()).add(rule.id)
    deps = {rid: {p for fact in rule.reads for p in producers.get(fact, ()) if p != rid} |
            ({rid} if rule.emits in rule.reads else set())
            for rid, rule in kb.rules.items()}
    order: list[str] = []
    done: set[str] = set()
    remaining = set(kb.rules)
    while remaining:
        ready = sorted(r for r in remaining if deps[r] <= done)
        if not ready:
            cycle = _find_cycle(deps, remaining)
            first = kb.rules[cycle[0]]
            kb.order = order
            for rid in remaining:
                kb.rules.pop(rid, None)
            return [RuleProblem(first.path, *first.pos, "rule graph has a cycle: " + " -> ".join(cycle) +
                                " (a rule may not depend, directly or through other rules, on its own conclusion)",
                                first.id)]
        order += ready
        done |= set(ready)
        remaining -= set(ready)
    kb.order = order
    return []


def _find_cycle(deps: dict, remaining: set) -> list[str]:
    start = min(remaining)
    path, seen = [start], {start: 0}
    node = start
    while True:
        nxt = min(d for d in deps[node] if d in remaining)
        if nxt in seen:
            return path[seen[nxt]:] + [nxt]
        seen[nxt] = len(path)
        path.append(nxt)
        node = nxt
