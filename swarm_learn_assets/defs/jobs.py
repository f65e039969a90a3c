"""Asset jobs: what the discovery sensor, backfills and the CLI run."""

import dagster as dg

from .episodes import EPISODES
from .records import RAW_RECORDS
from .scenario_model import GLOBAL_MODEL, scenario_model
from .snapshots import SESSION_SNAPSHOT

process_sessions_job = dg.define_asset_job(
    "process_sessions",
    selection=dg.AssetSelection.assets(RAW_RECORDS, EPISODES, SESSION_SNAPSHOT),
    description="Validate landing files, cut episodes and compute session snapshots.",
)

scenario_model_job = dg.define_asset_job(
    "build_scenario_model",
    selection=dg.AssetSelection.assets(scenario_model),
    description="Merge a scenario's session snapshots into its scenario model.",
)

global_model_job = dg.define_asset_job(
    "build_global_model",
    selection=dg.AssetSelection.assets(GLOBAL_MODEL),
    description="Add every scenario model up into the global model.",
)

# Training runs may take longer than the instance-wide limit in dagster.yaml; run monitoring fails
# them after this many seconds instead.
TRAINING_RUN_TAGS = {"dagster/max_runtime": str(4 * 3600)}

train_adapter_job = dg.define_asset_job(
    "train_adapter",
    selection=dg.AssetSelection.assets("sft_dataset", "lora_adapter", "applied_adapter"),
    tags=TRAINING_RUN_TAGS,
    description="Build a scenario's datasets, train and evaluate an adapter, apply it if it is better.",
)

full_update_job = dg.define_asset_job(
    "full_update",
    selection=dg.AssetSelection.assets(scenario_model, "sft_dataset", "lora_adapter", "applied_adapter"),
    tags=TRAINING_RUN_TAGS,
    description="Rebuild a scenario's model and train, evaluate and maybe apply an adapter.",
)

# What a firing training trigger runs, by processor mode (the reference ProcessorMode).
MODE_JOBS = {"offline": scenario_model_job, "lora": train_adapter_job, "full": full_update_job}
# Runs for one scenario carry this tag; dagster.yaml limits them to one at a time per scenario.
SCENARIO_TAG = "swarm-learn/scenario"
