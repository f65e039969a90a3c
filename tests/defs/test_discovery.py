"""The discovery sensor: registers new landing files, requests their processing once, caps each tick."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from swarm_learn_assets.defs import discovery
from swarm_learn_assets.defs.discovery import discover_sessions
from swarm_learn_assets.defs.resources import SwarmData


def _tick(instance: dg.DagsterInstance, root: Path) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, resources={"swarm_data": SwarmData(data_root=str(root))})
    return discover_sessions(context)


def _apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """What the daemon does with a tick's partition requests."""
    for request in result.dynamic_partitions_requests:
        if request.partition_keys:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_new_files_become_partitions_and_runs_with_file_derived_keys(data_root: Path):
    with dg.instance_for_test() as instance:
        first = _tick(instance, data_root)
        added = {r.partitions_def_name: list(r.partition_keys) for r in first.dynamic_partitions_requests}
        assert len(added["sessions"]) == 8 and added["scenarios"] == sorted({k.split(".")[0] for k in added["sessions"]})
        session_runs = [r for r in first.run_requests if r.job_name == "process_sessions"]
        assert sorted(r.partition_key for r in session_runs) == sorted(added["sessions"])
        _apply(instance, first)

        second = _tick(instance, data_root)
        assert all(not r.partition_keys for r in second.dynamic_partitions_requests)
        # Same files, same run keys: Dagster launches a run key once per sensor, so nothing runs twice.
        assert {r.run_key for r in second.run_requests if r.job_name == "process_sessions"} == {
            r.run_key for r in session_runs
        }

        scenario, session_id = added["sessions"][0].split(".")
        changed = data_root / "landing" / scenario / f"{session_id}.parquet"
        stat = changed.stat()  # a re-landed file: new modification time, new version
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        third = _tick(instance, data_root)
        keys3 = {r.partition_key: r.run_key for r in third.run_requests if r.job_name == "process_sessions"}
        keys2 = {r.partition_key: r.run_key for r in second.run_requests if r.job_name == "process_sessions"}
        differing = [k for k in keys3 if keys3[k] != keys2[k]]
        assert differing == [added["sessions"][0]]


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
