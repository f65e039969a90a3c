"""Everything Dagster loads: assets with their checks, jobs, sensors, schedules and resources.

`defs()` is the entry point Dagster's tools load (`@dg.definitions`): it reads the settings from
the environment once, when the code location loads, and builds the definitions from them. Tests and
the CLI call `build_definitions(settings)` with the settings they want instead of patching modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dagster as dg

from .core.triggers.spec import TRIGGERS_FILE_ENV, TriggerSettings, load_trigger_settings
from .defs.cli_logger import cli_logger
from .defs.datasets import sft_dataset
from .defs.discovery import DiscoverySettings, session_discovery
from .defs.jobs import full_update_job, global_model_job, process_sessions_job, scenario_model_job, train_adapter_job
from .defs.resources import AdapterServing, BaseModel, SwarmData
from .defs.scenario_model import global_model, global_model_automation, scenario_model
from .defs.sessions import session_assets
from .defs.training import applied_adapter, lora_adapter
from .defs.triggers import training_automation
from .training.base_model import BASE_MODEL_ENV, DEFAULT_MODEL


@dataclass(frozen=True)
class Settings:
    """What the definitions depend on beyond their code: the training triggers (their schedule's
    cron and job follow them), the base model, and how discovery paces itself."""

    triggers: TriggerSettings = field(default_factory=TriggerSettings)
    base_model: str = DEFAULT_MODEL
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)

    @classmethod
    def from_environment(cls) -> Settings:
        """`$SWARM_LEARN_TRIGGERS` (a YAML file of trigger specs) and `$SWARM_LEARN_BASE_MODEL` (a model
        folder or .gguf file instead of the embedded default); defaults where unset."""
        return cls(triggers=load_trigger_settings(os.environ.get(TRIGGERS_FILE_ENV)),
                   base_model=os.environ.get(BASE_MODEL_ENV) or DEFAULT_MODEL)


def build_definitions(settings: Settings = Settings()) -> dg.Definitions:
    training_trigger, training_check = training_automation(settings.triggers)
    return dg.Definitions(
        assets=[session_assets, scenario_model, global_model, sft_dataset, lora_adapter, applied_adapter],
        jobs=[process_sessions_job, scenario_model_job, global_model_job, train_adapter_job, full_update_job],
        sensors=[session_discovery(settings.discovery), training_trigger, global_model_automation],
        schedules=[training_check],
        # Dagster's console logger stays the default; the CLI's runs ask for `cli` (see runner.py).
        loggers={"console": dg.colored_console_logger, "cli": cli_logger},
        resources={
            "swarm_data": SwarmData(),
            "base_model": BaseModel(model=settings.base_model),
            "adapter_serving": AdapterServing(),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_environment())
