"""The discovery sensor: registers new landing files, requests their processing once, caps each tick."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from swarm_learn_assets.defs import discovery
from swarm_learn_assets.defs.discovery import discover_sessions
from swarm_learn_assets.defs.resources import SwarmData


def _tick(instance: dg.DagsterInstance, root: Path, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"swarm_data": SwarmData(data_root=str(root))})
    return discover_sessions(context)


def _apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """What the daemon does with a tick's partition requests."""
    for request in result.dynamic_partitions_requests:
        if request.partition_keys:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def _session_runs(result: dg.SensorResult) -> list[dg.RunRequest]:
    return [r for r in result.run_requests if r.job_name == "process_sessions"]


def test_new_files_become_partitions_and_one_batched_run(data_root: Path):
    with dg.instance_for_test() as instance:
        first = _tick(instance, data_root)
        added = {r.partitions_def_name: list(r.partition_keys) for r in first.dynamic_partitions_requests}
        assert len(added["sessions"]) == 8 and added["scenarios"] == sorted({k.split(".")[0] for k in added["sessions"]})
        (batch,) = _session_runs(first)  # one run for the whole tick's new sessions, not one per file
        assert batch.partition_key is None
        assert (batch.tags[discovery.RANGE_START_TAG], batch.tags[discovery.RANGE_END_TAG]) == (
            added["sessions"][0], added["sessions"][-1])
        _apply(instance, first)
        assert instance.get_dynamic_partitions("sessions") == added["sessions"]  # the range is exactly them

        second = _tick(instance, data_root, first.cursor)
        assert all(not r.partition_keys for r in second.dynamic_partitions_requests)
        assert _session_runs(second) == []  # nothing runs twice

        scenario, session_id = added["sessions"][0].split(".")
        changed = data_root / "landing" / scenario / f"{session_id}.parquet"
        stat = changed.stat()  # a re-landed file: new modification time, new version
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        third = _tick(instance, data_root, second.cursor)
        assert [(r.partition_key, r.run_key) for r in _session_runs(third)] == [
            (added["sessions"][0], discovery.file_run_key(added["sessions"][0], stat.st_size, stat.st_mtime_ns + 10**9))
        ]
        assert _session_runs(_tick(instance, data_root, third.cursor)) == []


def test_sessions_processed_before_the_sensor_saw_them_are_not_run_again(data_root: Path):
    from swarm_learn_assets.runner import materialize

    materialize(data_root, assets=("raw_records",), log_level="WARNING")  # registers and processes
    instance = dg.DagsterInstance.get()
    first = _tick(instance, data_root)
    assert _session_runs(first) == []
    assert _session_runs(_tick(instance, data_root, first.cursor)) == []


def test_new_sessions_per_tick_are_capped(data_root: Path, monkeypatch):
    monkeypatch.setattr(discovery, "MAX_NEW_SESSIONS_PER_TICK", 3)
    with dg.instance_for_test() as instance:
        first = _tick(instance, data_root)
        sessions = [r for r in first.dynamic_partitions_requests if r.partitions_def_name == "sessions"][0]
        assert len(sessions.partition_keys) == 3
        _apply(instance, first)
        second = _tick(instance, data_root)
        sessions = [r for r in second.dynamic_partitions_requests if r.partitions_def_name == "sessions"][0]
        assert len(sessions.partition_keys) == 3
        assert not set(sessions.partition_keys) & set(instance.get_dynamic_partitions("sessions"))


def test_scenario_model_is_requested_once_all_snapshots_exist(data_root: Path):
    from swarm_learn_assets.core import stages
    from swarm_learn_assets.core.layout import DataLayout

    with dg.instance_for_test() as instance:
        _apply(instance, _tick(instance, data_root))
        assert not [r for r in _tick(instance, data_root).run_requests if r.job_name == "build_scenario_model"]
        layout = DataLayout(data_root)
        keys = instance.get_dynamic_partitions("sessions")
        stages.ingest_sessions(layout, keys)
        stages.build_session_episodes(layout, keys)
        stages.build_session_snapshots(layout, keys)
        model_runs = [r for r in _tick(instance, data_root).run_requests if r.job_name == "build_scenario_model"]
        assert sorted(r.partition_key for r in model_runs) == instance.get_dynamic_partitions("scenarios")
        again = [r for r in _tick(instance, data_root).run_requests if r.job_name == "build_scenario_model"]
        assert {r.run_key for r in again} == {r.run_key for r in model_runs}
