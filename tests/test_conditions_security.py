"""Rule files are data: they cannot run Python, and every mistake is reported at file:line:col."""

from __future__ import annotations

import textwrap

import pytest

from diag.engine.expressions import ExpressionError, compile_expression, compile_template
from diag.engine.facts import CONTEXT_TYPES
from diag.engine.kb import load_knowledge_base
from diag.engine.yamlloc import RuleFileError
from tests.rule_files import HEAD, cause_rule


def load(tmp_path, rules: str):
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(rules), "  "))
    return load_knowledge_base(paths=[tmp_path], use_env=False)


def rule(when: str, evidence: str = "e") -> str:
    return cause_rule(when, evidence=evidence)


@pytest.mark.parametrize("expression, message", [
    ('__import__("os").system("true")', "double underscores"),
    ("precision.__class__", "double underscores"),
    ("lr.real", "unknown attribute 'real'"),
    ("open('x')", "unknown name 'open'"), ("lr >< 1", "syntax error"),
    ("lr ** 99999999", "exponent 99999999 is too large"),
    ("(" * 40 + "lr" + ")" * 40 + " > 1", "nests deeper than 16"),
    ("lr > 1 and " * 60 + "lr > 1", "characters long"),
    ("lrr > 1", "unknown name 'lrr' in 'lrr > 1' (did you mean 'lr'?)"),
])
def test_unsafe_or_wrong_expressions_are_rejected_at_load(tmp_path, expression, message):
    with pytest.raises(RuleFileError) as info:
        load(tmp_path, rule("{context: '" + expression.replace("'", "''") + "'}"))
    problem = info.value.problems[0]
    assert message in problem.message
    assert problem.path.endswith("rules.yaml") and (problem.line, problem.col) == (13, 21)


def test_python_object_yaml_tags_are_refused_with_the_position(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("apiVersion: diag/v1\nrules: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RuleFileError) as info:
        load_knowledge_base(paths=[tmp_path], use_env=False)
    text = str(info.value)
    assert text.startswith(f"{path}:2:8: ")
    assert "!!python" in text and "not allowed" in text


@pytest.mark.parametrize("template, message", [
    ("'{0.__class__.__mro__}'", "single braces are not template slots"),
    ("'value {lr}'", "single braces are not template slots"),
    ("'{{ lr.__class__ }}'", "double underscores"),
    ("'{{ lr | scii }}'", "unknown template filter 'scii' (did you mean 'sci'?)"),
])
def test_format_string_tricks_in_evidence_templates_are_rejected(tmp_path, template, message):
    with pytest.raises(RuleFileError) as info:
        load(tmp_path, rule("{context: 'lr > 1'}", template))
    assert message in info.value.problems[0].message
    assert "evidence" in info.value.problems[0].message


def test_templates_render_values_never_format_objects():
    template = compile_template("lr={{ lr | sci }} opt={{ optimizer }} {{ lr * 2 }}", CONTEXT_TYPES)
    assert template.render({**dict.fromkeys(CONTEXT_TYPES), "lr": 0.5, "optimizer": "adam"}) == \
        "lr=5.00e-01 opt=adam 1"


def test_deep_nesting_of_conditions_is_rejected(tmp_path):
    when = "{not: " * 20 + "{context: 'lr > 1'}" + "}" * 20
    with pytest.raises(RuleFileError, match="nests deeper than 12 levels"):
        load(tmp_path, rule(when))


@pytest.mark.parametrize("when, message", [
    ("{signal: {series: grad_nrom}}", "unknown series 'grad_nrom' (did you mean 'grad_norm'?)"),
    ("{signal: {series: loss, fn: ratio_to_medain}}", "unknown signal fn 'ratio_to_medain' (did you mean 'ratio_to_median'?)"),
    ("{signal: {series: loss, fn: 'avg(windw=3)'}}", "has no argument 'windw'"),
    ("{signal: {series: loss, op: '=>'}}", "unknown op '=>'"),
    ("{signal: {series: loss, fro: 3}}", "unknown key 'fro' in signal (did you mean 'for'?)"),
    ("{fakt: loss.non-finite}", "unknown clause key 'fakt' (did you mean 'fact'?)"),
    ("{fact: loss.non-finte}", "no rule concludes 'loss.non-finte' (did you mean 'loss.non-finite'?)"),
    ("{fact: loss.non-finite, as: nan}", "reserved word"),
    ("{record: {kind: dta}}", "record kind 'dta' is not one of"),
])
def test_mistakes_in_conditions_are_reported_with_a_suggestion(tmp_path, when, message):
    with pytest.raises(RuleFileError) as info:
        load(tmp_path, rule(when) + """\
- id: loss.non-finite
  type: symptom
  title: nan
  when: {signal: {series: loss, fn: non_finite}}
  cf: 1.0
  evidence: nan
""")
    assert any(message in p.message for p in info.value.problems), [p.message for p in info.value.problems]


def test_schema_errors_point_at_the_field_with_a_suggestion(tmp_path):
    with pytest.raises(RuleFileError) as info:
        load(tmp_path, """\
- id: my.rule
  type: cause
  emits: my_cause
  when: {context: 'lr > 1'}
  cf: 1.5
  evidnce: e
""")
    problems = {p.message: (p.line, p.col) for p in info.value.problems}
    assert problems["unknown field 'evidnce' (did you mean 'evidence'?)"] == (15, 5)
    assert problems["rules.0.cf: Input should be less than or equal to 1"] == (14, 9)
    assert "missing required field 'evidence' in rules.0" in problems


def test_compile_expression_refuses_unknown_symbols_with_suggestion():
    with pytest.raises(ExpressionError, match="did you mean 'precision'"):
        compile_expression('precison == "fp16"', CONTEXT_TYPES)


def test_expressions_keep_their_own_symbol_types_when_others_are_compiled_between():
    # One rule-engine Context serves every parse; each expression keeps the types it was parsed with.
    import rule_engine

    from diag.engine.expressions import evaluate

    as_number = compile_expression("x > 1", {"x": rule_engine.DataType.FLOAT})
    as_text = compile_expression('x == "a"', {"x": rule_engine.DataType.STRING})
    with pytest.raises(ExpressionError, match="unknown name 'y'.*did you mean 'x'"):
        compile_expression("y > 1", {"x": rule_engine.DataType.FLOAT})
    with pytest.raises(ExpressionError):
        compile_expression('x > 1', {"x": rule_engine.DataType.STRING})  # a string compared with a number
    assert evaluate(as_number, {"x": 2.0}) is True and evaluate(as_text, {"x": "a"}) is True
    assert as_number.symbols == {"x"} and as_text.symbols == {"x"}
