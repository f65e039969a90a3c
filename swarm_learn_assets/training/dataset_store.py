"""A scenario's SFT and DPO datasets on disk, as Hugging Face `datasets` (`datasets/<scenario>/`).

`sft/` and `dpo/` are `DatasetDict`s with `train` and `eval` splits (rows carry the reference
`TrainingData` fields, `session_id`, and for SFT the chat `messages`); `manifest.json` records row
counts, a content hash per split (the adapter's lineage), duplicates dropped and the sessions of
each split.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..core.llm.dataset_rows import (
    DEFAULT_TRAIN_ON,
    EVAL,
    KNOWN_SOURCES,
    TASK_STEP,
    TRAIN,
    DatasetConfig,
    TrainingRows,
    build_training_rows,
    built_sources,
)
from ..core.storage.atomic import make_temp_dir, remove_stale_temps, temp_prefix, write_json
from ..core.storage.layout import DataLayout
from ..core.storage.readers import read_decision_records, read_session_actions

SFT, DPO = "sft", "dpo"


def _features(with_messages: bool) -> Any:
    from datasets import Features, Value

    text = Value("string")
    fields = {"system": text, "prompt": text, "chosen": text, "rejected": text, "format": text,
              "episode_id": text, "outcome_score": Value("float64"), "learn_model": text, "session_id": text,
              "source": text, "context": text}
    if with_messages:
        fields.update({"messages": [{"role": text, "content": text}], "count": Value("int64"),
                       "agreement": Value("float64"), "unseen_context": Value("bool")})
    return Features(fields)


def split_hash(rows: list[dict[str, Any]]) -> str:
    """sha256 of a split's rows in order: equal rows, equal hash, whatever wrote them."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _replace_dir(source: Path, target: Path) -> None:
    """Move a finished folder into place; the old one is removed only after the new one is there."""
    old = target.with_name(f"{temp_prefix(target.name)}old.partial")
    if target.exists():
        target.rename(old)
    source.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class ScenarioDatasets:
    rows: TrainingRows
    manifest: dict[str, Any]
    path: Path


def read_scenario_episodes(layout: DataLayout, scenario: str) -> list[dict[str, Any]]:
    """Every episode of the scenario, sessions in name order."""
    directory = layout.episodes_dir(scenario)
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def build_scenario_datasets(
    layout: DataLayout, scenario: str, config: DatasetConfig = DatasetConfig(), min_train_rows: int = 1,
    train_on: tuple[str, ...] = DEFAULT_TRAIN_ON,
) -> ScenarioDatasets:
    """episodes/ and records/ of a scenario → datasets/<scenario>/{sft,dpo}/ + manifest.json, replaced
    as a whole. The manifest names the sources the adapter trains on (`train_on`) and says whether
    they hold enough training rows (`trainable`)."""
    import datasets
    from datasets import Dataset, DatasetDict

    datasets.disable_progress_bars()  # a few hundred rows: the bars are noise in the run's log
    unknown = sorted(set(train_on) - set(KNOWN_SOURCES))
    if unknown or not train_on:
        raise ValueError(f"train_on {list(train_on)}: expected one or more of {', '.join(KNOWN_SOURCES)}")
    config = replace(config, task_steps=TASK_STEP in train_on)
    episodes = read_scenario_episodes(layout, scenario)
    sessions = sorted({e["session_id"] for e in episodes})
    rows = build_training_rows(episodes, config, read_decision_records(layout, scenario, sessions),
                               read_session_actions(layout, scenario, sessions))
    target = layout.dataset_dir(scenario)
    target.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    per_source = {part: {s: sum(r["source"] == s for r in rows.sft[part]) for s in built_sources(train_on)}
                  for part in (TRAIN, EVAL)}
    train_rows = sum(per_source[TRAIN][s] for s in train_on)
    manifest: dict[str, Any] = {"scenario": scenario, "eval_fraction": config.eval_fraction,
                                "eval_sessions": rows.eval_sessions, "train_sessions": rows.train_sessions,
                                "duplicates_removed": rows.duplicates, "min_train_rows": min_train_rows,
                                "train_on": list(train_on), "rows_by_source": per_source,
                                "train_on_rows": train_rows, "trainable": train_rows >= min_train_rows}
    for name, table in ((SFT, rows.sft), (DPO, rows.dpo)):
        features = _features(with_messages=name == SFT)
        # from_dict: from_list cannot build an empty split (no rows to take the columns from)
        splits = DatasetDict({
            part: Dataset.from_dict({name: [r[name] for r in table[part]] for name in features}, features=features)
            for part in (TRAIN, EVAL)
        })
        tmp = make_temp_dir(target / name)
        # One shard per split: an empty split saved with the default (zero shards) cannot be loaded.
        splits.save_to_disk(str(tmp), num_shards={TRAIN: 1, EVAL: 1})
        _replace_dir(tmp, target / name)
        manifest[name] = {part: {"rows": len(table[part]), "sha256": split_hash(table[part])} for part in (TRAIN, EVAL)}
    write_json(manifest, target / "manifest.json")
    return ScenarioDatasets(rows, manifest, target)


def untrainable_reason(manifest: dict, train_format: str) -> str | None:
    """Why the dataset cannot train an adapter of this format (too few rows), or None."""
    if train_format == "dpo":
        rows, what = manifest["dpo"]["train"]["rows"], "DPO pairs"
    else:
        rows, what = manifest["train_on_rows"], f"training rows of {', '.join(manifest['train_on'])}"
    if rows >= manifest["min_train_rows"]:
        return None
    return f"skipped: {rows} {what}, fewer than the configured minimum of {manifest['min_train_rows']}"
