"""Every value of a clause is checked by the clause's pydantic model: a wrong type or range is an
error at the value's own line and column, naming the field (issue 22: no catch-all "wrong form").
"""

from __future__ import annotations

import pytest

from diag.engine.kb import load_knowledge_base
from diag.engine.yamlloc import RuleFileError

RULE = """apiVersion: diag/v1
rules:
  - id: my.rule
    type: symptom
    title: t
    when: {when}
    cf: 0.5
    evidence: e
"""


@pytest.mark.parametrize("when, bad, message", [
    ("{signal: {series: 'layers.grad_norm', value: 1, layers: {min_frac: abc}}}", "abc",
     "signal layers.min_frac: input should be a valid number (got 'abc')"),
    ("{signal: {series: 'layers.grad_norm', value: 1, layers: {exclude_output: 3}}}", "3",
     "signal layers.exclude_output: input should be a valid boolean (got 3)"),
    ("{signal: {series: loss, value: 1, min_frac: 2}}", "2",
     "signal min_frac: input should be less than or equal to 1 (got 2)"),
    ("{signal: {series: loss, value: 1, min_frac: yes}}", "yes", "signal min_frac: input should be a valid number"),
    ("{signal: {series: loss, value: 1, non_finite_is_true: maybe}}", "maybe",
     "signal non_finite_is_true: input should be a valid boolean (got 'maybe')"),
    ("{signal: {series: loss, fn: gap, other: lr, other_smooth: abc, value: 1}}", "abc",
     "signal other_smooth: input should be a valid integer (got 'abc')"),
    ("{fact: my.rule-x, before: [1]}", "[1]", "fact before: input should be a valid string (got [1])"),
    ("{absent: some.fact, where: 7}", "7", "absent where: input should be a valid string (got 7)"),
    ("{record: {kind: data, where: [1]}}", "[1]", "record where: input should be a valid string (got [1])"),
    ("{record: {kind: data, ramp_of: 3, ramp: [0, 1]}}", "3", "record ramp_of: input should be a valid string"),
    ("{context: [1]}", "[1]", "context: takes an expression (a string such as 'lr > 0.1'), not a list"),
])
def test_a_clause_value_of_the_wrong_type_is_named_where_it_is(tmp_path, when, bad, message):
    (tmp_path / "r.yaml").write_text(RULE.format(when=when))
    with pytest.raises(RuleFileError) as caught:
        load_knowledge_base([str(tmp_path)], use_env=False)
    (problem,) = [p for p in caught.value.problems if p.path.endswith("r.yaml")]
    assert message in problem.message
    assert (problem.line, problem.col) == (6, len("    when: ") + when.index(bad) + 1)


def test_well_typed_values_still_load(tmp_path):
    when = ("{signal: {series: 'layers.grad_norm', fn: value, op: '>', value: 1, for: 2, at: any, min_frac: 0.5, "
            "smooth: 3, within: {from: '10%', to: 500}, layers: {min_frac: 0.25, exclude_output: true}, "
            "non_finite_is_true: false, ramp: [1, 2], as: big}}")
    (tmp_path / "r.yaml").write_text(RULE.format(when=when))
    clause = load_knowledge_base([str(tmp_path)], use_env=False).rules["my.rule"].when
    assert (clause.min_frac, clause.layers_min_frac, clause.exclude_output, clause.smooth) == (0.5, 0.25, True, 3)
