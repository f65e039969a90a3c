"""Stage 4: every session snapshot of a scenario → the merged scenario model and offline model; every
scenario model → the global model."""

import dagster as dg

from ..core.stages.scenario_model import build_global_model, build_model_for_scenario
from ..core.stats.merge import MergeStrategy
from ..core.stats.offline import DEFAULT_MAX_SESSIONS
from ..core.stats.query import TimeWindow
from .metadata import markdown_table, share
from .partitions import scenarios_partitions
from .resources import SwarmData
from .snapshots import SESSION_SNAPSHOT


class ScenarioModelConfig(dg.Config):
    """How sessions are merged, how many recent ones the offline analysis looks at, and the window of
    session time the model is built from (`since` / `until`: ISO 8601 or epoch ms, either open;
    default all history), e.g. last week only from the launchpad."""

    merge_strategy: str = "additive"
    max_sessions: int = DEFAULT_MAX_SESSIONS
    since: str | None = None
    until: str | None = None


@dg.asset(
    partitions_def=scenarios_partitions,
    # One run per scenario, like the training assets (a run for several also works: it loops).
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    # Each scenario reads the snapshots of all its sessions; which ones is decided by the file layout.
    deps=[dg.AssetDep(SESSION_SNAPSHOT, partition_mapping=dg.AllPartitionMapping())],
    group_name="scenarios",
    kinds={"json"},
    description="All sessions of a scenario merged, plus recommended paths, parameters and action order.",
)
def scenario_model(
    context: dg.AssetExecutionContext, config: ScenarioModelConfig, swarm_data: SwarmData
) -> dg.MaterializeResult:
    layout = swarm_data.layout
    strategy = MergeStrategy.parse(config.merge_strategy)
    window = TimeWindow.parse(config.since, config.until)
    builds = {s: build_model_for_scenario(layout, s, strategy, config.max_sessions, window)
              for s in context.partition_keys}
    models = {s: b.model for s, b in builds.items()}
    paths, sessions = [], 0
    episodes = success = 0
    for scenario, model in models.items():
        meta = model["merged"]["metadata"]
        sessions += len(model["sessions"])
        episodes += meta["total_episodes"]
        success += meta["success_episodes"]
        for p in model["offline_model"]["recommended_paths"]:
            paths.append((scenario, " → ".join(p["actions"]), p["success_rate"], p["count"]))
    first = next(iter(models.values()))["offline_model"] if models else {}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sessions,
            "scenarios": len(models),
            "total_episodes": episodes,
            "success_rate": share(success, episodes),
            "merge_strategy": strategy.name,
            # Added to the last model, or merged from every snapshot (and why): what a rebuild cost.
            "built_from": dg.MetadataValue.md("\n".join(
                f"- {s}: " + (f"{b.added} new session(s) added to the last model" if b.rebuilt_because is None
                              else f"all {b.added} session(s) merged ({b.rebuilt_because})")
                for s, b in builds.items())),
            "window": dg.MetadataValue.json(window.describe()),
            "parameters": dg.MetadataValue.json(first.get("parameters", {})),
            "recommended_paths": markdown_table(["scenario", "path", "success rate", "count"], paths),
            "model_path": dg.MetadataValue.path(
                str(layout.scenario_model(context.partition_keys[0])) if len(models) == 1 else str(layout.folder("models"))
            ),
        },
    )


GLOBAL_MODEL = dg.AssetKey("global_model")
# Rebuilt after any scenario model changes, once nothing upstream is running. Unlike `eager`, a
# scenario whose model was never built does not hold the others back.
GLOBAL_MODEL_AUTOMATION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


@dg.asset(
    key=GLOBAL_MODEL,
    deps=[dg.AssetDep(scenario_model, partition_mapping=dg.AllPartitionMapping())],
    group_name="scenarios",
    kinds={"json"},
    automation_condition=GLOBAL_MODEL_AUTOMATION,
    description="Every scenario's merged statistics added up: the reference's global level.",
)
def global_model(swarm_data: SwarmData) -> dg.MaterializeResult:
    layout = swarm_data.layout
    model = build_global_model(layout)
    merged = model["merged"]
    meta = merged["metadata"]
    top = sorted(merged["action_stats"], key=lambda a: (-a["visits"], a["action"]))[:10]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": model["sessions"],
            "scenarios": len(model["scenarios"]),
            "scenario_names": ", ".join(model["scenarios"]) or "none",
            "total_episodes": meta["total_episodes"],
            "success_rate": share(meta["success_episodes"], meta["total_episodes"]),
            "total_actions": meta["total_actions"],
            "top_actions": markdown_table(["action", "visits", "success rate"],
                                          [(a["action"], a["visits"], share(a["successes"], a["visits"])) for a in top]),
            "model_path": dg.MetadataValue.path(str(layout.global_model)),
        },
    )


global_model_automation = dg.AutomationConditionSensorDefinition(
    "global_model_automation",
    target=dg.AssetSelection.assets(GLOBAL_MODEL),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Rebuilds the global model after scenario models change.",
)
