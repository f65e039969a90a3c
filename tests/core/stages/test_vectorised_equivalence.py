"""The batched DuckDB implementation must give exactly what the per-record rules define."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.contract.typed_records import records_from_table
from swarm_learn_assets.core.episodes.learn_models import WorkerDecisionSequenceLearn, WorkerTaskLearn
from swarm_learn_assets.core.stages import session_batch as stages
from swarm_learn_assets.core.stats.snapshot import snapshot_rowwise
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.core.storage.names import split_session_key


@pytest.fixture
def processed(tmp_path, small_landing):
    import shutil

    shutil.copytree(small_landing / "landing", tmp_path / "landing")
    layout = DataLayout(tmp_path)
    keys = [f.key for f in layout.scan_landing()[0]]
    settings = stages.SessionSettings(ngram_orders=(3, 4, 5))
    for step in stages.STEPS:  # each stage reading what the one before wrote
        stages.process_sessions(layout, keys, [step], settings)
    return layout, keys


def _rowwise(layout: DataLayout, key: str):
    scenario, session_id = split_session_key(key)
    records = records_from_table(pq.read_table(layout.records(key)))
    episodes = WorkerTaskLearn().build_episodes(records, scenario, session_id) + (
        WorkerDecisionSequenceLearn().build_episodes(records, scenario, session_id)
    )
    return records, episodes


def test_episodes_match_the_per_record_learn_models(processed):
    layout, keys = processed
    compared = 0
    for key in keys:
        _, expected = _rowwise(layout, key)
        got = pq.read_table(layout.episodes(key)).to_pylist()
        want = {
            e.id: (e.learn_model, e.worker_id(), e.outcome.kind, e.outcome.score(), e.actions(),
                   [r.seq for r in e.records], e.get_task_id(), e.get_group_id(), e.context(), e.selection_logic(),
                   e.started_at_ms(), e.ended_at_ms())
            for e in expected
        }
        have = {
            row["episode_id"]: (row["learn_model"], row["worker_id"], row["outcome"], row["score"], row["actions"],
                                row["record_seqs"], row["task_id"], row["group_id"], row["context"],
                                row["selection_logic"], row["started_at_ms"], row["ended_at_ms"])
            for row in got
        }
        assert have == want, key
        compared += len(want)
    assert compared > 100  # the simulated data really exercises both models


def test_snapshots_match_the_per_record_definition(processed):
    layout, keys = processed
    for key in keys:
        scenario, session_id = split_session_key(key)
        records, episodes = _rowwise(layout, key)
        expected = snapshot_rowwise(records, episodes, scenario, session_id, ngram_orders=(3, 4, 5))
        assert json.loads(layout.snapshot(key).read_text()) == expected, key
        assert expected["ngrams"] and expected["contextual_stats"] and expected["selection_performance"]


def test_chunked_processing_gives_the_same_files(tmp_path, small_landing):
    """Backfills are handled in chunks of sessions; the chunk size must not change any output byte."""
    import hashlib
    import shutil

    def run(root, chunk):
        shutil.copytree(small_landing / "landing", root / "landing")
        layout = DataLayout(root)
        keys = [f.key for f in layout.scan_landing()[0]]
        episodes = stages.process_sessions(layout, keys, chunk_sessions=chunk).episodes
        files = {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for area in ("records", "episodes", "snapshots") for p in sorted((root / area).rglob("*")) if p.is_file()
        }
        return files, episodes.rows

    whole = run(tmp_path / "whole", 100)
    chunked = run(tmp_path / "chunked", 3)
    assert chunked == whole and whole[1] > 0
