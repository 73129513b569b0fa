"""Which ``.jsonl`` files are not diag traces, told from their first line without importing anything heavy.

The trace reader, ``diag.api`` and the sweep's discovery call this before deciding whether a
file is a trace or a foreign log for the importers (``diag.adapters.importers``).
"""

from __future__ import annotations

import os
import re

_DIAG_RECORD = re.compile(rb'"(kind|schema)"\s*:\s*"(header|step|eval|data|check|event|diag\.)')
_HISTORY_ROW = re.compile(rb'^\s*\{.*"_step"\s*:', re.S)
_SNIFF = 1 << 12


def jsonl_may_be_history(path: str | os.PathLike) -> bool:
    """Whether a ``.jsonl`` file's first line is a W&B history row (``_step``), not a diag record.

    W&B histories are saved under any name (``run.history()`` written as JSON lines, an offline
    run's ``wandb-history.jsonl``), so the name cannot tell; the first line can, from its first 4 KB,
    without importing the importers (a diag trace's first line is a record with a ``kind``).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF)
    except OSError:
        return False  # unreadable: the trace reader says why
    first = head.split(b"\n", 1)[0]
    return bool(_HISTORY_ROW.match(first)) and not _DIAG_RECORD.search(first)


__all__ = ["jsonl_may_be_history"]
