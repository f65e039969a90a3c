"""The status table's counts, and the per-file cache that keeps them from re-reading the history."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.stages.session_batch import process_sessions
from swarm_learn_assets.core.stats import summary
from swarm_learn_assets.core.storage.layout import DataLayout


@pytest.fixture
def processed(small_landing: Path, tmp_path: Path) -> DataLayout:
    root = tmp_path / "data"
    shutil.copytree(small_landing / "landing", root / "landing")
    layout = DataLayout(root)
    process_sessions(layout, [f.key for f in layout.scan_landing()[0]])
    return layout


def _expected(layout: DataLayout, scenario: str) -> tuple[int, int, int, int, int]:
    """Sessions, records, episodes, judged worker tasks and successes, read file by file with pyarrow."""
    records = sum(pq.read_table(p).num_rows for p in (layout.root / "records" / scenario).glob("*.parquet"))
    rows = [r for p in layout.episodes_dir(scenario).glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    tasks = [r for r in rows if r["learn_model"] == "worker_task" and r["outcome"] in ("success", "failure", "timeout")]
    sessions = len(list((layout.root / "landing" / scenario).glob("*.parquet")))
    return sessions, records, len(rows), len(tasks), sum(r["outcome"] == "success" for r in tasks)


def _counts(row: summary.ScenarioSummary) -> tuple[int, int, int, int, int]:
    return row.sessions, row.records, row.episodes, row.task_episodes, row.task_successes


def test_counts_match_the_files_and_only_new_or_changed_files_are_read_again(processed: DataLayout, monkeypatch):
    rows = summary.summarize(processed.root)
    assert [r.scenario for r in rows] == ["deploy-rollout", "troubleshooting"]
    for row in rows:
        assert _counts(row) == _expected(processed, row.scenario)
        assert row.task_episodes > 0 and row.has_model is False
    assert processed.summary_cache("troubleshooting").is_file()

    opened: list[str] = []
    real = summary.pq.ParquetFile
    monkeypatch.setattr(summary.pq, "ParquetFile", lambda path: opened.append(Path(path).name) or real(path))
    assert summary.summarize(processed.root) == rows
    assert opened == []  # everything from the cache

    # One session re-landed (its outputs rewritten) and one removed: those two files change.
    first, second = sorted((processed.root / "records" / "troubleshooting").glob("*.parquet"))[:2]
    key = f"troubleshooting.{first.stem}"
    os.utime(processed.landing(key))  # a newer landing file: reprocessed
    process_sessions(processed, [key])
    for area in ("records", "episodes"):
        (processed.root / area / "troubleshooting" / second.name).unlink()
    opened.clear()
    again = {r.scenario: r for r in summary.summarize(processed.root)}
    assert opened == [first.name]
    assert _counts(again["troubleshooting"]) == _expected(processed, "troubleshooting")
    assert again["deploy-rollout"] == rows[0]


def test_an_unreadable_cache_is_counted_anew(processed: DataLayout):
    rows = summary.summarize(processed.root)
    processed.summary_cache("deploy-rollout").write_text("{not json")
    assert summary.summarize(processed.root) == rows
