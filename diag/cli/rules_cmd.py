"""``diag rules``: list, show, validate, test and scaffold knowledge-base rules."""

from __future__ import annotations

import json
import sys
import textwrap

from diag.cli import add_command
from diag.cli.common import add_rules_argument
from diag.errors import EXIT_BAD_INPUT


def register(subparsers) -> None:
    parser = add_command(subparsers, "rules", _rules)
    sub = parser.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")

    p = add_command(sub, "list", _list)
    p.add_argument("--symptoms", action="store_true", help="also list symptoms")
    add_rules_argument(p)

    p = add_command(sub, "show", _show)
    p.add_argument("id")
    add_rules_argument(p)

    p = add_command(sub, "validate", _validate)
    p.add_argument("paths", nargs="*", help="rule files or folders (default: the built-in knowledge base)")
    add_rules_argument(p)

    p = add_command(sub, "test", _test)
    p.add_argument("paths", nargs="*", help="test files or folders (default: the built-in knowledge base)")
    p.add_argument("--verbose", "-v", action="store_true", help="list passing cases too")

    p = add_command(sub, "new", _new)
    p.add_argument("cause_id")
    p.add_argument("--dir", default=".", help="folder to write into (default: current folder)")
    p.add_argument("--category", default="convergence", help="cause category (default convergence)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")

    p = add_command(sub, "schema", _schema)
    p.add_argument("--diagnosis", action="store_true", help="the schema of diag explain --format json")


def _rules(args) -> int:
    """List, show, validate, test and scaffold knowledge-base rules.

    Work with the knowledge base (built-in rules plus --rules folders and DIAG_RULES_PATH).

    Examples:
      diag rules list
      diag rules show lr_too_high
    """
    args.command_parser.print_help()
    return EXIT_BAD_INPUT


def _load(args, **kwargs):
    from diag.engine.kb import load_knowledge_base
    from diag.engine.yamlloc import RuleFileError
    from diag.errors import DiagInputError, Problem

    try:
        return load_knowledge_base(getattr(args, "rules", []), **kwargs)
    except RuleFileError as e:
        raise DiagInputError(Problem("", "the knowledge base has errors:\n" + str(e)),
                             hint="diag rules validate PATH lists every problem") from None


def _list(args) -> int:
    """List causes and symptoms.

    List every cause (and with --symptoms, every symptom) with its rules.

    Examples:
      diag rules list
      diag rules list --symptoms
    """
    kb = _load(args)
    causes = sorted(kb.causes.values(), key=lambda c: (c.spec.category, c.id))
    width = max((len(c.id) for c in causes), default=10)
    print(f"{'CAUSE'.ljust(width)}  {'CATEGORY':<12} {'SEVERITY':<9} RULES  TITLE")
    for cause in causes:
        n = len(kb.rules_for(cause.id))
        print(f"{cause.id.ljust(width)}  {cause.spec.category:<12} {cause.spec.severity:<9} {n:>5}  {cause.spec.title}")
    if args.symptoms:
        print()
        symptoms = sorted({r.emits for r in kb.rules.values() if r.spec.type == "symptom"})
        width = max((len(s) for s in symptoms), default=10)
        print(f"{'SYMPTOM'.ljust(width)}  TITLE")
        for s in symptoms:
            print(f"{s.ljust(width)}  {kb.symptom_title(s)}")
    print(f"\n{len(kb.causes)} causes, {len(kb.rules)} rules from {len(kb.files)} files")
    return 0


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(" ".join(str(text).split()), width=96, initial_indent=indent, subsequent_indent=indent)


