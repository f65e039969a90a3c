"""The default base model trained once for all slow tests that need a real adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TrainedDefault:
    root: Path  # the data root: 20 sessions of one scenario, materialized through applied_adapter
    scenario: str
    cache: Path  # the dequantised default model's cache folder
    home: Path  # DAGSTER_HOME of the run
    success: bool


@pytest.fixture(scope="session")
def trained_default(tmp_path_factory) -> TrainedDefault:
    """The README's data on one scenario, trained through the Dagster chain with the default config."""
    import dagster as dg

    from swarm_learn_assets.defs.datasets import sft_dataset
    from swarm_learn_assets.defs.resources import AdapterServing, BaseModel, SwarmData
    from swarm_learn_assets.defs.sessions import session_assets
    from swarm_learn_assets.defs.training import applied_adapter, lora_adapter
    from swarm_learn_assets.runner import materialize
    from swarm_learn_assets.simulate import simulate

    base = tmp_path_factory.mktemp("trained-default")
    root, cache, home = base / "data", base / "cache", base / "home"
    simulate(root, scenarios=1, sessions=20, seed=7)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        _, scenarios, _ = materialize(root, log_level="WARNING")
        result = dg.materialize(
            [session_assets, sft_dataset, lora_adapter, applied_adapter],
            selection=[sft_dataset, lora_adapter, applied_adapter],
            partition_key=scenarios[0],
            instance=dg.DagsterInstance.get(),
            resources={"swarm_data": SwarmData(data_root=str(root)),
                       "base_model": BaseModel(cache_dir=str(cache)),
                       "adapter_serving": AdapterServing(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
            raise_on_error=False,
        )
    return TrainedDefault(root, scenarios[0], cache, home, result.success)
