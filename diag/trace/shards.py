"""Check that the shards of a multi-process run fit together before they are merged.

Each process of a multi-host run writes its own shard (``run.p0.jsonl``, ``run.p1.jsonl``, ...)
whose header names the process (``process_index``) and how many there are (``world_size``).
Merging two shards that claim the same process would count its steps twice; merging with one
missing would describe part of the run as the whole. Neither happens silently: each is a
``Problem`` of the loaded trace, naming the files.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from diag.errors import Problem
from diag.trace.records import Header


def shard_problems(folder: str, shards: list[tuple[str, list[Header]]]) -> list[Problem]:
    """Duplicate and missing processes among the shards of one folder (one run).

    Each process makes up its own ``run_id`` unless told one, so the folder, not the id, is the
    run: shards are matched by ``process_index`` against the largest ``world_size`` they state.

    Args:
      folder: the folder being loaded (where a missing shard is reported).
      shards: each shard file with the header records it held, in load order.

    Returns:
      One error per process claimed by more than one shard, and one per process index below
      the headers' ``world_size`` that no shard holds.

    Example:
      >>> h = lambda i: Header(run_id="r", framework="jax", world_size=3, process_index=i)
      >>> for p in shard_problems("run", [("run/a.jsonl", [h(0)]), ("run/b.jsonl", [h(0)])]):
      ...     print(p.message)
      process 0 is claimed by 2 shards (a.jsonl, b.jsonl): merging them would count its steps twice; keep one
      process 1 of 3 has no shard: the merged trace covers 1 of 3 processes
      process 2 of 3 has no shard: the merged trace covers 1 of 3 processes
    """
    claims: dict[int, list[str]] = defaultdict(list)
    world = 1
    for path, headers in shards:
        for index in sorted({h.process_index for h in headers}):
            claims[index].append(path)
        world = max([world, *(h.world_size or 1 for h in headers)])
    problems = []
    for index, paths in sorted(claims.items()):
        if len(paths) > 1:
            names = ", ".join(Path(p).name for p in paths)
            problems.append(Problem(folder, f"process {index} is claimed by {len(paths)} shards ({names}): "
                                    "merging them would count its steps twice; keep one", field="process_index"))
    for index in range(world):
        if index not in claims:
            problems.append(Problem(folder, f"process {index} of {world} has no shard: the merged trace covers "
                                    f"{len(claims)} of {world} processes", field="process_index"))
    return problems
