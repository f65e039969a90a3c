"""The training half through Dagster on a tiny model: sft_dataset → lora_adapter (Pipes) → eval →
blocking gate → applied_adapter, and a worse adapter that is kept but never applied."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from datasets import load_from_disk

from swarm_learn_assets.core.llm.dataset_rows import rows_of_sources, sample_rows
from swarm_learn_assets.defs.datasets import sft_dataset
from swarm_learn_assets.defs.resources import AdapterServing, BaseModel, SwarmData
from swarm_learn_assets.defs.sessions import session_assets
from swarm_learn_assets.defs.training import applied_adapter, lora_adapter
from swarm_learn_assets.runner import materialize
from swarm_learn_assets.simulate import simulate
from swarm_learn_assets.training.lora import evaluate_models
from swarm_learn_assets.training.registry import AdapterRegistry
from swarm_learn_assets.training.tiny_model import build_tiny_model_for_data

SCENARIO_RUN_CONFIG = {
    "ops": {
        "sft_dataset": {"config": {"eval_fraction": 0.3, "min_train_rows": 5, "train_on": ["task_decision"]}},
        "lora_adapter": {"config": {"rank": 16, "alpha": 64.0, "epochs": 30, "batch_size": 8,
                                    "gradient_accumulation": 1, "learning_rate": 0.01, "max_seq_length": 256,
                                    "max_new_tokens": 40}},
    }
}


@pytest.fixture
def trained_setup(tmp_path: Path, monkeypatch):
    root = tmp_path / "data"
    simulate(root, scenarios=1, sessions=12, seed=3, tasks_per_worker=2)
    monkeypatch.setenv("SWARM_LEARN_DATA", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    _, scenarios, _ = materialize(root, log_level="WARNING")
    model_dir = build_tiny_model_for_data(tmp_path / "tiny-model", root)
    return root, scenarios[0], model_dir


def _train(root: Path, scenario: str, model_dir: Path, run_config: dict = SCENARIO_RUN_CONFIG) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [session_assets, sft_dataset, lora_adapter, applied_adapter],
        selection=[sft_dataset, lora_adapter, applied_adapter],
        partition_key=scenario,
        instance=dg.DagsterInstance.get(),
        resources={"swarm_data": SwarmData(data_root=str(root)), "base_model": BaseModel(model=str(model_dir)),
                   "adapter_serving": AdapterServing(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
        run_config=run_config,
        raise_on_error=False,
    )


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def _with(**lora) -> dict:
    config = json.loads(json.dumps(SCENARIO_RUN_CONFIG))
    config["ops"]["lora_adapter"]["config"].update(lora)
    return config


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_chain_trains_evaluates_gates_and_applies(trained_setup):
    root, scenario, model_dir = trained_setup
    first = _train(root, scenario, model_dir)
    assert first.success
    dataset = root / "datasets" / scenario
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["train_on"] == ["task_decision"] and manifest["train_on_rows"] > 0
    assert manifest["sft"]["eval"]["rows"] > 0
    assert (dataset / "sft" / "train").is_dir() and (dataset / "dpo" / "eval").is_dir()
    assert _check(first, "chat_format_valid").passed

    version = root / "adapters" / scenario / "v0001"
    config = json.loads((version / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(model_dir.resolve())
    assert not any("embed" in m or "lm_head" in m for m in config["target_modules"])
    assert (version / "adapter_model.safetensors").is_file()
    metrics = json.loads((version / "training_metrics.json").read_text())
    assert metrics["steps"][-1]["loss"] < metrics["steps"][0]["loss"] / 2
    scores = json.loads((version / "eval.json").read_text())
    assert set(scores) >= {"rows", "eval_sessions", "models", "by_source", "unseen_context", "gate"}
    assert set(scores["by_source"]) == {"task_decision"}  # the trained sources only
    assert scores["rows"] == sum(part["rows"] for part in scores["by_source"].values())
    assert scores["models"]["applied"] is None and scores["gate"]["p_vs_applied"] is None
    assert scores["models"]["adapter"]["exact_match"] >= 0.5 > scores["models"]["base"]["exact_match"]
    assert scores["gate"]["passed"] and scores["gate"]["p_vs_base"] <= 0.05
    assert scores["eval_sessions"] == manifest["eval_sessions"]
    lineage = json.loads((version / "lineage.json").read_text())
    assert lineage["dataset"]["train_sha256"] == manifest["sft"]["train"]["sha256"]
    assert lineage["eval"]["gate"] == scores["gate"]
    assert lineage["base_model"]["revision"] and str(model_dir.resolve()) in (version / "README.md").read_text()
    assert _check(first, "adapter_beats_applied_and_base").passed
    registry = AdapterRegistry(root / "adapters", scenario)
    assert registry.current.version == "v0001"
    assert _materialized(first) == {"sft_dataset", "lora_adapter", "applied_adapter"}

    # Worse than the applied adapter (one step at a tiny learning rate): refused. The applied
    # adapter is re-scored on the current eval rows in the same run.
    worse = _train(root, scenario, model_dir, _with(epochs=1, learning_rate=1e-6))
    refused = json.loads((root / "adapters" / scenario / "v0002" / "eval.json").read_text())
    assert refused["applied_version"] == "v0001" and refused["rows"] == scores["rows"]
    assert refused["models"]["applied"] == scores["models"]["adapter"]
    assert refused["models"]["adapter"]["exact_match"] < refused["models"]["applied"]["exact_match"]
    assert not refused["gate"]["passed"] and refused["gate"]["p_vs_applied"] > 0.05
    assert not _check(worse, "adapter_beats_applied_and_base").passed
    assert (root / "adapters" / scenario / "v0002" / "adapter_model.safetensors").is_file()  # kept on disk
    assert registry.current.version == "v0001" and "applied_adapter" not in _materialized(worse)

    # Equal to the applied adapter: no row where they disagree, so no significant win.
    rows = sample_rows(rows_of_sources(list(load_from_disk(str(dataset / "sft"))["eval"]),
                                            manifest["train_on"]), 200)
    equal = evaluate_models(model_dir, version, rows, applied_dir=version, max_new_tokens=40, log=lambda _: None)
    assert equal["models"]["applied"] == equal["models"]["adapter"] == scores["models"]["adapter"]
    assert equal["gate"]["p_vs_applied"] == 1.0 and not equal["gate"]["passed"]

    # Materializing applied_adapter alone after failed gates applies nothing: the newest passed
    # version is the one already applied, whatever the newest folder on disk is.
    alone = _apply_only(root, scenario, model_dir)
    assert alone.success and registry.current.version == "v0001" and registry.history() == ["v0001"]
    metadata = next(iter(alone.get_asset_materialization_events())).materialization.metadata
    assert metadata["changed"].value is False and "newer than the applied v0001" in metadata["reason"].value


def test_better_but_not_significant_is_not_applied_and_nothing_is_applied_alone(trained_setup):
    root, scenario, model_dir = trained_setup
    result = _train(root, scenario, model_dir, _with(gate_alpha=1e-30))
    scores = json.loads((root / "adapters" / scenario / "v0001" / "eval.json").read_text())
    assert scores["models"]["adapter"]["exact_match"] > scores["models"]["base"]["exact_match"]
    assert not scores["gate"]["passed"] and scores["gate"]["p_vs_base"] > 1e-30
    assert any("does not significantly beat the base model" in r for r in scores["gate"]["reasons"])
    assert not _check(result, "adapter_beats_applied_and_base").passed
    alone = _apply_only(root, scenario, model_dir)
    assert alone.success and AdapterRegistry(root / "adapters", scenario).current is None
    assert not (root / "adapters" / scenario / "current").exists()


def _apply_only(root: Path, scenario: str, model_dir: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [session_assets, sft_dataset, lora_adapter, applied_adapter], selection=[applied_adapter],
        partition_key=scenario, instance=dg.DagsterInstance.get(),
        resources={"swarm_data": SwarmData(data_root=str(root)), "base_model": BaseModel(model=str(model_dir)),
                   "adapter_serving": AdapterServing(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
    )


def test_too_few_rows_skip_the_adapter_with_a_reason(trained_setup):
    root, scenario, model_dir = trained_setup
    config = json.loads(json.dumps(SCENARIO_RUN_CONFIG))
    config["ops"]["sft_dataset"]["config"]["min_train_rows"] = 100_000
    result = dg.materialize(
        [session_assets, sft_dataset, lora_adapter, applied_adapter],
        selection=[sft_dataset, lora_adapter, applied_adapter], partition_key=scenario,
        instance=dg.DagsterInstance.get(),
        resources={"swarm_data": SwarmData(data_root=str(root)), "base_model": BaseModel(model=str(model_dir)),
                   "adapter_serving": AdapterServing(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
        run_config=config,
    )
    assert result.success
    assert not _check(result, "enough_training_rows").passed
    observation = next(e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION")
    assert "fewer than the configured minimum of 100000" in str(observation.event_specific_data)
    assert not (root / "adapters" / scenario).exists() or not list((root / "adapters" / scenario).iterdir())


def test_a_crash_in_training_fails_the_step_with_the_cause(trained_setup, tmp_path: Path):
    import shutil

    root, scenario, model_dir = trained_setup
    broken = tmp_path / "broken-model"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 64)  # the training process cannot load it
    result = _train(root, scenario, broken)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "lora_adapter"
    text = failure.step_failure_data.user_failure_data.description
    assert text.startswith(f"training the {scenario} adapter (v0001) failed: ")
    assert "safetensors" in text.lower() or "header" in text.lower()
    assert AdapterRegistry(root / "adapters", scenario).current is None


def _land_more_sessions(root: Path, scenario: str, tmp_path: Path, total: int) -> list[str]:
    """Sessions 12..total-1 of the same simulation (deterministic per session) land next to the first 12."""
    import shutil

    more = tmp_path / "more"
    simulate(more, scenarios=1, sessions=total, seed=3, tasks_per_worker=2)
    landed = sorted((more / "landing" / scenario).iterdir())[12:]
    for file in landed:
        shutil.copy(file, root / "landing" / scenario / file.name)
    materialize(root, log_level="WARNING")
    return [f.stem for f in landed]


def _metadata(result: dg.ExecuteInProcessResult, asset: str = "lora_adapter") -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset)
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_second_version_continues_from_the_applied_one_on_the_new_sessions(trained_setup, tmp_path: Path):
    root, scenario, model_dir = trained_setup
    assert _train(root, scenario, model_dir).success
    first = json.loads((root / "adapters" / scenario / "v0001" / "lineage.json").read_text())
    assert first["parent"] is None and first["init"]["init_from"] == "base"
    assert "no adapter is applied yet" in first["init"]["reason"]
    assert AdapterRegistry(root / "adapters", scenario).current.version == "v0001"

    _land_more_sessions(root, scenario, tmp_path, total=18)
    second = _train(root, scenario, model_dir)  # whether v0002 passes its gate does not matter here
    manifest = json.loads((root / "datasets" / scenario / "manifest.json").read_text())
    new_sessions = set(manifest["train_sessions"]) - set(first["train_sessions"])
    assert new_sessions, "some of the 6 new sessions must fall in the train split"
    train = load_from_disk(str(root / "datasets" / scenario / "sft"))["train"]
    new_rows = sum(r["source"] == "task_decision" and r["session_id"] in new_sessions for r in train)
    old_rows = sum(r["source"] == "task_decision" and r["session_id"] not in new_sessions for r in train)
    lineage = json.loads((root / "adapters" / scenario / "v0002" / "lineage.json").read_text())
    assert lineage["parent"] == "v0001" and lineage["init"]["init_from"] == "applied"
    assert f"continuing from the applied v0001 on {len(new_sessions)} new sessions" in lineage["init"]["reason"]
    # default replay_fraction 0.5: as many replayed older rows as new rows
    assert (lineage["init"]["new_rows"], lineage["init"]["replay_rows"]) == (new_rows, min(new_rows, old_rows))
    metadata = _metadata(second)
    assert (metadata["init_from"], metadata["parent_version"]) == ("applied", "v0001")
    assert (metadata["train_rows_new"], metadata["train_rows_replayed"]) == (new_rows, min(new_rows, old_rows))
    metrics = json.loads((root / "adapters" / scenario / "v0002" / "training_metrics.json").read_text())
    assert metrics["train_rows"] == new_rows + min(new_rows, old_rows)
    assert metrics["init_adapter"] == str(root / "adapters" / scenario / "v0001")


def test_a_base_model_change_forces_training_from_the_base_with_the_reason(trained_setup, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    root, scenario, model_dir = trained_setup
    assert _train(root, scenario, model_dir).success
    _land_more_sessions(root, scenario, tmp_path, total=16)
    weights = load_file(model_dir / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] * 1.01  # the same model folder, new weights: a new revision
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    result = _train(root, scenario, model_dir)
    metadata = _metadata(result)
    assert (metadata["init_from"], metadata["parent_version"]) == ("base", "none")
    assert "the base model changed since v0001" in metadata["init_reason"]
    lineage = json.loads((root / "adapters" / scenario / "v0002" / "lineage.json").read_text())
    assert lineage["parent"] is None and lineage["init"]["reason"] == metadata["init_reason"]
    assert json.loads((root / "adapters" / scenario / "v0002" / "training_metrics.json").read_text())["init_adapter"] is None


def test_dpo_after_sft_continues_from_the_sft_adapter_on_the_dpo_pairs(trained_setup, capsys):
    from swarm_learn_assets.cli import main

    root, scenario, model_dir = trained_setup
    assert _train(root, scenario, model_dir).success
    manifest = json.loads((root / "datasets" / scenario / "manifest.json").read_text())
    pairs = load_from_disk(str(root / "datasets" / scenario / "dpo"))["train"]
    assert len(pairs) == manifest["dpo"]["train"]["rows"] >= 5
    # TRL's standard preference shape: prompt, chosen and rejected as texts (plus our system prompt)
    assert all(isinstance(r[k], str) and r[k] for r in pairs for k in ("prompt", "chosen", "rejected"))
    dpo = _train(root, scenario, model_dir, _with(format="dpo", epochs=4, dpo_learning_rate=1e-3))
    version = root / "adapters" / scenario / "v0002"
    lineage = json.loads((version / "lineage.json").read_text())
    assert lineage["format"] == "dpo" and lineage["parent"] == "v0001"
    assert lineage["dataset"]["train_sha256"] == manifest["dpo"]["train"]["sha256"]
    assert f"all {len(manifest['train_sessions'])} sessions" in lineage["init"]["reason"]
    metrics = json.loads((version / "training_metrics.json").read_text())
    assert metrics["objective"] == "dpo" and metrics["train_rows"] == len(pairs) and metrics["replay_rows"] == 0
    assert all("reward_accuracy" in step for step in metrics["steps"])
    scores = json.loads((version / "eval.json").read_text())
    assert set(scores["by_source"]) == {"task_decision"} and scores["applied_version"] == "v0001"
    assert _metadata(dpo)["format"] == "dpo"
    assert "DPO" in (version / "README.md").read_text()
    capsys.readouterr()
    assert main(["adapters", "list", "--scenario", scenario, "--data-root", str(root)]) == 0
    listing = [line.lstrip("* ").split() for line in capsys.readouterr().out.splitlines()]  # * marks the applied
    assert listing[1][:3] == ["v0001", "sft", "base"] and listing[2][:3] == ["v0002", "dpo", "v0001"]


def test_dpo_with_too_few_pairs_is_skipped_with_a_reason(trained_setup):
    root, scenario, model_dir = trained_setup
    config = _with(format="dpo")
    config["ops"]["sft_dataset"]["config"]["min_train_rows"] = 10_000
    result = _train(root, scenario, model_dir, config)
    assert result.success
    observation = next(e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION")
    assert "DPO pairs, fewer than the configured minimum of 10000" in str(observation.event_specific_data)


def test_the_dpo_learning_rate_applies_only_to_dpo():
    from swarm_learn_assets.defs.training import LoraConfig

    assert LoraConfig(learning_rate=0.01, dpo_learning_rate=0.001).settings().learning_rate == 0.01
    assert LoraConfig(format="dpo", learning_rate=0.01, dpo_learning_rate=0.001).settings().learning_rate == 0.001
