"""The instance template's event log: pooled, batched SQLite that stores the same events as Dagster's."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from swarm_learn_assets.defs.instance_storage import EVENT_BATCH_SIZE_ENV, PooledSqliteEventLogStorage
from swarm_learn_assets.runner import materialize, prepare_instance


def test_template_instance_uses_the_pooled_event_log_and_turns_batching_on(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    instance = prepare_instance(tmp_path / "home")
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    assert (tmp_path / "home" / "history" / "runs" / "index.db").is_file()
    assert int(os.environ[EVENT_BATCH_SIZE_ENV]) > 1


def test_batched_partition_events_are_complete_and_in_order(data_root: Path):
    sessions, _, _ = materialize(data_root, assets=("raw_records", "episodes"), log_level="WARNING")
    instance = dg.DagsterInstance.get()
    key = dg.AssetKey("episodes")

    found = instance.fetch_materializations(key, limit=100).records
    assert sorted(r.partition_key for r in found) == sorted(sessions)
    assert instance.get_materialized_partitions(key) == set(sessions)
    # Every planned partition was followed by its materialization (nothing looks in progress or failed).
    attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(key)
    assert attempts == {}
    # The asset row points at the newest materialization of the run.
    run_id = found[0].run_id
    latest = instance.get_latest_materialization_event(key)
    assert latest is not None and latest.run_id == run_id

    # The run's own log holds one planned event and one materialization per partition and asset,
    # the check's planned event that was batched among them, in storage order.
    logs = instance.all_logs(run_id)
    planned = [e for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED]
    done = [e for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    checks = [e for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED]
    assert len(planned) == len(done) == 2 * len(sessions)
    assert len(checks) == 2
    assert {e.get_dagster_event().partition for e in done} == set(sessions)
    records = instance.get_records_for_run(run_id).records
    assert [r.storage_id for r in records] == sorted(r.storage_id for r in records)
