"""The README's promises: its example records are valid, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import TypeAdapter

from diag.cli import COMMAND_MODULES, build_parser
from diag.trace.records import RECORD_KINDS, Record

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_records_are_valid_and_cover_every_kind():
    text = README.read_text()
    block = re.search(r"One record of each kind:\n\n```json\n(.*?)```", text, re.S).group(1)
    adapter = TypeAdapter(Record)
    kinds = set()
    for line in block.strip().splitlines():
        record = adapter.validate_json(line)
        kinds.add(record.kind)
    assert kinds == set(RECORD_KINDS)


def test_every_command_is_documented_in_the_readme_and_its_help_has_an_example():
    text = README.read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert subparsers.choices, "no commands registered"
    for name, sub in subparsers.choices.items():
        assert name in {m for m in COMMAND_MODULES}
        assert f"diag {name}" in text, f"`diag {name}` is not documented in the README"
        assert "Example" in (sub.description or "") or "Example" in (sub.epilog or ""), f"diag {name} --help has no example"


def test_custom_rule_walkthrough_works_as_written(tmp_path):
    """The README's 'adding your own rule' commands, run as a user would, print what it shows."""
    import subprocess
    import sys

    text = README.read_text()
    block = re.search(r"### The knowledge base, and adding your own rule.*?```console\n(.*?)```", text, re.S).group(1)
    examples = README.parent / "examples"
    commands, expected = [], {}
    for line in block.splitlines():
        if line.startswith("$ diag "):
            command = line[2:].split("  #")[0].strip()
            commands.append(command)
            expected[command] = []
        elif commands and line.strip():
            expected[commands[-1]].append(line.strip())
    assert len(commands) >= 5
    assert sum(len(lines) for lines in expected.values()) >= 5, "the walkthrough shows no output to compare"
    for command in commands:
        args = command.split()[1:]
        args = [str(examples / a[len("examples/"):]) if a.startswith("examples/") else a for a in args]
        out = subprocess.run([sys.executable, "-m", "diag", *args], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, (command, out.stderr)
        lines = [line.strip() for line in out.stdout.splitlines()]
        for want in expected[command]:
            assert want in lines, f"`{command}` no longer prints {want!r}"
