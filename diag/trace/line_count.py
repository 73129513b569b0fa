"""How many lines a trace file holds: the capacity a builder is made with before reading it.

A builder sized to an upper bound on the step records never regrows its columns. Counting the
newlines reads the whole file; a large file of alike lines is sized from three samples instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diag.trace.limits import MAX_LINE_BYTES

_SAMPLE_BYTES = 1 << 18


def estimate_lines(path: Path) -> int | None:
    """A little more than the lines of a large file of alike lines, from three samples; else None.

    The samples (256 KiB at the start after the first line, the middle and the end) cost a few
    reads where counting reads the whole file. When their mean line lengths differ by more than 5%
    or a sample holds fewer than 16 lines, the file is not one of alike lines and None says to
    count. The estimate takes the shortest mean (the most lines) and adds 2%: a builder sized
    by it holds the rows without regrowing, and a file that fooled the samples only makes it grow.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            first = len(f.readline(MAX_LINE_BYTES + 1))  # the header: longer than the records
            body = size - first
            if body < 8 * _SAMPLE_BYTES:
                return None  # counting a small file costs little
            lengths = []
            for at in (first, first + body // 2, size - _SAMPLE_BYTES):
                f.seek(at)
                sample = f.read(_SAMPLE_BYTES)
                start = 0 if at == first else sample.find(b"\n") + 1  # after a line cut by the sample
                end = sample.rfind(b"\n") + 1
                lines = sample.count(b"\n", start, end)
                if lines < 16:
                    return None
                lengths.append((end - start) / lines)
    except OSError:
        return None
    if max(lengths) > 1.05 * min(lengths):
        return None
    return 1 + int(body / min(lengths) * 1.02) + 64


def count_lines(path: Path) -> int:
    """Newlines in a file, read in large chunks (a cheap upper bound on its records)."""
    # numpy compares bytes about four times faster than bytes.count finds b"\n" in JSON text.
    total = 0
    buffer = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        while size := f.readinto(buffer):
            total += int(np.count_nonzero(np.frombuffer(buffer, dtype=np.uint8, count=size) == 10))
    return total + 1
