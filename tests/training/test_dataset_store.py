"""Datasets on disk: Hugging Face splits TRL can read, a manifest whose hashes are stable on rebuild."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swarm_learn_assets.core.llm.dataset_rows import DatasetConfig
from swarm_learn_assets.core.stages.session_batch import process_sessions
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.training.dataset_store import build_scenario_datasets


def _processed(tmp_path: Path, small_landing: Path) -> tuple[DataLayout, str]:
    """The small landing set processed up to episodes; the layout and its first scenario."""
    shutil.copytree(small_landing / "landing", tmp_path / "landing")
    layout = DataLayout(tmp_path)
    files = layout.scan_landing()[0]
    process_sessions(layout, [f.key for f in files])
    return layout, files[0].scenario


def test_datasets_are_saved_with_splits_and_rebuild_identically(tmp_path: Path, small_landing: Path):
    from datasets import load_from_disk

    layout, scenario = _processed(tmp_path, small_landing)
    first = build_scenario_datasets(layout, scenario, DatasetConfig(eval_fraction=0.5), min_train_rows=3)
    sft = load_from_disk(str(first.path / "sft"))
    assert set(sft) == {"train", "eval"}
    row = sft["train"][0]
    assert row["messages"][-1]["role"] == "assistant" and row["messages"][-1]["content"] == row["chosen"]
    assert row["format"] == "sft" and row["rejected"] is None and row["session_id"] in first.manifest["train_sessions"]
    dpo = load_from_disk(str(first.path / "dpo"))
    assert "messages" not in dpo["train"].column_names
    assert first.manifest["sft"]["train"]["rows"] == len(sft["train"]) and first.manifest["trainable"]

    again = build_scenario_datasets(layout, scenario, DatasetConfig(eval_fraction=0.5), min_train_rows=10_000)
    assert again.manifest["sft"] == first.manifest["sft"] and again.manifest["dpo"] == first.manifest["dpo"]
    assert not again.manifest["trainable"]
    assert sorted(p.name for p in first.path.iterdir()) == ["dpo", "manifest.json", "sft"]  # no leftovers


def test_empty_splits_are_saved_too(tmp_path: Path, small_landing: Path):
    from datasets import load_from_disk

    layout, scenario = _processed(tmp_path, small_landing)
    built = build_scenario_datasets(layout, scenario, DatasetConfig(eval_fraction=0.0))
    assert built.manifest["sft"]["eval"]["rows"] == 0
    assert len(load_from_disk(str(built.path / "sft"))["eval"]) == 0


def test_task_step_rows_are_built_when_train_on_names_them(tmp_path: Path, small_landing: Path):
    from datasets import load_from_disk

    layout, scenario = _processed(tmp_path, small_landing)
    default = build_scenario_datasets(layout, scenario, DatasetConfig(eval_fraction=0.0))
    assert "task_step" not in default.manifest["rows_by_source"]["train"]
    train_on = ("task_decision", "task_step")
    built = build_scenario_datasets(layout, scenario, DatasetConfig(eval_fraction=0.0), train_on=train_on)
    by_source = built.manifest["rows_by_source"]["train"]
    sft = load_from_disk(str(built.path / "sft"))["train"]
    steps = [r for r in sft if r["source"] == "task_step"]
    assert by_source["task_step"] == len(steps) > by_source["task_decision"]  # several steps per task
    assert built.manifest["train_on_rows"] == by_source["task_decision"] + by_source["task_step"]
    # every step's target is the action record's target, which the simulated swarm names in the context
    assert all(json.loads(r["chosen"])["target"] in r["context"] for r in steps)
    with pytest.raises(ValueError, match="task_step"):
        build_scenario_datasets(layout, scenario, train_on=("task_steps",))
