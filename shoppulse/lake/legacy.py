"""Adopt a lake written by the home-made commit log (before the Delta table) in place, once.

That lake kept, per partition, ``<table>/<key>=<date>/_manifest.json`` naming its live Parquet files,
and the Kafka offsets in ``_log/<seq>.json``. One Delta commit adds exactly the manifests' files (where
they lie: add actions name them by relative path with explicit partition values) and records the
newest commit record's offsets as app transactions, so the drain resumes exactly where the old one
stopped. The commit also carries an app transaction named for ``shoppulse-legacy-import``: a second import
(another process doing the same at once included) finds it, or is refused by the commit's check.
Files no manifest lists (compacted away) are not adopted; vacuum deletes them after its retention.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from deltalake.transaction import AddAction

from shoppulse.lake.layout import LakeTable
from shoppulse.lake.table import DATE_COLUMN, KIND_COLUMN, LakeRef, app_id, is_remote, open_table
from shoppulse.lake.writer import StaleOffsetsError, commit_files

IMPORT_APP_ID = "shoppulse-legacy-import"
LEGACY_KEYS = {LakeTable.EVENTS: "event_date", LakeTable.QUARANTINE: "received_date", LakeTable.LATE: "received_date"}


def legacy_lake(lake: LakeRef) -> bool:
    """Whether `lake` holds a commit-log lake (``_log/_applied``)."""
    return not is_remote(lake) and (Path(lake) / "_log" / "_applied").exists()


def _newest_offsets(lake: Path) -> dict[str, dict[str, int]]:
    seq = int((lake / "_log" / "_applied").read_text().strip() or 0)
    while seq > 0:
        record = lake / "_log" / f"{seq:020d}.json"
        if record.exists():
            return json.loads(record.read_text()).get("offsets", {})
        seq -= 1
    return {}


def import_legacy(lake: LakeRef) -> int | None:
    """Adopt the commit-log lake at `lake` into its Delta table. Returns the new table version, or None
    when there is nothing to adopt (not a legacy lake, or already imported)."""
    if not legacy_lake(lake):
        return None
    root = Path(lake)
    table = open_table(root)
    if table.transaction_version(app_id(IMPORT_APP_ID, 0)) is not None:
        return None
    adds = []
    now = int(time.time() * 1000)
    for kind, key in LEGACY_KEYS.items():
        for manifest_path in sorted((root / kind.value).glob(f"{key}=*/_manifest.json")):
            day = manifest_path.parent.name.split("=", 1)[1]
            for name, info in sorted(json.loads(manifest_path.read_text())["files"].items()):
                path = manifest_path.parent / name
                adds.append(
                    AddAction(
                        path=str(path.relative_to(root)),
                        size=path.stat().st_size,
                        partition_values={KIND_COLUMN: kind.value, DATE_COLUMN: day},
                        modification_time=now,
                        data_change=True,
                        stats=json.dumps({"numRecords": int(info.get("rows", 0))}),
                    )
                )
    offsets = {(topic, int(p)): int(o) for topic, parts in _newest_offsets(root).items() for p, o in parts.items()}
    offsets[(IMPORT_APP_ID, 0)] = 1
    try:
        return commit_files(table, adds, offsets=offsets, metadata={"kind": "legacy-import", "files": len(adds)})
    except StaleOffsetsError:
        return None  # another process imported it at the same moment
