"""Stage 2: validated records → episodes of both learn models."""

import dagster as dg

from ..core.episodes.task_counts import judged
from ..core.stages.session_batch import EpisodeSummary
from ..core.storage.layout import DataLayout
from .metadata import markdown_table, share
from .records import RAW_RECORDS

EPISODES = dg.AssetKey("episodes")
# Metadata keys of the per-session observations the training triggers count (see sessions.py).
TASK_EPISODES, TASK_SUCCESSES = "task_episodes", "task_successes"
UNIQUE_IDS_CHECK = dg.AssetCheckSpec("episode_ids_unique", asset=EPISODES, blocking=True)

episodes_spec = dg.AssetSpec(
    EPISODES,
    deps=[RAW_RECORDS],
    group_name="sessions",
    kinds={"parquet"},
    description="Episodes cut by the worker_task and worker_decision_sequence learn models.",
)


def episodes_result(layout: DataLayout, summary: EpisodeSummary) -> dg.MaterializeResult:
    """Counts, outcome breakdown, success rate and a preview; the unique-id check blocks downstream."""
    outcomes = summary.task_outcomes
    judged_episodes, judged_successes = judged(outcomes)
    duplicates = summary.duplicates
    return dg.MaterializeResult(
        asset_key=EPISODES,
        metadata={
            "dagster/row_count": summary.rows,
            "worker_task_outcomes": dg.MetadataValue.json(dict(sorted(outcomes.items()))),
            "success_rate": share(judged_successes, judged_episodes),
            # The whole batch's counts (the same on each of its partitions), for people; the
            # training triggers count the per-session observations instead.
            "episodes_by_scenario": dg.MetadataValue.json(summary.judged_by_scenario()),
            "preview": markdown_table(
                ["session", "worker", "outcome", "actions"],
                [(e["session_id"], e["worker_id"], e["outcome"], " → ".join(e["actions"])) for e in summary.preview],
            ),
            "episodes_path": dg.MetadataValue.path(str(layout.folder("episodes"))),
        },
        check_results=[
            dg.AssetCheckResult(
                asset_key=EPISODES, check_name=UNIQUE_IDS_CHECK.name, passed=duplicates == 0,
                metadata={"duplicates": duplicates},
            )
        ],
    )
