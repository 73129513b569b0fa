"""``diag rules test``: promtool-style tests that live beside each rule file.

``X.test.yaml`` next to ``X.yaml``::

    rule_files: [X.yaml]          # the rules these tests cover (for the coverage lint)
    step_interval: 1              # steps between logged points
    tests:
      - name: what the case shows
        context: {precision: fp16, optimizer: adam, lr: 3.0e-4}   # header facts
        layers: [fc1, fc2]                                         # optional, forward order
        input_series:
          - {series: loss, values: '2.3-0.1x9 nan'}
          - {series: 'layers.grad_norm{layer="fc1"}', values: '1x10'}
        records:                                                   # data / check / eval / event records
          - {kind: data, split: val, size: 1000, overlap_fraction: 0.2}
        xfail: reason             # a known gap (semgrep's todoruleid)
        expect:
          symptoms: [{id: loss.non-finite, first_step: 10}]
          absent_symptoms: [grad.norm-spike]
          causes: [{id: fp16_overflow, rank: 1, cf: {min: 0.8}, evidence_contains: "...", suppressed_by: x}]
          absent_causes: [lr_too_high]
          ruled_out: [incorrect_gradient]
          skipped: [some.rule-id]
      # causes: [] means exactly no ranked cause (a healthy run).

Each case runs the whole knowledge base the file belongs to (the built-in rules plus the user
folder), so a rule is tested the way it runs. The runner also records which rules fired in which
case: ``validate`` uses that to require one positive and one negative case per rule.

Example:
  >>> from diag.engine.ruletest import run_rule_tests
  >>> report = run_rule_tests([builtin_rules_dir()])     # doctest: +SKIP
  >>> report.failed                                      # doctest: +SKIP
  0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from diag.engine.api import trace_info
from diag.engine.engine import forward_chain
from diag.engine.kb import KnowledgeBase, builtin_rules_dir, load_knowledge_base, rule_files
from diag.engine.notation import NotationError, parse_series
from diag.engine.scoring import build_diagnosis
from diag.engine.synthetic import (
    MAX_SYNTHETIC_CELLS,
    SeriesNameError,
    SpecTooLargeError,
    check_step_interval,
    header_from_context,
    trace_from_series,
)
from diag.engine.yamlloc import LocDict, RuleFileError, RuleProblem, did_you_mean, load_yaml_file
from diag.trace.records import Record

TEST_KEYS = ("name", "context", "header", "layers", "input_series", "records", "xfail", "expect", "step_interval")
EXPECT_KEYS = ("symptoms", "absent_symptoms", "causes", "absent_causes", "ruled_out", "skipped")
_RECORD = TypeAdapter(Record)


@dataclass
class CaseResult:
    file: str
    name: str
    line: int
    passed: bool
    xfail: str | None = None
    failures: list[str] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)

    @property
    def status(self) -> str:
        if self.xfail:
            return "xpass" if self.passed else "xfail"
        return "pass" if self.passed else "FAIL"


@dataclass
class TestReport:
    cases: list[CaseResult] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    covered_rules: dict[str, list[str]] = field(default_factory=dict)  # test file -> rule ids it covers

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed and not c.xfail)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if not c.passed and not c.xfail) + sum(
            1 for p in self.problems if p.severity == "error")

    @property
    def xfailed(self) -> int:
        return sum(1 for c in self.cases if c.xfail)


def test_files(paths) -> list[Path]:
    """``*.test.yaml`` files under the given files/folders."""
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            if path.name.endswith(".test.yaml"):
                out.append(path)
            else:
                sibling = path.with_name(path.name[: -len(".yaml")] + ".test.yaml")
                if sibling.exists():
                    out.append(sibling)
        elif path.is_dir():
            out += sorted(path.rglob("*.test.yaml"))
    return sorted(set(out))


def _kb_for(path: Path, cache: dict) -> KnowledgeBase:
    """The knowledge base a test file runs against: built-in rules plus its own folder if outside them."""
    builtin = builtin_rules_dir().resolve()
    folder = path.parent.resolve()
    inside = folder == builtin or builtin in folder.parents
    key = None if inside else str(folder)
    if key not in cache:
        try:
            cache[key] = load_knowledge_base(() if inside else (str(folder),), use_env=False)
        except RuleFileError as e:
            cache[key] = e
    if isinstance(cache[key], RuleFileError):
        raise cache[key]
    return cache[key]


def run_rule_tests(paths, *, kb_cache: dict | None = None) -> TestReport:
    """Run every test file under ``paths``; a broken rule or test file is a failure, not a crash."""
    report = TestReport()
    cache = kb_cache if kb_cache is not None else {}
    for path in test_files(paths):
        try:
            kb = _kb_for(path, cache)
        except RuleFileError as e:
            # Report a broken knowledge base once, not once per test file.
            report.problems += [p for p in e.problems if p not in report.problems]
            continue
        try:
            doc = load_yaml_file(str(path))
        except RuleFileError as e:
            report.problems += e.problems
            continue
        _run_file(path, doc, kb, report)
    return report


def _problem(report, path, node, message, key=None):
    pos = node.key_pos(key) if isinstance(node, LocDict) and key else getattr(node, "pos", (0, 0))
    report.problems.append(RuleProblem(str(path), pos[0], pos[1], message))


def _run_file(path: Path, doc, kb: KnowledgeBase, report: TestReport) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        _problem(report, path, doc, "a test file is a mapping with tests: [...]")
        return
    for key in doc:
        if key not in ("rule_files", "step_interval", "tests"):
            _problem(report, path, doc, f"unknown key {key!r}{did_you_mean(key, ('rule_files', 'step_interval', 'tests'))}", key)
            return
    files = doc.get("rule_files") or [path.name[: -len(".test.yaml")] + ".yaml"]
    covered = []
    for name in files:
        rule_path = (path.parent / name).resolve()
        covered += [r.id for r in kb.rules.values() if Path(r.path).resolve() == rule_path]
    report.covered_rules[str(path)] = covered
    interval = doc.get("step_interval", 1)
    for case in doc["tests"]:
        report.cases.append(_run_case(path, case, kb, interval))


def _run_case(path: Path, case, kb: KnowledgeBase, interval: int) -> CaseResult:
    line = case.pos[0] if isinstance(case, LocDict) else 0
    name = case.get("name", f"case at line {line}") if isinstance(case, dict) else "?"
    result = CaseResult(file=str(path), name=name, line=line, passed=False,
                        xfail=case.get("xfail") if isinstance(case, dict) else None)
    try:
        trace = _case_trace(case, interval)
    except (NotationError, SeriesNameError, ValidationError, ValueError, TypeError) as e:
        result.failures.append(f"bad test input: {_short(e)}")
        return result
    run = forward_chain(trace, kb)
    diagnosis = build_diagnosis(run, trace_info(trace))
    result.fired = set(run.fired)
    result.failures = check_expectations(case.get("expect") or {}, diagnosis)
    for rule_id, message in sorted(run.errors.items()):
        result.failures.append(f"rule {rule_id} raised: {message}")
    result.passed = not result.failures
    return result


def _short(e: Exception) -> str:
    text = str(e)
    return text.splitlines()[0] if isinstance(e, ValidationError) is False else text.replace("\n", "; ")[:300]


def _case_trace(case, interval):
    if not isinstance(case, dict):
        raise ValueError("a test case is a mapping")
    for key in case:
        if key not in TEST_KEYS:
            raise ValueError(f"unknown key {key!r} in a test case{did_you_mean(key, TEST_KEYS)}")
    interval = check_step_interval(case.get("step_interval", interval))
    context = case.get("context") or {}
    if not isinstance(context, dict):
        raise ValueError("context is a mapping of run facts, e.g. {precision: fp16, lr: 0.1}")
    layers = case.get("layers")
    if layers is not None and not isinstance(layers, list):
        raise ValueError("layers is a list of layer names")
    header = header_from_context(dict(context), layers)
    if case.get("header"):
        if not isinstance(case["header"], dict):
            raise ValueError("header is a mapping of header fields")
        # Validated, not copied in: a wrong type here would surface as a crash deep in a rule.
        header = type(header).model_validate({**header.model_dump(exclude_none=True), **dict(case["header"])})
    series = {}
    points = 0
    entries = case.get("input_series") or []
    if not isinstance(entries, list):
        raise ValueError("input_series is a list of {series: NAME, values: 'NOTATION'}")
    for entry in entries:
        if not isinstance(entry, dict) or "series" not in entry or "values" not in entry:
            raise ValueError("each input_series entry is {series: NAME, values: 'NOTATION'}")
        if not isinstance(entry["series"], str):
            raise ValueError("a series name is text, e.g. 'loss' or 'layers.grad_norm{layer=\"fc1\"}'")
        series[entry["series"]] = parse_series(entry["values"])
        points += len(series[entry["series"]])
        if points > MAX_SYNTHETIC_CELLS:
            raise SpecTooLargeError(f"the input series hold more than {MAX_SYNTHETIC_CELLS:,} points")
    records = [_RECORD.validate_python(dict(r)) for r in case.get("records") or []]
    trace = trace_from_series(series, step_interval=interval, header=header, layers=layers, records=records)
    return trace


def check_expectations(expect: dict, diagnosis) -> list[str]:
    """What in ``diagnosis`` differs from ``expect`` (empty when the case passes)."""
    failures = []
    for key in expect:
        if key not in EXPECT_KEYS:
            failures.append(f"unknown expect key {key!r}{did_you_mean(key, EXPECT_KEYS)}")
    symptoms = diagnosis.symptoms
    ranked = {c.id: c for c in diagnosis.causes}
    hidden = {c.id: c for c in diagnosis.suppressed}
    for want in expect.get("symptoms") or []:
        want = {"id": want} if isinstance(want, str) else want
        found = [s for s in symptoms if s.id == want["id"] and
                 all(s.labels.get(k) == str(v) for k, v in (want.get("labels") or {}).items())]
        if not found:
            seen = ", ".join(sorted({s.key for s in symptoms})) or "none"
            failures.append(f"expected symptom {want['id']} (observed: {seen})")
            continue
        s = found[0]
        if "first_step" in want and s.first_step != want["first_step"]:
            failures.append(f"symptom {want['id']}: first_step {s.first_step}, expected {want['first_step']}")
        failures += _cf_check(f"symptom {want['id']}", s.certainty, want.get("cf"))
    for sid in expect.get("absent_symptoms") or []:
        if any(s.id == sid for s in symptoms):
            failures.append(f"symptom {sid} should be absent but was observed: "
                            f"{next(s for s in symptoms if s.id == sid).evidence[:1]}")
    if "causes" in expect and expect["causes"] == []:
        if diagnosis.causes:
            failures.append("expected no causes, got " + ", ".join(f"{c.id} ({c.certainty:.2f})" for c in diagnosis.causes))
    for want in expect.get("causes") or []:
        want = {"id": want} if isinstance(want, str) else want
        cid = want["id"]
        cause = ranked.get(cid) or hidden.get(cid)
        if cause is None:
            got = ", ".join(f"{c.id} ({c.certainty:.2f})" for c in diagnosis.causes) or "none"
            failures.append(f"expected cause {cid} (got: {got})")
            continue
        if "suppressed_by" in want:
            if cause.suppressed_by != want["suppressed_by"]:
                failures.append(f"cause {cid}: suppressed_by {cause.suppressed_by}, expected {want['suppressed_by']}")
        elif cid in hidden:
            failures.append(f"cause {cid} was suppressed by {cause.suppressed_by}")
        if "rank" in want and cause.rank != want["rank"]:
            order = ", ".join(c.id for c in diagnosis.causes)
            failures.append(f"cause {cid}: rank {cause.rank}, expected {want['rank']} (order: {order})")
        failures += _cf_check(f"cause {cid}", cause.certainty, want.get("cf"))
        if "bucket" in want and cause.bucket != want["bucket"]:
            failures.append(f"cause {cid}: bucket {cause.bucket}, expected {want['bucket']}")
        text = want.get("evidence_contains")
        if text and not any(text in e for e in cause.evidence):
            failures.append(f"cause {cid}: no evidence contains {text!r}; evidence: {cause.evidence}")
    for cid in expect.get("absent_causes") or []:
        if cid in ranked or cid in hidden:
            c = ranked.get(cid) or hidden.get(cid)
            failures.append(f"cause {cid} should be absent but was concluded ({c.certainty:.2f}): {c.evidence[:1]}")
    for cid in expect.get("ruled_out") or []:
        if not any(c.id == cid for c in diagnosis.ruled_out):
            failures.append(f"expected {cid} to be ruled out")
    for rid in expect.get("skipped") or []:
        if not any(s.id == rid for s in diagnosis.rules_skipped):
            failures.append(f"expected rule {rid} to be skipped for missing inputs")
    return failures


def _cf_check(what: str, value: float, bounds) -> list[str]:
    if not bounds:
        return []
    out = []
    if isinstance(bounds, (int, float)):
        bounds = {"min": bounds - 1e-6, "max": bounds + 1e-6}
    if "min" in bounds and value < bounds["min"]:
        out.append(f"{what}: certainty {value:.3f} below {bounds['min']}")
    if "max" in bounds and value > bounds["max"]:
        out.append(f"{what}: certainty {value:.3f} above {bounds['max']}")
    return out


def coverage_problems(report: TestReport, kb: KnowledgeBase) -> list[RuleProblem]:
    """Rules without a positive case (fired) or a negative case (did not fire) among their tests."""
    by_file: dict[str, list[CaseResult]] = {}
    for case in report.cases:
        by_file.setdefault(case.file, []).append(case)
    covering: dict[str, list[CaseResult]] = {}
    for file, rule_ids in report.covered_rules.items():
        for rid in rule_ids:
            covering.setdefault(rid, []).extend(c for c in by_file.get(file, []) if not c.xfail)
    problems = []
    for rule in sorted(kb.rules.values(), key=lambda r: (r.path, r.pos)):
        cases = covering.get(rule.id, [])
        if not cases:
            problems.append(RuleProblem(rule.path, *rule.pos, f"rule {rule.id} has no tests (add "
                                        f"{Path(rule.path).name[:-5]}.test.yaml beside it)", rule.id))
            continue
        if not any(rule.id in c.fired for c in cases):
            problems.append(RuleProblem(rule.path, *rule.pos, f"rule {rule.id} has no positive test "
                                        "(no case in its test file makes it fire)", rule.id))
        if all(rule.id in c.fired for c in cases):
            problems.append(RuleProblem(rule.path, *rule.pos, f"rule {rule.id} has no negative test "
                                        "(every case in its test file makes it fire)", rule.id))
    return problems


__all__ = ["CaseResult", "TestReport", "check_expectations", "coverage_problems", "rule_files", "run_rule_tests",
           "test_files"]
