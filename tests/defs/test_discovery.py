"""The discovery sensor: registers new landing files, requests their processing once, caps each tick."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from swarm_learn_assets.defs import discovery
from swarm_learn_assets.defs.discovery import DiscoverySettings, session_discovery
from swarm_learn_assets.defs.resources import SwarmData


def _tick(instance: dg.DagsterInstance, root: Path, cursor: str | None = None,
          settings: DiscoverySettings = DiscoverySettings()) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"swarm_data": SwarmData(data_root=str(root))})
    return session_discovery(settings)(context)


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
        stat = _reland(changed)
        third = _tick(instance, data_root, second.cursor)
        assert [(r.partition_key, r.run_key) for r in _session_runs(third)] == [
            (added["sessions"][0], discovery.file_run_key(added["sessions"][0], stat.st_size, stat.st_mtime_ns))
        ]
        assert _session_runs(_tick(instance, data_root, third.cursor)) == []


def _reland(path: Path) -> os.stat_result:
    """A session landed again the way the contract lands files: a temporary name, then a rename."""
    import shutil

    temp = path.with_name(f".{path.name}.tmp")
    shutil.copyfile(path, temp)
    stat = temp.stat()
    os.utime(temp, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new version, whatever the clock
    os.replace(temp, path)
    return path.stat()


def test_a_tick_with_nothing_new_reads_no_landing_folder(data_root: Path, monkeypatch):
    """Nothing landed: the folders' times did not move, so no folder is listed, however many files."""
    with dg.instance_for_test() as instance:
        first = _tick(instance, data_root)
        _apply(instance, first)
        scans = []
        monkeypatch.setattr(discovery, "scan_scenario", lambda folder: scans.append(folder) or ([], []))
        quiet = _tick(instance, data_root, first.cursor)
        assert scans == [] and _session_runs(quiet) == []


def test_a_file_rewritten_in_place_is_found_by_the_periodic_rescan(data_root: Path):
    with dg.instance_for_test() as instance:
        first = _tick(instance, data_root)
        _apply(instance, first)
        key = instance.get_dynamic_partitions("sessions")[0]
        scenario, session_id = key.split(".")
        path = data_root / "landing" / scenario / f"{session_id}.parquet"
        path.write_bytes(path.read_bytes())  # same folder time: only the rescan can see it
        assert _session_runs(_tick(instance, data_root, first.cursor)) == []
        stat = path.stat()
        rescanned = _tick(instance, data_root, first.cursor, DiscoverySettings(rescan_seconds=0))
        assert [(r.partition_key, r.run_key) for r in _session_runs(rescanned)] == [
            (key, discovery.file_run_key(key, stat.st_size, stat.st_mtime_ns))]


def test_sessions_processed_before_the_sensor_saw_them_are_not_run_again(data_root: Path):
    from swarm_learn_assets.runner import materialize

    materialize(data_root, assets=("raw_records",), log_level="WARNING")  # registers and processes
    instance = dg.DagsterInstance.get()
    first = _tick(instance, data_root)
    assert _session_runs(first) == []
    assert _session_runs(_tick(instance, data_root, first.cursor)) == []


def test_new_sessions_per_tick_are_capped(data_root: Path):
    capped = DiscoverySettings(max_new_sessions_per_tick=3)
    with dg.instance_for_test() as instance:
        first = _tick(instance, data_root, settings=capped)
        sessions = [r for r in first.dynamic_partitions_requests if r.partitions_def_name == "sessions"][0]
        assert len(sessions.partition_keys) == 3
        _apply(instance, first)
        second = _tick(instance, data_root, settings=capped)
        sessions = [r for r in second.dynamic_partitions_requests if r.partitions_def_name == "sessions"][0]
        assert len(sessions.partition_keys) == 3
        assert not set(sessions.partition_keys) & set(instance.get_dynamic_partitions("sessions"))


