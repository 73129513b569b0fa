"""Loading a whole knowledge base: every folder in order, overrides, references, evaluation order.

A user rule or cause with the id of a built-in one replaces it only with ``override: true``; rules
are ordered so that producers of a fact run before its readers, and a cycle is an error.
"""

from __future__ import annotations

from diag.engine.kb.files import builtin_rules_dir, load_rule_file, rule_files, user_rule_dirs
from diag.engine.kb.model import KnowledgeBase
from diag.engine.kb.schema import CATEGORIES
from diag.engine.yamlloc import RuleFileError, RuleProblem, did_you_mean


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
    cache = _document_cache()
    for folder, source in sources:
        kb.sources.append(folder)
        try:
            files = rule_files(folder)
        except RuleFileError as e:
            problems += e.problems
            continue
        for path in files:
            kb.files.append(str(path))
            causes, rules, file_problems = load_rule_file(path, source, cache)
            problems += file_problems
            for cause in causes:
                _merge(kb.causes, cause, "cause", problems)
            for rule in rules:
                _merge(kb.rules, rule, "rule", problems)
    if cache is not None:
        cache.save()
    problems += _check_references(kb)
    problems += _order(kb)
    errors = [p for p in problems if p.severity == "error"]
    if errors and not keep_going:
        raise RuleFileError(problems)
    kb.problems = problems
    return kb


def _document_cache():
    """The parsed-rule-file cache (``diag.engine.kb.cache``), or None when it cannot be set up."""
    from diag.engine.kb.cache import DocumentCache

    try:
        return DocumentCache()
    except (OSError, ValueError, RuntimeError):  # a missing or unreadable cache is no cache
        return None


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
