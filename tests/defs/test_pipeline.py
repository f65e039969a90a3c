"""The assets, run in-process through the real Definitions against a real (temporary) instance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.runner import materialize

pytestmark = pytest.mark.usefixtures("instance_backend")  # each test on SQLite and on PostgreSQL


def _digest_tree(root: Path, areas=("records", "episodes", "snapshots", "models")) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for area in areas
        for p in sorted((root / area).rglob("*"))
        if p.is_file()
    }


def _latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None, f"{asset} was never materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_materialize_writes_every_output_with_metadata(data_root: Path, instance_backend: str):
    sessions, scenarios, refused = materialize(data_root, log_level="WARNING")
    assert refused == [] and len(sessions) == 8 and len(scenarios) == 2
    for key in sessions:
        scenario, session_id = key.split(".")
        for area, suffix in (("records", ".parquet"), ("episodes", ".parquet"), ("snapshots", ".json")):
            assert (data_root / area / scenario / f"{session_id}{suffix}").is_file()
    for scenario in scenarios:
        model = json.loads((data_root / "models" / scenario / "scenario_model.json").read_text())
        assert len(model["sessions"]) == 4
        assert model["offline_model"]["analyzed_sessions"] == 4
        assert model["offline_model"]["action_order"]["action_set_hash"]

    instance = dg.DagsterInstance.get()
    assert {type(instance.run_storage).__name__, type(instance.event_log_storage).__name__} == (
        {"PostgresRunStorage", "CachedPostgresEventLogStorage"} if instance_backend == "postgres"
        else {"SqliteRunStorage", "PooledSqliteEventLogStorage"})
    records_meta = _latest_metadata(instance, "raw_records")
    landing_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (data_root / "landing").rglob("*.parquet"))
    assert records_meta["dagster/row_count"] == landing_rows
    episodes_meta = _latest_metadata(instance, "episodes")
    assert episodes_meta["dagster/row_count"] == sum(
        pq.ParquetFile(p).metadata.num_rows for p in (data_root / "episodes").rglob("*.parquet")
    )
    assert 0 < episodes_meta["success_rate"] < 1
    assert "|" in episodes_meta["preview"]
    assert _latest_metadata(instance, "session_snapshot")["dagster/row_count"] == 8
    assert "recommended_paths" in _latest_metadata(instance, "scenario_model")

    materialized = instance.get_materialized_partitions(dg.AssetKey("session_snapshot"))
    assert materialized == set(sessions)
    for check, asset in (
        ("episode_ids_unique", "episodes"),
        ("snapshot_totals_match_episodes", "session_snapshot"),
        ("quarantine_share_below_threshold", "raw_records"),
    ):
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(asset), check)]
        )[dg.AssetCheckKey(dg.AssetKey(asset), check)]
        assert record.event.dagster_event.event_specific_data.passed, check


def test_rematerializing_is_byte_identical_and_never_double_counts(data_root: Path):
    materialize(data_root, log_level="WARNING")
    first = _digest_tree(data_root)
    ids_before = sorted(
        i for p in (data_root / "episodes").rglob("*.parquet") for i in pq.read_table(p)["episode_id"].to_pylist()
    )
    materialize(data_root, log_level="WARNING")
    assert _digest_tree(data_root) == first
    ids_after = sorted(
        i for p in (data_root / "episodes").rglob("*.parquet") for i in pq.read_table(p)["episode_id"].to_pylist()
    )
    assert ids_after == ids_before and len(set(ids_after)) == len(ids_after)
    for model_path in (data_root / "models").rglob("scenario_model.json"):
        model = json.loads(model_path.read_text())
        snaps = [json.loads(p.read_text()) for p in (data_root / "snapshots" / model["scenario"]).glob("*.json")]
        assert model["merged"]["metadata"]["total_episodes"] == sum(s["metadata"]["total_episodes"] for s in snaps)
        assert model["merged"]["metadata"]["session_count"] == len(snaps)
    models = [json.loads(p.read_text()) for p in (data_root / "models").rglob("scenario_model.json")]
    world = json.loads((data_root / "models" / "global_model.json").read_text())
    assert world["scenarios"] == sorted(m["scenario"] for m in models) and len(models) > 1
    for count in ("session_count", "total_episodes", "success_episodes", "total_actions"):
        assert world["merged"]["metadata"][count] == sum(m["merged"]["metadata"][count] for m in models)


def test_selected_assets_only(data_root: Path):
    materialize(data_root, ["raw_records"], log_level="WARNING")
    assert any((data_root / "records").rglob("*.parquet"))
    assert not (data_root / "episodes").exists()
    assert not (data_root / "models").exists()


def test_each_session_asset_alone_gives_the_same_files_as_the_fused_pass(data_root: Path, tmp_path: Path):
    """The session assets share one step; selecting one of them reads what the previous stage wrote
    and must write exactly what the one-pass run writes."""
    import shutil

    materialize(data_root, log_level="WARNING")
    fused = _digest_tree(data_root)
    for area in ("records", "episodes", "snapshots", "models"):
        shutil.rmtree(data_root / area)
    for asset in ("raw_records", "episodes", "session_snapshot", "scenario_model", "global_model"):
        materialize(data_root, assets=(asset,), log_level="WARNING")
    assert _digest_tree(data_root) == fused

    instance = dg.DagsterInstance.get()
    runs = instance.get_runs()
    selections = [sorted(k.to_user_string() for k in (r.asset_selection or [])) for r in reversed(runs)]
    assert ["episodes"] in selections and ["raw_records"] in selections and ["session_snapshot"] in selections
    # Re-running one asset alone leaves a materialization for just that asset, counting every episode row.
    import pyarrow.parquet as pq

    rows = sum(pq.read_table(p).num_rows for p in (data_root / "episodes").rglob("*.parquet"))
    assert _latest_metadata(instance, "episodes")["dagster/row_count"] == rows > 0


def test_materialize_processes_only_new_and_relanded_sessions_unless_asked_for_all(data_root: Path):
    import os
    import shutil

    from swarm_learn_assets.core.storage.layout import DataLayout

    sessions, scenarios, _ = materialize(data_root, log_level="WARNING")
    layout = DataLayout(data_root)
    assert layout.stale_sessions(sessions, ("raw_records", "episodes", "session_snapshot")) == []
    instance = dg.DagsterInstance.get()
    runs = lambda job: len(instance.get_runs(dg.RunsFilter(job_name=job)))  # noqa: E731
    before = {job: runs(job) for job in ("process_sessions", "build_scenario_model")}
    stages = []
    materialize(data_root, log_level="WARNING", on_stage=stages.append)
    assert {job: runs(job) for job in before} == before  # nothing changed: no run at all
    assert "processing 0 session(s)" in stages[0] and "(8 up to date)" in stages[0]

    relanded = layout.landing(sessions[1])
    temp = relanded.with_name(".relanding.tmp")
    shutil.copyfile(relanded, temp)
    os.replace(temp, relanded)  # landed again: its outputs are now older than it
    snapshot = layout.snapshot(sessions[1]).stat().st_mtime_ns
    stages.clear()
    materialize(data_root, log_level="WARNING", on_stage=stages.append)
    assert "processing 1 session(s)" in stages[0] and layout.snapshot(sessions[1]).stat().st_mtime_ns > snapshot
    assert runs("process_sessions") == before["process_sessions"] + 1
    assert "building 1 scenario model(s) (1 up to date)" in stages[1]

    stages.clear()
    materialize(data_root, log_level="WARNING", on_stage=stages.append, everything=True)
    assert "processing 8 session(s)" in stages[0] and "building 2 scenario model(s)" in stages[1]


def test_runs_cover_neighbouring_partitions_only():
    from swarm_learn_assets.runner import contiguous_chunks

    ordered = ["a", "b", "c", "d", "e", "f", "g"]
    assert contiguous_chunks(ordered, ["b", "c", "e", "f", "g"], 2) == [["b", "c"], ["e", "f"], ["g"]]
    assert contiguous_chunks(ordered, ordered, 3) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert contiguous_chunks(ordered, ["g", "a"], 10) == [["a"], ["g"]] and contiguous_chunks(ordered, [], 5) == []
