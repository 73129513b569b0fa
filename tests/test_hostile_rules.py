"""Hostile rule folders are refused quickly, with ``file:line:col``, and never crash the loader.

A rule folder may come from anyone (a shared repository, a colleague's pull request). Each case
below is one hostile input; each test asserts the refusal and where it points. A watchdog alarm
turns a hang into a failure instead of a stuck suite (it bounds the test; it is not a timing
assertion: every case finishes in well under a second when the loader is right).
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from diag.engine.kb import load_knowledge_base
from diag.engine.ruletest import run_rule_tests
from diag.engine.yamlloc import MAX_RULE_FILE_BYTES, RuleFileError
from tests.rule_files import HEAD, cause_rule

WATCHDOG_SECONDS = 600  # generous: a loaded 2-core machine; a hang is what it catches


def rule(when: str, rule_id: str = "my.rule") -> str:
    return textwrap.indent(cause_rule(when, rule_id), "  ")


@pytest.fixture(autouse=True)
def watchdog():
    def hung(signum, frame):
        raise AssertionError(f"the rule loader ran past the {WATCHDOG_SECONDS} s watchdog")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(WATCHDOG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def refusal(folder: Path) -> list:
    with pytest.raises(RuleFileError) as info:
        load_knowledge_base(paths=[folder], use_env=False)
    return info.value.problems


def write(folder: Path, text: str | bytes, name: str = "r.yaml") -> Path:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------------- files


def test_an_alias_bomb_is_refused_at_its_first_alias(tmp_path):
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 12):
        prev, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        bomb.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    path = write(tmp_path, HEAD.replace("rules:\n", "") + "\n".join(bomb) + "\nrules: []\n")
    (problem,) = refusal(tmp_path)
    assert problem.path == str(path) and (problem.line, problem.col) == (10, 8)
    assert "alias *a is not allowed" in problem.message


def test_a_catastrophic_regular_expression_is_refused_before_it_is_compiled(tmp_path):
    path = write(tmp_path, HEAD + rule("""{context: '"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!" =~ "(a+)+$"'}"""))
    (problem,) = refusal(tmp_path)
    assert problem.path == str(path) and (problem.line, problem.col) == (13, 21)
    assert "regular-expression operators" in problem.message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "r.yaml")
    (problem,) = refusal(tmp_path)
    assert "not a regular file" in problem.message


def test_a_link_to_dev_zero_is_refused_without_reading_it(tmp_path):
    (tmp_path / "r.yaml").symlink_to("/dev/zero")
    (problem,) = refusal(tmp_path)
    assert "not a regular file" in problem.message


def test_a_50_mb_rule_file_is_refused_by_its_size(tmp_path):
    with open(tmp_path / "r.yaml", "wb") as f:
        f.write(HEAD.encode())
        f.truncate(50 << 20)  # sparse: the size is what is checked, before any read
    (problem,) = refusal(tmp_path)
    assert f"{50 << 20:,} bytes" in problem.message and f"{MAX_RULE_FILE_BYTES:,}" in problem.message


def test_a_folder_named_like_a_rule_file_is_refused_by_name(tmp_path):
    (tmp_path / "r.yaml").mkdir()
    (problem,) = refusal(tmp_path)
    assert problem.path == str(tmp_path / "r.yaml") and "is a folder" in problem.message


def test_a_file_that_is_not_utf8_is_refused_at_the_bad_byte(tmp_path):
    write(tmp_path, HEAD.encode() + rule("{context: 'lr > 1'}").replace("cf: 0.5", "cf: 0.5 \xff").encode("latin-1"))
    (problem,) = refusal(tmp_path)
    assert (problem.line, problem.col) == (14, 13) and "is not UTF-8" in problem.message


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b"], ids=["NUL", "BEL", "ESC"])
def test_control_characters_are_refused_where_they_are(tmp_path, character):
    write(tmp_path, HEAD + rule("{context: 'lr > 1'}").replace("evidence: e", f"evidence: e{character}x"))
    (problem,) = refusal(tmp_path)
    assert (problem.line, problem.col) == (15, 16) and "is not allowed in YAML" in problem.message


# ---------------------------------------------------------------------- size


def test_twenty_thousand_rules_load(tmp_path):
    # 1,000 rules a file (one file of 20,000 would pass the size limit).
    for chunk in range(20):
        head = HEAD if chunk == 0 else "apiVersion: diag/v1\nrules:\n"
        body = "".join(rule("{context: 'lr > 1'}", rule_id=f"my.rule-{chunk * 1000 + i}") for i in range(1000))
        write(tmp_path, head + body, name=f"r{chunk:02d}.yaml")
    kb = load_knowledge_base(paths=[tmp_path], use_env=False)
    assert len(kb.rules) == 20_000 and len(kb.order) == 20_000


# ---------------------------------------------------------------------- clause values


@pytest.mark.parametrize("when", [
    "{signal: {series: loss, fn: value, op: '>', value: abc}}",
    "{signal: {series: loss, fn: value, op: '>', value: [1, 2]}}",
    "{signal: {series: loss, fn: value, op: '>', value: {x: 1}}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1e999}}",
    "{signal: {series: loss, fn: value, op: '=>', value: 1}}",
    "{signal: {series: [loss], fn: value, op: '>', value: 1}}",
    "{signal: {series: loss, fn: 'avg(-3)', op: '>', value: 1}}",
    "{signal: {series: loss, fn: 'avg(1e30)', op: '>', value: 1}}",
    "{signal: {series: loss, fn: 'avg(99999999999999999999)', op: '>', value: 1}}",
    "{signal: {series: loss, fn: [avg], op: '>', value: 1}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, for: -1}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, for: 1e30}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, for: abc}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, at: sometimes}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, within: {from: abc}}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, within: 7}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, smooth: -5}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, smooth: 1e30}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, ramp: [1]}}",
    "{signal: {series: loss, fn: value, op: '>', value: 1, ramp: [a, b]}}",
    "{signal: {series: loss, fn: gap, other: [1], op: '>', value: 1}}",
    "{signal: {series: 'layers.grad_norm', fn: value, op: '>', value: 1, layers: {min_frac: abc}}}",
    "{fact: my_cause, before: [1]}",
    "{signal: 7}",
    "{signal: null}",
    "{record: {kind: nothing, where: 'x'}}",
    "{record: 7}",
    "{record: {kind: data, where: [1]}}",
    "{fact: [1, 2]}",
    "{absent: {x: 1}}",
    "{context: [1]}",
    "{all: 7}",
    "{not: [1, 2]}",
])
def test_a_malformed_clause_value_is_a_located_error_not_a_crash(tmp_path, when):
    write(tmp_path, HEAD + rule(when))
    problems = refusal(tmp_path)
    assert problems and all(p.line >= 13 for p in problems), [str(p) for p in problems]
    assert all(len(p.message) < 600 for p in problems)


# ---------------------------------------------------------------------- rule tests (synthetic traces)


def run_tests_of(tmp_path: Path, test_yaml: str):
    write(tmp_path, HEAD + rule("{context: 'lr > 1'}"))
    write(tmp_path, test_yaml, name="r.test.yaml")
    return run_rule_tests([tmp_path])


def test_a_synthetic_spec_of_billions_of_cells_is_refused_before_it_is_built(tmp_path):
    layers = ", ".join(f"l{i}" for i in range(600))
    series = "\n".join(f"          - {{series: 'layers.grad_norm{{layer=\"l{i}\"}}', values: '1x999999'}}"
                       for i in range(3))
    report = run_tests_of(tmp_path, f"""\
tests:
  - name: huge
    layers: [{layers}]
    input_series:
{series}
    expect: {{causes: []}}
""".replace("          - ", "      - "))
    (case,) = report.cases
    assert not case.passed and "bad test input" in case.failures[0] and "points" in case.failures[0]


@pytest.mark.parametrize("interval", ["1e30", "-1", "0", "abc", "[1]", "99999999999999999999"])
def test_a_step_interval_out_of_range_is_a_failed_case_not_a_crash(tmp_path, interval):
    report = run_tests_of(tmp_path, f"""\
step_interval: {interval}
tests:
  - name: odd interval
    input_series: [{{series: loss, values: '1x10'}}]
    expect: {{causes: []}}
""")
    (case,) = report.cases
    assert not case.passed and "step_interval" in case.failures[0]
