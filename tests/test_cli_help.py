"""Every command's and subcommand's --help ends with one or two examples, and the examples run."""

from __future__ import annotations

import argparse
import shlex
import shutil
from pathlib import Path

import pytest

from diag.cli import EXAMPLES_HEADING, build_parser, main
from diag.errors import EXIT_FINDINGS, EXIT_OK
from diag.sweep.cache import CACHE_DIR_ENV

REPO = Path(__file__).resolve().parent.parent

# Examples another test already runs as written (they train, compile, need a terminal, or run
# every rule test of the knowledge base): running them again here would only double the suite's time.
RUN_ELSEWHERE = {
    "diag tui examples/dead_relu.jsonl": "tests/test_tui_tmux.py (a terminal)",
    "diag tui examples/lr_too_high.jsonl --follow": "tests/test_tui_tmux.py (a terminal)",
    "diag demo dead_relu --out dead.jsonl": "tests/test_demo.py (trains a model)",
    "diag gradcheck examples/gradcheck_target.py:target_with_bug --trace checks.jsonl": "tests/test_gradcheck_cli.py",
    "diag explain checks.jsonl": "tests/test_gradcheck_cli.py (explains the trace gradcheck wrote)",
    "diag rules validate": "tests/test_rules_cli.py::test_builtin_knowledge_base_validates",
    "diag rules test": "tests/test_rules_cli.py::test_builtin_rule_tests_pass_and_end_with_the_count_line",
    "diag preflight examples/preflight_torch.py:healthy": "tests/test_preflight_cli.py (trains a model)",
    "diag preflight examples/preflight_torch.py:lr_too_high --only lr_range --format markdown":
        "tests/test_preflight_cli.py (trains a model)",
}


def registered_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("diag",)):
    """(command words, parser) for the top level and every command and subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from registered_commands(sub, (*path, name))


COMMANDS = list(registered_commands(build_parser()))


def help_examples(parser: argparse.ArgumentParser) -> list[str]:
    """The example lines that end a parser's help (empty when the help does not end with them)."""
    lines = parser.format_help().rstrip().splitlines()
    if EXAMPLES_HEADING not in lines:
        return []
    at = len(lines) - 1 - lines[::-1].index(EXAMPLES_HEADING)
    return [line.strip() for line in lines[at + 1:]]


def test_the_registered_commands_include_every_subcommand_of_rules():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"diag explain", "diag summary", "diag rules", "diag rules list", "diag rules show",
            "diag rules validate", "diag rules test", "diag rules new", "diag rules schema"} <= names


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_ends_with_one_or_two_examples_of_the_command(path, parser):
    examples = help_examples(parser)
    command = " ".join(path)
    assert 1 <= len(examples) <= 2, (
        f"`{command} --help` must end with '{EXAMPLES_HEADING}' and one or two example lines; register the "
        f"command with diag.cli.add_command(..., examples=(...)) (see diag/cli/__init__.py)")
    assert all(e.startswith("diag ") for e in examples), examples
    if len(path) > 1:
        assert any(e == command or e.startswith(command + " ") for e in examples), (
            f"no example of `{command}` itself in {examples}")


def test_every_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """Run in order, in a fresh folder holding a copy of examples/, as a user would from a checkout."""
    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))  # diag sweep's cache
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    seen: list[str] = []
    for _, parser in COMMANDS:
        seen += [e for e in help_examples(parser) if e not in seen]
    ran = 0
    for example in seen:
        if example in RUN_ELSEWHERE:
            continue
        files_before = set(tmp_path.rglob("*"))
        code = main(shlex.split(example)[1:])
        out, err = capsys.readouterr()
        # 1 is a finding (a likely cause, a failed check), which an example may well show; 2 is bad input.
        assert code in (EXIT_OK, EXIT_FINDINGS), f"{example!r} exited {code}:\n{err[-2000:]}"
        assert out.strip() or set(tmp_path.rglob("*")) != files_before, f"{example!r} printed and wrote nothing"
        ran += 1
    assert ran >= 10
