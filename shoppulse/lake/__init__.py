"""The Parquet lake: date-partitioned tables with per-partition manifests and a commit log.

Writers: :mod:`shoppulse.lake.drain` (Kafka -> lake) and compaction. Readers use
:func:`shoppulse.lake.layout.read_partition` to get the exact, consistent file set of one day.
"""
