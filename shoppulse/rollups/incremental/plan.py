"""How a fold is cut into steps that each hold at most `max_events` events in memory.

Pure functions over row counts (from the Delta log and the snapshot's add actions); `fold_partition`
reads the counts and folds step by step.
"""

from __future__ import annotations

from collections.abc import Sequence


def fold_steps(added_rows: Sequence[tuple[int, int]], until_version: int, max_events: int) -> list[int]:
    """The table versions a backlog is folded up to, in order, the last being `until_version`.

    `added_rows` are (version, rows) of the commits after the state's version that added rows to the
    day, in version order. Each step (previous, v] adds at most `max_events` rows, unless one commit
    alone adds more (it is then a step of its own): steps end just before the commit that would overflow.
    """
    steps: list[int] = []
    pending = 0
    for version, rows in added_rows:
        if pending and pending + rows > max_events:
            steps.append(version - 1)
            pending = 0
        pending += rows
    steps.append(until_version)
    return steps


def file_chunks(file_rows: Sequence[int], max_events: int) -> list[range]:
    """Consecutive runs of files (index ranges) holding at most `max_events` rows each (a file with more
    is a chunk of its own); every file is in exactly one chunk, in order."""
    chunks: list[range] = []
    start, pending = 0, 0
    for index, rows in enumerate(file_rows):
        if pending and pending + rows > max_events:
            chunks.append(range(start, index))
            start, pending = index, 0
        pending += rows
    if start < len(file_rows):
        chunks.append(range(start, len(file_rows)))
    return chunks
