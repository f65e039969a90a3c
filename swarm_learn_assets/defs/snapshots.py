"""Stage 3: episodes + records → one statistics snapshot per session."""

import dagster as dg

from ..core.episodes.task_counts import judged
from ..core.stages.session_batch import SnapshotSummary
from ..core.storage.layout import DataLayout
from .episodes import EPISODES
from .metadata import markdown_table

SESSION_SNAPSHOT = dg.AssetKey("session_snapshot")
TOTALS_CHECK = dg.AssetCheckSpec("snapshot_totals_match_episodes", asset=SESSION_SNAPSHOT)

session_snapshot_spec = dg.AssetSpec(
    SESSION_SNAPSHOT,
    deps=[EPISODES],
    group_name="sessions",
    kinds={"json", "duckdb"},
    description="Per-session transitions, n-grams, action, contextual and strategy statistics.",
)


def session_snapshot_result(
    layout: DataLayout, summary: SnapshotSummary, episode_outcomes: dict[str, int]
) -> dg.MaterializeResult:
    """Totals and top n-grams; the check compares the snapshots' episode counts with the episodes'."""
    episodes_total, episodes_success = summary.total_episodes, summary.success_episodes
    judged_episodes, judged_successes = judged(episode_outcomes)
    top = sorted(summary.ngrams.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
    return dg.MaterializeResult(
        asset_key=SESSION_SNAPSHOT,
        metadata={
            "dagster/row_count": summary.sessions,
            "total_episodes": episodes_total,
            "success_episodes": episodes_success,
            "total_actions": summary.total_actions,
            "top_ngrams": markdown_table(
                ["n-gram", "success", "failure"], [(" → ".join(k), s, f) for k, (s, f) in top]
            ),
            "snapshots_path": dg.MetadataValue.path(str(layout.folder("snapshots"))),
        },
        check_results=[
            dg.AssetCheckResult(
                asset_key=SESSION_SNAPSHOT,
                check_name=TOTALS_CHECK.name,
                passed=(episodes_total, episodes_success) == (judged_episodes, judged_successes),
                metadata={
                    "snapshot_episodes": episodes_total,
                    "episode_files": judged_episodes,
                    "snapshot_successes": episodes_success,
                    "episode_file_successes": judged_successes,
                },
            )
        ],
    )
