"""The user cache that makes `diag explain` start fast: parsed rule files and rule-engine's parser tables.

It must be invisible: the same knowledge base and the same diagnosis with or without it, an
edited rule file read again, and a corrupt, hostile, unwritable or foreign cache costing only
speed (never a crash, a message, or a rule the files do not hold).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diag.engine.kb import load_knowledge_base
from diag.engine.kb import cache as kb_cache
from diag.engine.yamlloc import RuleFileError, load_yaml_text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "healthy.jsonl"

USER_RULE = """apiVersion: diag/v1
rules:
  - id: my.spike
    type: symptom
    title: Loss over {limit}
    when:
      all:
        - signal: {{series: loss, fn: value, op: ">", value: {limit}}}
        - context: 'lr > 0'
    cf: 0.5
    evidence: "the loss reached {{{{ signal.peak | sci }}}} at step {{{{ signal.first_step }}}}"
"""


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DIAG_CACHE_DIR", str(folder))
    return folder


def summary(kb) -> list:
    """What a knowledge base decides with: rules in order, their conditions, evidence and positions."""
    return [(rid, kb.rules[rid].path, kb.rules[rid].pos, kb.rules[rid].spec.model_dump(),
             [(c.kind, c.text, c.pos) for c in kb.rules[rid].when.walk()], kb.rules[rid].evidence.text)
            for rid in kb.order] + sorted((c.id, c.spec.model_dump_json()) for c in kb.causes.values())


def no_yaml(monkeypatch) -> list:
    """Make parsing YAML fail loudly, and count the attempts."""
    calls = []

    def refuse(text, path="<string>"):
        calls.append(path)
        raise AssertionError(f"parsed YAML of {path} although the cache holds it")

    monkeypatch.setattr("diag.engine.kb.files.load_yaml_text", refuse)
    return calls


def test_a_second_load_comes_from_the_cache_and_is_the_same_knowledge_base(cache_dir, monkeypatch):
    first = load_knowledge_base(use_env=False)
    assert (cache_dir / kb_cache.CACHE_FILE).is_file()
    no_yaml(monkeypatch)
    second = load_knowledge_base(use_env=False)
    assert summary(second) == summary(first)


def test_a_cached_load_diagnoses_exactly_as_a_fresh_one(cache_dir, monkeypatch):
    from diag.engine.api import diagnose
    from diag.trace import load_trace

    trace = load_trace(ROOT / "examples" / "lr_too_high.jsonl")
    fresh = diagnose(trace, kb=load_knowledge_base(use_env=False)).to_json()
    no_yaml(monkeypatch)
    assert diagnose(trace, kb=load_knowledge_base(use_env=False)).to_json() == fresh


def test_an_edited_rule_file_is_read_again(cache_dir, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.yaml").write_text(USER_RULE.format(limit=5))
    assert load_knowledge_base([str(rules)], use_env=False).rules["my.spike"].spec.title == "Loss over 5"
    (rules / "mine.yaml").write_text(USER_RULE.format(limit=7))
    assert load_knowledge_base([str(rules)], use_env=False).rules["my.spike"].spec.title == "Loss over 7"


def test_a_broken_rule_file_is_reported_the_same_from_the_cache(cache_dir, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text(USER_RULE.format(limit=5).replace("lr > 0", "lr > learning_rat"))
    messages = []
    for _ in range(2):  # the second load reads the document from the cache
        with pytest.raises(RuleFileError) as caught:
            load_knowledge_base([str(rules)], use_env=False)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "bad.yaml:9:20: rule my.spike: unknown name 'learning_rat'" in messages[0]


@pytest.mark.parametrize("damage", [
    b"",
    b"{not json",
    b'{"format": 1, "code": "x", "entries": []}',
    b"\xff\xfe garbage",
    "truncated",
    "wrong types",
    "nested too deep",
])
def test_a_corrupt_cache_is_ignored_and_written_again(cache_dir, monkeypatch, damage):
    expected = summary(load_knowledge_base(use_env=False))
    path = cache_dir / kb_cache.CACHE_FILE
    good = path.read_bytes()
    if damage == "truncated":
        damage = good[: len(good) // 2]
    elif damage == "wrong types":
        raw = json.loads(good)
        for entry in raw["entries"].values():
            entry["doc"] = {"m": [1, 1], "i": [["id", "1", 1, 1, 1, "x"]]}
        damage = json.dumps(raw).encode()
    elif damage == "nested too deep":
        raw = json.loads(good)
        key = next(iter(raw["entries"]))
        raw["entries"][key]["doc"] = _nested_lists(200)
        damage = json.dumps(raw).encode()
    path.write_bytes(damage)
    assert summary(load_knowledge_base(use_env=False)) == expected
    no_yaml(monkeypatch)  # the load above wrote a sound cache again
    assert summary(load_knowledge_base(use_env=False)) == expected


def _nested_lists(depth: int) -> dict:
    """A cached document of lists nested ``depth`` deep, in the cache's format."""
    doc = {"l": [1, 1], "i": []}
    for _ in range(depth):
        doc = {"l": [1, 1], "i": [[1, 1, doc]]}
    return doc


