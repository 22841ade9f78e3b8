"""Launch an asset backfill the way the Dagster UI does, from Python (benchmarks, tests, scripts).

The UI's "Materialize selected → partitions range" creates a `PartitionBackfill` that the daemon's
backfill loop turns into runs, honouring each asset's `BackfillPolicy` (single_run: one run per range).
`run_asset_backfill` does the same in the calling process: it loads the code location in process,
records the backfill, and drives the daemon's backfill iteration until the backfill is done. Runs go
through the instance's run coordinator and launcher (use a synchronous launcher for an in-process run).
"""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration

from shoppulse.settings import CODE_LOCATION_MODULE

DONE = {
    BulkActionStatus.COMPLETED,
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}
IN_PROCESS_RUNS = {
    "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
    "run_launcher": {
        "module": "dagster._core.launcher.sync_in_memory_run_launcher",
        "class": "SyncInMemoryRunLauncher",
    },
}
"""Instance settings that launch each submitted run at once and execute it in the submitting process."""


@dataclass(frozen=True)
class BackfillOutcome:
    backfill_id: str
    status: BulkActionStatus
    run_ids: list[str]
    seconds: float


def run_asset_backfill(
    instance: DagsterInstance,
    assets: Sequence[str],
    partition_keys: Sequence[str],
    module_name: str = CODE_LOCATION_MODULE,
    attribute: str = "defs",
    timeout_seconds: float = 900.0,
) -> BackfillOutcome:
    """Backfill `assets` over `partition_keys` as the UI would, and wait until the backfill is done."""
    began = time.monotonic()
    logger = logging.getLogger("shoppulse.backfill")
    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name=module_name, attribute=attribute))
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace:
        asset_graph = workspace.create_request_context().asset_graph
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id=make_new_backfill_id(),
            asset_graph=asset_graph,
            partition_names=list(partition_keys),
            asset_selection=[AssetKey(name) for name in assets],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=f"{len(partition_keys)} days of {', '.join(assets)}",
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        while True:
            for error in execute_backfill_iteration(workspace, logger):
                if error is not None:
                    raise RuntimeError(f"backfill iteration failed: {error.to_string()}")
            current = instance.get_backfill(backfill.backfill_id)
            assert current is not None
            if current.status in DONE:
                break
            if time.monotonic() - began > timeout_seconds:
                raise TimeoutError(f"backfill {backfill.backfill_id} still {current.status} after {timeout_seconds}s")
            time.sleep(0.05)
    run_ids = [r.run_id for r in instance.get_runs() if r.tags.get(BACKFILL_ID_TAG) == backfill.backfill_id]
    return BackfillOutcome(backfill.backfill_id, current.status, run_ids, time.monotonic() - began)
