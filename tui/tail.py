"""Read the complete lines appended to a growing file since the last read.

A training run appends whole JSONL lines, but a reader can still catch the file between the two
halves of a write (or find the torn last line of a killed run). ``JsonlTail`` keeps the byte offset
it has read up to and holds back an unterminated last line until its newline arrives, so every line
it returns is complete and each byte of the file is read once.
"""

from __future__ import annotations

import os
from pathlib import Path


class JsonlTail:
    """Incremental reader of the complete lines of an append-only file.

    Args:
      path: the file to follow. It may not exist yet; reads then return nothing.

    Example:
      >>> import tempfile, os
      >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
      >>> _ = open(path, "wb").write(b'{"a": 1}\\n{"b"')
      >>> tail = JsonlTail(path)
      >>> tail.read_lines()
      [(1, b'{"a": 1}')]
      >>> _ = open(path, "ab").write(b': 2}\\n')
      >>> tail.read_lines()
      [(2, b'{"b": 2}')]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.offset = 0
        self.line_number = 0
        self.restarted = False
        self._partial = b""
        self._inode: int | None = None

    @property
    def pending(self) -> bytes:
        """The unterminated last line held back until its newline arrives (empty when none)."""
        return self._partial

    @property
    def at_end(self) -> bool:
        """True when everything the file held at the last read has been returned."""
        try:
            return os.stat(self.path).st_size <= self.offset
        except FileNotFoundError:
            return True

    def read_lines(self, max_bytes: int = 8 << 20) -> list[tuple[int, bytes]]:
        """The complete lines written since the last call, each with its 1-based line number.

        Args:
          max_bytes: read at most this much per call (a large existing file is taken in chunks,
            so memory stays bounded and the caller can publish progress between them).

        When the file was truncated or replaced (a new run wrote over it) reading starts again from
        its beginning and ``restarted`` is set until the caller clears it.
        """
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return []
        if (self._inode is not None and stat.st_ino != self._inode) or stat.st_size < self.offset:
            self.offset, self.line_number, self._partial = 0, 0, b""
            self.restarted = True
        self._inode = stat.st_ino
        if stat.st_size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(max_bytes)
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        numbered = []
        for line in lines:
            self.line_number += 1
            numbered.append((self.line_number, line))
        return numbered
