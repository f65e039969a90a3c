"""Everything Dagster loads: assets with their checks, jobs, sensors, schedules and resources."""

import os

import dagster as dg

from .defs.discovery import discover_sessions
from .defs.cli_logger import cli_logger
from .defs.datasets import sft_dataset
from .defs.jobs import full_update_job, global_model_job, process_sessions_job, scenario_model_job, train_adapter_job
from .defs.resources import AdapterServing, BaseModel, SwarmData
from .defs.scenario_model import global_model, global_model_automation, scenario_model
from .defs.sessions import session_assets
from .defs.training import applied_adapter, lora_adapter
from .defs.triggers import training_check, training_trigger
from .training.base_model import BASE_MODEL_ENV, DEFAULT_MODEL

defs = dg.Definitions(
    assets=[session_assets, scenario_model, global_model, sft_dataset, lora_adapter, applied_adapter],
    jobs=[process_sessions_job, scenario_model_job, global_model_job, train_adapter_job, full_update_job],
    sensors=[discover_sessions, training_trigger, global_model_automation],
    schedules=[training_check],
    # Dagster's console logger stays the default; the CLI's runs ask for `cli` (see runner.py).
    loggers={"console": dg.colored_console_logger, "cli": cli_logger},
    resources={
        "swarm_data": SwarmData(),
        # `$SWARM_LEARN_BASE_MODEL`: a model folder or .gguf file instead of the embedded default.
        "base_model": BaseModel(model=os.environ.get(BASE_MODEL_ENV, DEFAULT_MODEL)),
        "adapter_serving": AdapterServing(),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    },
)