def _show(args) -> int:
    """Print the documentation of a cause, symptom or rule.

    A cause's documentation (what, why, example, use instead, false positives, references, fix),
    or a rule's condition.

    Examples:
      diag rules show lr_too_high
    """
    from diag.engine.yamlloc import did_you_mean
    from diag.errors import DiagInputError, Problem

    kb = _load(args)
    cause = kb.causes.get(args.id)
    if cause is not None:
        spec = cause.spec
        print(f"{spec.id}: {spec.title}")
        print(f"  category {spec.category} · severity {spec.severity} · defined in {cause.path}:{cause.pos[0]}")
        for section, title in (("what", "What it detects"), ("why", "Why it matters"), ("example", "Example"),
                               ("use_instead", "Use instead"), ("false_positives", "False positives")):
            print(f"\n{title}\n{_wrap(getattr(spec.doc, section))}")
        print("\nFix")
        for fx in spec.fix:
            print(_wrap(f"- {fx.action}" + (f" (when {fx.when})" if fx.when else "") +
                        (f" [effort: {fx.effort}]" if fx.effort else "")))
        if spec.doc.references:
            print("\nReferences")
            for ref in spec.doc.references:
                print(f"  {ref}")
        rules = sorted(kb.rules_for(spec.id), key=lambda r: r.id)
        print("\nRules")
        for rule in rules:
            print(f"  {rule.id}  cf {rule.spec.cf:+.2f}  when {_when_text(rule.when)}")
        return 0
    rule = kb.rules.get(args.id)
    rules = [rule] if rule else sorted(kb.rules_for(args.id), key=lambda r: r.id)
    if not rules:
        choices = list(kb.causes) + list(kb.rules) + list(kb.emitted())
        raise DiagInputError(Problem("", f"no cause, symptom or rule {args.id!r}{did_you_mean(args.id, choices)}"),
                             hint="diag rules list --symptoms shows every id")
    for rule in rules:
        spec = rule.spec
        title = spec.title or kb.symptom_title(rule.emits)
        print(f"{rule.id} ({spec.type} rule, concludes {rule.emits}): {title}")
        print(f"  defined in {rule.path}:{rule.pos[0]} · status {spec.status} · cf {spec.cf:+.2f}"
              + (f" · for each {spec.for_each}" if spec.for_each else ""))
        print(f"  when {_when_text(rule.when)}")
        print(f"  evidence: {spec.evidence}")
        if spec.doc:
            print(_wrap(spec.doc))
        print()
    return 0


def _when_text(clause) -> str:
    if clause.kind in ("all", "any"):
        joiner = " and " if clause.kind == "all" else " or "
        return "(" + joiner.join(_when_text(c) for c in clause.children) + ")"
    if clause.kind == "not":
        return "not " + _when_text(clause.children[0])
    # fact/absent/record texts already begin with their kind ("fact loss.diverging"); a signal's
    # text is its own formula. Only context/expr texts are bare expressions that need the kind.
    return f"{clause.kind} {clause.text}" if clause.kind in ("context", "expr") else clause.text


def _kb_for_paths(paths):
    from diag.engine.kb import builtin_rules_dir, load_knowledge_base

    builtin = builtin_rules_dir().resolve()
    from pathlib import Path

    user = []
    for p in paths:
        resolved = Path(p).resolve()
        if not (resolved == builtin or builtin in resolved.parents):
            user.append(p)
    return load_knowledge_base(user, use_env=False, keep_going=True), user


def _validate(args) -> int:
    """Check rule files: schema, references, cycles, expressions, tests.

    Check rule files: schema, unique ids, references resolve, no cycles, expressions compile, and
    each rule has a positive and a negative test. Exit 0 when clean, 1 when a rule lacks tests, 2
    when a rule file is broken.

    Examples:
      diag rules validate
    """
    from pathlib import Path

    from diag.engine.ruletest import coverage_problems, run_rule_tests

    paths = _paths_or_builtin(args.paths, "rule")
    kb, user = _kb_for_paths(list(paths) + list(args.rules))
    errors = [p for p in kb.problems if p.severity == "error"]
    for problem in kb.problems:
        print(problem)
    selected = {str(Path(f).resolve()) for p in paths for f in _files_under(p)}
    if errors:
        # Tests cannot run against a broken knowledge base; the lint would only add noise.
        print(f"{len(errors)} errors in {len(selected)} files (tests not run)")
        return 2
    report = run_rule_tests(paths)
    lint = [p for p in coverage_problems(report, kb) if str(Path(p.path).resolve()) in selected]
    for problem in lint:
        print(problem)
    failing = [c for c in report.cases if not c.passed and not c.xfail]
    for case in failing:
        print(f"{case.file}:{case.line}: test {case.name!r} fails (diag rules test shows why)")
    for problem in report.problems:
        if problem not in kb.problems:
            print(problem)
            errors.append(problem)
    rules = [r for r in kb.rules.values() if str(Path(r.path).resolve()) in selected]
    causes = [c for c in kb.causes.values() if str(Path(c.path).resolve()) in selected]
    status = "ok" if not (errors or lint or failing) else f"{len(errors) + len(lint) + len(failing)} problems"
    print(f"{len(rules)} rules, {len(causes)} causes in {len(selected)} files: {status}")
    if errors:
        return 2
    return 1 if lint or failing else 0


