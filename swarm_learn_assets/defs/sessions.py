"""The three session assets as one multi-asset: one pass per backfill batch, any subset selectable.

`raw_records`, `episodes` and `session_snapshot` are separate assets (own files, metadata, checks,
history in the UI), but computing them in one step lets a batch's records and episodes stay in
memory from the stage that makes them to the stage that uses them instead of being read back from
thousands of files. Selecting fewer assets (a re-run of `episodes` with new minimums, say) reads
the inputs the previous stage wrote.
"""

from collections.abc import Iterator

import dagster as dg

from ..core.episodes.task_counts import count_task_outcomes
from ..core.stages.session_batch import EPISODES, RECORDS, SNAPSHOTS, SessionSettings, process_sessions
from .episodes import TASK_EPISODES, TASK_SUCCESSES, UNIQUE_IDS_CHECK, episodes_result, episodes_spec
from .partitions import SESSION_BACKFILL, sessions_partitions
from .records import QUARANTINE_CHECK, raw_records_result, raw_records_spec
from .resources import SwarmData
from .snapshots import TOTALS_CHECK, session_snapshot_result, session_snapshot_spec

STEP_OF_ASSET = {raw_records_spec.key: RECORDS, episodes_spec.key: EPISODES, session_snapshot_spec.key: SNAPSHOTS}


class SessionConfig(dg.Config):
    """The rules' parameters: quarantine threshold, learn-model minimums, n-gram orders (3 to 10)."""

    max_quarantine_share: float = 0.05
    min_task_actions: int = SessionSettings.min_task_actions
    min_decision_actions: int = SessionSettings.min_decision_actions
    ngram_orders: list[int] = list(SessionSettings.ngram_orders)


@dg.multi_asset(
    name="session_assets",
    specs=[raw_records_spec, episodes_spec, session_snapshot_spec],
    check_specs=[QUARANTINE_CHECK, UNIQUE_IDS_CHECK, TOTALS_CHECK],
    partitions_def=sessions_partitions,
    backfill_policy=SESSION_BACKFILL,
    can_subset=True,
)
def session_assets(
    context: dg.AssetExecutionContext, config: SessionConfig, swarm_data: SwarmData
) -> Iterator[dg.MaterializeResult]:
    layout = swarm_data.layout
    keys = context.partition_keys
    steps = [step for key, step in STEP_OF_ASSET.items() if key in context.selected_asset_keys]
    settings = SessionSettings(config.min_task_actions, config.min_decision_actions, tuple(config.ngram_orders))
    context.log.info(f"{', '.join(steps)} for {len(keys)} session(s) under {layout.root}")
    batch = process_sessions(layout, keys, steps, settings)
    if RECORDS in steps:
        for failed in (r for r in batch.ingest if r.error):
            context.log.warning(failed.error)
        yield raw_records_result(layout, batch.ingest, config.max_quarantine_share)
    if EPISODES in steps:
        yield episodes_result(layout, batch.episodes)
        # One observation per session with its own counts: a multi-partition run copies its
        # metadata onto every partition, so the training triggers count sessions from these.
        for key, (tasks, successes) in sorted(batch.episodes.task_counts.items()):
            context.log_event(dg.AssetObservation(episodes_spec.key, partition=key, metadata={
                TASK_EPISODES: tasks, TASK_SUCCESSES: successes}))  # fmt: skip
    if SNAPSHOTS in steps:
        outcomes = batch.episodes.task_outcomes if EPISODES in steps else count_task_outcomes(layout, keys)
        yield session_snapshot_result(layout, batch.snapshots, outcomes)
