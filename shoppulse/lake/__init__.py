"""The lake: one Delta Lake table (local path or S3) holding events, late events and quarantined messages.

Writers: :mod:`shoppulse.lake.drain` (Kafka -> lake, offsets as Delta app transactions) and optimize /
vacuum (:mod:`shoppulse.lake.compaction`). Readers pin a table version and use
:func:`shoppulse.lake.layout.read_partition` for the exact file set of one day.
"""

from shoppulse.lake.table import (
    LakeLogUnavailableError,
    committed_offsets,
    events_added,
    table_version,
)

__all__ = ["LakeLogUnavailableError", "committed_offsets", "events_added", "table_version"]