def _paths_or_builtin(paths: list[str], what: str) -> list[str]:
    """The paths given, each of which must exist, or the built-in knowledge base when none is."""
    from pathlib import Path

    from diag.engine.kb import builtin_rules_dir
    from diag.errors import DiagInputError, Problem

    for p in paths:
        if not Path(p).exists():
            raise DiagInputError(Problem(p, f"no such {what} file or folder"))
    return list(paths) or [str(builtin_rules_dir())]


def _files_under(path):
    from diag.engine.kb import rule_files
    from diag.engine.yamlloc import RuleFileError

    try:
        return rule_files(path)
    except RuleFileError:
        return []


def _test(args) -> int:
    """Run the rule tests (*.test.yaml).

    Run the promtool-style tests beside each rule file. Ends with 'N passed, N failed'; exit 1 on
    failures.

    Examples:
      diag rules test
    """
    from diag.engine.ruletest import run_rule_tests, test_files

    paths = _paths_or_builtin(args.paths, "test")
    if not test_files(paths):
        from diag.errors import DiagInputError, Problem

        raise DiagInputError(Problem(", ".join(map(str, paths)), "no *.test.yaml files found"),
                             hint="a rule's tests live beside it as NAME.test.yaml")
    report = run_rule_tests(paths)
    for problem in report.problems:
        print(problem)
    for case in report.cases:
        if case.status == "FAIL":
            print(f"FAIL {case.file}:{case.line}: {case.name}")
            for failure in case.failures:
                print(f"     {failure}")
        elif case.status == "xpass":
            print(f"XPASS {case.file}:{case.line}: {case.name} (remove its xfail)")
        elif args.verbose:
            print(f"{case.status:<5}{case.file}:{case.line}: {case.name}" +
                  (f" (xfail: {case.xfail})" if case.xfail else ""))
    if report.xfailed:
        print(f"{report.xfailed} expected failures (xfail)")
    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


def _new(args) -> int:
    """Scaffold a rule file and its test.

    Write DIR/CAUSE_ID.yaml and DIR/CAUSE_ID.test.yaml: a working example to edit.

    Examples:
      diag rules new loss_stuck_high --dir my_rules
      diag rules test my_rules
    """
    from diag.engine.scaffold import ScaffoldError, scaffold_rule
    from diag.errors import DiagInputError, Problem

    try:
        paths = scaffold_rule(args.cause_id, args.dir, category=args.category, force=args.force)
    except ScaffoldError as e:
        raise DiagInputError(Problem("", str(e))) from None
    for p in paths:
        print(f"wrote {p}")
    print(f"next: edit {paths[0]}, then run: diag rules test {args.dir}")
    return 0


def _schema(args) -> int:
    """Print the JSON Schema of rule files (or of explain --format json).

    The JSON Schema of a rule file, or with --diagnosis of the diag.diagnosis/1 output.

    Examples:
      diag rules schema
      diag rules schema --diagnosis
    """
    if args.diagnosis:
        from diag.engine.diagnosis import diagnosis_json_schema

        schema = diagnosis_json_schema()
    else:
        from diag.engine.kb import rule_file_json_schema

        schema = rule_file_json_schema()
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return 0
