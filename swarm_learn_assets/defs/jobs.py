"""Asset jobs: what the discovery sensor, backfills and the CLI run."""

import dagster as dg

from .episodes import EPISODES
from .records import RAW_RECORDS
from .scenario_model import scenario_model
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

train_adapter_job = dg.define_asset_job(
    "train_adapter",
    selection=dg.AssetSelection.assets("sft_dataset", "lora_adapter", "applied_adapter"),
    description="Build a scenario's datasets, train and evaluate an adapter, apply it if it is better.",
)
