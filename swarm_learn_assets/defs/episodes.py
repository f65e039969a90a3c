"""Stage 2: validated records → episodes of both learn models."""

import dagster as dg
import pyarrow.compute as pc

from ..core.learn_models import WORKER_TASK
from ..core.stages import build_session_episodes
from .metadata import markdown_table, share
from .partitions import SESSION_BACKFILL, sessions_partitions
from .records import raw_records
from .resources import SwarmData


class EpisodesConfig(dg.Config):
    """Minimum actions per episode, as in the reference learn models."""

    min_task_actions: int = 2
    min_decision_actions: int = 3


@dg.asset(
    partitions_def=sessions_partitions,
    backfill_policy=SESSION_BACKFILL,
    deps=[raw_records],
    group_name="sessions",
    kinds={"parquet", "duckdb"},
    check_specs=[dg.AssetCheckSpec("episode_ids_unique", asset="episodes", blocking=True)],
    description="Episodes cut by the worker_task and worker_decision_sequence learn models.",
)
def episodes(context: dg.AssetExecutionContext, config: EpisodesConfig, swarm_data: SwarmData) -> dg.MaterializeResult:
    layout = swarm_data.layout
    table = build_session_episodes(
        layout, context.partition_keys, config.min_task_actions, config.min_decision_actions
    )
    ids = table.column("episode_id")
    duplicates = len(ids) - len(pc.unique(ids))
    tasks = table.filter(pc.equal(table.column("learn_model"), WORKER_TASK))
    outcomes = {o["values"]: o["counts"] for o in pc.value_counts(tasks.column("outcome")).to_pylist()}
    preview = tasks.slice(0, 10).to_pylist()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.num_rows,
            "worker_task_outcomes": dg.MetadataValue.json(dict(sorted(outcomes.items()))),
            "success_rate": share(outcomes.get("success", 0), tasks.num_rows),
            "preview": markdown_table(
                ["session", "worker", "outcome", "actions"],
                [(e["session_id"], e["worker_id"], e["outcome"], " → ".join(e["actions"])) for e in preview],
            ),
            "episodes_path": dg.MetadataValue.path(str(layout.root / "episodes")),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="episode_ids_unique", passed=duplicates == 0, metadata={"duplicates": duplicates}
            )
        ],
    )