def test_scenario_model_is_requested_once_all_snapshots_exist(data_root: Path):
    from swarm_learn_assets.core.stages import session_batch as stages
    from swarm_learn_assets.core.storage.layout import DataLayout

    with dg.instance_for_test() as instance:
        _apply(instance, _tick(instance, data_root))
        assert not [r for r in _tick(instance, data_root).run_requests if r.job_name == "build_scenario_model"]
        layout = DataLayout(data_root)
        keys = instance.get_dynamic_partitions("sessions")
        for step in stages.STEPS:  # one stage after the other, as separate runs would
            stages.process_sessions(layout, keys, [step])
        model_runs = [r for r in _tick(instance, data_root).run_requests if r.job_name == "build_scenario_model"]
        assert sorted(r.partition_key for r in model_runs) == instance.get_dynamic_partitions("scenarios")
        again = [r for r in _tick(instance, data_root).run_requests if r.job_name == "build_scenario_model"]
        assert {r.run_key for r in again} == {r.run_key for r in model_runs}  # same snapshots, same keys


def _execute(instance: dg.DagsterInstance, request: dg.RunRequest) -> bool:
    """What the daemon does with a run request: a run of the job, tagged with its run key."""
    from swarm_learn_assets.definitions import build_definitions

    result = build_definitions().resolve_job_def(request.job_name).execute_in_process(
        instance=instance, partition_key=request.partition_key, raise_on_error=False,
        tags={**request.tags, discovery.RUN_KEY_TAG: request.run_key},
    )  # fmt: skip
    return result.success


def test_a_failed_run_is_retried_with_its_reason_until_the_attempts_run_out(data_root: Path, capfd):
    """The tick's log (what the UI shows under the sensor's tick) says why and which attempt."""
    blocker = data_root / "records" / sorted(p.name for p in (data_root / "landing").iterdir())[0]
    blocker.parent.mkdir()
    blocker.write_text("in the way")  # every processing run fails until this file goes
    with dg.instance_for_test() as instance:
        tick = _tick(instance, data_root)
        _apply(instance, tick)
        (request,) = _session_runs(tick)
        first_key = request.run_key
        for attempt in range(2, discovery.MAX_ATTEMPTS + 1):
            assert not _execute(instance, request)
            capfd.readouterr()
            tick = _tick(instance, data_root, tick.cursor)
            (request,) = _session_runs(tick)
            assert request.run_key == f"{first_key}:retry{attempt - 1}"
            assert request.tags[discovery.RANGE_START_TAG] == instance.get_dynamic_partitions("sessions")[0]
            logged = capfd.readouterr().err
            assert f"attempt {attempt} of {discovery.MAX_ATTEMPTS}" in logged
            assert f"{blocker} is a file where the output folder" in logged  # the reason, on the tick
        assert not _execute(instance, request)
        capfd.readouterr()
        tick = _tick(instance, data_root, tick.cursor)
        assert _session_runs(tick) == [] and f"giving up on {first_key}:retry2 after 3 failed runs" in capfd.readouterr().err
        assert _session_runs(_tick(instance, data_root, tick.cursor)) == []  # bounded: no more retries


def test_a_retry_that_succeeds_ends_the_retries(data_root: Path):
    blocker = data_root / "records" / sorted(p.name for p in (data_root / "landing").iterdir())[0]
    blocker.parent.mkdir()
    blocker.write_text("in the way")
    with dg.instance_for_test() as instance:
        tick = _tick(instance, data_root)
        _apply(instance, tick)
        assert not _execute(instance, _session_runs(tick)[0])
        blocker.unlink()  # the operator fixed it
        tick = _tick(instance, data_root, tick.cursor)
        assert _execute(instance, _session_runs(tick)[0])
        tick = _tick(instance, data_root, tick.cursor)
        assert _session_runs(tick) == []
        assert len(instance.get_materialized_partitions(dg.AssetKey("raw_records"))) == 8