@pytest.mark.parametrize("doc, reason", [
    ({"m": ["one", 2], "i": []}, "bad position"),
    ({"m": [1, 1], "i": [["id", "1", 1, 1, 1, "x"]]}, "bad position"),
    ({"m": [1, 1], "i": [["id", True, 1, 1, 1, "x"]]}, "bad position"),
    ({"m": [1, 1], "i": [["id", 1, 1, 1, "x"]]}, "bad entry"),
    ({"m": [1, 1], "i": [["id", 1, 1, 1, 1, "x"], ["id", 2, 1, 2, 1, "y"]]}, "bad key"),
    ({"l": [1, 1], "i": [[1, "x"]]}, "bad list item"),
    ({"l": [1, 1], "i": [[1, 1.5, "x"]]}, "bad position"),
    (_nested_lists(100), "too deep"),
])
def test_a_cached_document_encode_could_not_have_made_is_refused(doc, reason):
    # Each is refused by the check its reason names, not by an earlier one.
    with pytest.raises(ValueError, match=reason):
        kb_cache.decode(doc)
    assert kb_cache.decode(_nested_lists(60)).pos == (1, 1)  # deep, but within the limit: decoded


def test_a_hostile_cache_entry_can_do_no_more_than_a_rule_file(cache_dir, tmp_path):
    """A cache entry marked 'compiled cleanly' still goes through every check a rule file does."""
    rules = tmp_path / "rules"
    rules.mkdir()
    text = USER_RULE.format(limit=5)
    (rules / "mine.yaml").write_text(text)
    load_knowledge_base([str(rules)], use_env=False)
    path = cache_dir / kb_cache.CACHE_FILE
    raw = json.loads(path.read_bytes())
    hostile = load_yaml_text(text.replace("lr > 0", "lr.__class__ > 0"), "mine.yaml")
    raw["entries"][kb_cache.text_key(text)] = {"doc": kb_cache.encode(hostile), "clean": True}
    path.write_text(json.dumps(raw))
    with pytest.raises(RuleFileError, match="double underscores"):
        load_knowledge_base([str(rules)], use_env=False)


def run_explain(env_updates: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_updates}
    return subprocess.run([sys.executable, "-m", "diag", "explain", str(EXAMPLE)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_explain_works_where_no_cache_can_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with_cache = run_explain({"DIAG_CACHE_DIR": str(tmp_path / "cache")})
    without = run_explain({"DIAG_CACHE_DIR": str(blocker / "cache")})  # its parent is a file
    assert without.returncode == with_cache.returncode == 0
    assert without.stdout == with_cache.stdout
    assert without.stderr == with_cache.stderr  # no message about the cache, no traceback


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="owners and permission bits are POSIX")
def test_a_cache_folder_others_can_write_to_is_not_trusted(cache_dir, monkeypatch):
    load_knowledge_base(use_env=False)
    cache_dir.chmod(0o777)
    calls = []
    original = kb_cache.DocumentCache.get

    def counting_get(self, text):
        found = original(self, text)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(kb_cache.DocumentCache, "get", counting_get)
    load_knowledge_base(use_env=False)
    assert calls and not any(calls)


PARSER_PROBE = ("import diag.engine.parser_tables as p; from diag.engine import expressions as e; "
                "x = e.compile_expression('lr > 0.1 and task == \"t\"', {'lr': e.FLOAT, 'task': e.STRING}); "
                "print(p.tables_from_cache, e.evaluate(x, {'lr': 0.5, 'task': 't'}))")


def probe_parser(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIAG_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", PARSER_PROBE], env=env, capture_output=True, text=True, timeout=300)


def test_rule_engine_parser_tables_are_built_once_then_read_from_the_cache(tmp_path):
    first, second = probe_parser(tmp_path), probe_parser(tmp_path)
    assert (first.stdout, first.stderr) == ("False True\n", "")
    assert (second.stdout, second.stderr) == ("True True\n", "")


@pytest.mark.parametrize("damage", ["garbage", "state out of range", "callback not a grammar method", "other install"])
def test_damaged_parser_tables_are_rebuilt_silently(tmp_path, damage):
    from diag.engine.parser_tables import TABLES_FILE

    probe_parser(tmp_path)
    path = tmp_path / TABLES_FILE
    tables = json.loads(path.read_text())
    if damage == "garbage":
        path.write_text("{]")
    else:
        if damage == "state out of range":
            row = next(iter(tables["action"].values()))
            row[next(iter(row))] = 10_000
        elif damage == "callback not a grammar method":
            tables["productions"][1][3] = "__init__"
        else:
            tables["source"][0] = "/elsewhere/rule_engine"
        path.write_text(json.dumps(tables))
    again = probe_parser(tmp_path)
    assert (again.stdout, again.stderr) == ("False True\n", "")
    assert probe_parser(tmp_path).stdout == "True True\n"  # rebuilt and written back
