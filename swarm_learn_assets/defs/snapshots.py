"""Stage 3: episodes + records → one statistics snapshot per session."""

import dagster as dg
from ..core.snapshot import DEFAULT_NGRAM_ORDERS, check_ngram_orders
from ..core.stages import build_session_snapshots, count_task_outcomes
from .episodes import episodes
from .metadata import markdown_table
from .partitions import SESSION_BACKFILL, sessions_partitions
from .resources import SwarmData


class SnapshotConfig(dg.Config):
    """N-gram orders to count (3 to 10); the engine itself only manages 3."""

    ngram_orders: list[int] = list(DEFAULT_NGRAM_ORDERS)


@dg.asset(
    partitions_def=sessions_partitions,
    backfill_policy=SESSION_BACKFILL,
    deps=[episodes],
    group_name="sessions",
    kinds={"json", "duckdb"},
    check_specs=[dg.AssetCheckSpec("snapshot_totals_match_episodes", asset="session_snapshot")],
    description="Per-session transitions, n-grams, action, contextual and strategy statistics.",
)
def session_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, swarm_data: SwarmData
) -> dg.MaterializeResult:
    layout = swarm_data.layout
    keys = context.partition_keys
    snapshots = build_session_snapshots(layout, keys, check_ngram_orders(config.ngram_orders))
    metas = [s["metadata"] for s in snapshots.values()]
    episodes_total = sum(m["total_episodes"] for m in metas)
    episodes_success = sum(m["success_episodes"] for m in metas)
    on_disk = count_task_outcomes(layout, keys)
    on_disk_total = on_disk.get("success", 0) + on_disk.get("failure", 0) + on_disk.get("timeout", 0)
    on_disk_success = on_disk.get("success", 0)
    grams: dict[tuple, list[int]] = {}
    for snap in snapshots.values():
        for g in snap["ngrams"]:
            acc = grams.setdefault(tuple(g["gram"]), [0, 0])
            acc[0] += g["success"]
            acc[1] += g["failure"]
    top = sorted(grams.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(snapshots),
            "total_episodes": episodes_total,
            "success_episodes": episodes_success,
            "total_actions": sum(m["total_actions"] for m in metas),
            "top_ngrams": markdown_table(
                ["n-gram", "success", "failure"], [(" → ".join(k), s, f) for k, (s, f) in top]
            ),
            "snapshots_path": dg.MetadataValue.path(str(layout.root / "snapshots")),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="snapshot_totals_match_episodes",
                passed=(episodes_total, episodes_success) == (on_disk_total, on_disk_success),
                metadata={
                    "snapshot_episodes": episodes_total,
                    "episode_files": on_disk_total,
                    "snapshot_successes": episodes_success,
                    "episode_file_successes": on_disk_success,
                },
            )
        ],
    )

