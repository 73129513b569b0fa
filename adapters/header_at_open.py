"""Write a trace's header the moment a recorder opens, and complete it once the first step ran.

A run killed before its first step (during compilation, in the data loader's start-up) used to
leave an empty file: both adapters learn the forward order of the layers from the first forward
pass, so they waited for it to write the header. Now the header is written and flushed at once,
with the layers in definition order and ``recording["header"] = "provisional"``; once the first
step has revealed the forward order, that line is replaced by the complete header. Nothing else
is written in between (the recorders hold other records until the header is final), so the
replacement truncates the file back to where the provisional header began and appends the
final one: the file holds exactly one header, as every reader expects, at every moment except
the instant between the two system calls.
"""

from __future__ import annotations

import os

from diag.trace.records import Header
from diag.trace.writer import TraceWriter


class HeaderAtOpen:
    """The header line of one recorder's shard: provisional at open, final after the first step.

    Args:
      writer: the shard's writer; nothing may have been written through it yet by this recorder.

    Example:
      >>> import tempfile, os
      >>> from diag.trace.records import Header
      >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
      >>> w = TraceWriter(path)
      >>> h = HeaderAtOpen(w)
      >>> h.write_provisional(Header(run_id="r", framework="flax"))
      >>> h.write_final(Header(run_id="r", framework="flax", model_name="MLP"))
      >>> w.close(); [line.count('"header"') for line in open(path)]
      [1]
    """

    def __init__(self, writer: TraceWriter):
        self.writer = writer
        self._offset: int | None = None
        self.final = False

    def write_provisional(self, header: Header) -> None:
        """Write ``header`` now and flush it to disk (marked provisional in ``recording``)."""
        self.writer.flush()
        self._offset = os.path.getsize(self.writer.path)
        header.recording = {**header.recording, "header": "provisional: the run stopped before its first step"}
        self.writer.write(header)
        self.writer.flush()
        self._end = os.path.getsize(self.writer.path)

    def write_final(self, header: Header) -> None:
        """Replace the provisional header by ``header`` (or just write it when there was none)."""
        if self.final:
            return
        self.final = True
        if self._offset is not None:
            self.writer.flush()
            # Only when the provisional header is still the last line (a writer shared with other
            # code may have taken more lines since: then both headers stay, the first one wins).
            if os.path.getsize(self.writer.path) == self._end:
                # The writer appends (O_APPEND): after the cut its next line lands at the new end.
                os.truncate(self.writer.path, self._offset)
        self.writer.write(header)
