"""Finding rule files (built-in, ``--rules``, ``DIAG_RULES_PATH``) and loading one of them.

A file is read with the position-keeping YAML loader, checked against the schema, and each rule's
condition and evidence template are compiled; a bad rule is reported and left out, the rest load.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from diag.engine.conditions import (
    ClauseError,
    bound_names_of,
    compile_clause,
    count_clauses,
    expression_types,
    known_series,
)
from diag.engine.expressions import ExpressionError, compile_on_first_use, compile_template
from diag.engine.facts import CONTEXT_TYPES
from diag.engine.kb.locate import schema_problems
from diag.engine.kb.model import Cause, Rule
from diag.engine.kb.schema import API_VERSION, CauseSpec, RuleFile, RuleSpec
from diag.engine.yamlloc import LocDict, RuleFileError, RuleProblem, did_you_mean, load_yaml_text, read_rule_text


RULES_PATH_ENV = "DIAG_RULES_PATH"


def builtin_rules_dir() -> Path:
    """The folder of the built-in knowledge base (installed as ``diag.knowledge_base``).

    Found through the package's ``__init__`` (what ``importlib.resources.files`` returns for a
    package on disk); ``importlib.resources`` itself, and the reader it imports, only where the
    package has no file of its own (a namespace package, a zip): ~1% of ``diag explain``.
    """
    import diag.knowledge_base as package

    if getattr(package, "__file__", None):
        return Path(package.__file__).parent
    from importlib import resources

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


def compile_rule(spec: RuleSpec, raw: LocDict, path: str, source: str, problems: list) -> Rule | None:
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


def load_rule_file(path: str | Path, source: str = "user", cache=None) -> tuple[list[Cause], list[Rule], list[RuleProblem]]:
    """Load one rule file; returns what loaded and the problems (bad rules are left out).

    Args:
      path: the rule file.
      source: ``"builtin"`` or ``"user"`` (overrides, messages).
      cache: a ``diag.engine.kb.cache.DocumentCache``: the parsed document comes from it when it
        holds this exact text, and goes into it otherwise.
    """
    path = str(path)
    try:
        text = read_rule_text(path)
        cached = cache.get(text) if cache is not None else None
        doc = cached[0] if cached is not None else load_yaml_text(text, path)
    except RuleFileError as e:
        return [], [], list(e.problems)
    if cached is not None and cached[1]:
        # Compiled without a problem last time, by this code: rule-engine parses its expressions
        # when a run first evaluates them (most never are).
        with compile_on_first_use():
            result = _load_document(doc, path, source)
    else:
        result = _load_document(doc, path, source)
    if cache is not None and cached is None:
        cache.put(text, doc, clean=not result[2])
    return result


def _load_document(doc, path: str, source: str) -> tuple[list[Cause], list[Rule], list[RuleProblem]]:
    problems: list[RuleProblem] = []
    if not isinstance(doc, dict):
        return [], [], [RuleProblem(path, 1, 1, "a rule file is a mapping with apiVersion, causes and rules")]
    try:
        parsed = RuleFile.model_validate(doc)
    except ValidationError as e:
        problems += schema_problems(doc, e, path)
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
        rule = compile_rule(spec, raw, path, source, problems)
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
