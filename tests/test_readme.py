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
