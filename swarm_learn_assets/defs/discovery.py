"""Session discovery: new landing files become partitions and get processed, exactly once per file
version; a processing run that failed is requested again on later ticks (at most MAX_ATTEMPTS runs per
request), with the failure's reason in the tick's log."""

import base64
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ..core.storage.landing_watch import (
    LANDING_SUFFIX,
    LandedFile,
    ScenarioWatch,
    advance,
    changed_files,
    folder_mtime_ns,
    needs_scan,
    scan_scenario,
)
from ..core.storage.layout import DataLayout
from .failures import run_failure_reason
from .jobs import process_sessions_job, scenario_model_job
from .partitions import SCENARIOS, SESSIONS
from .records import RAW_RECORDS
from .resources import SwarmData

# The run tags with which Dagster hands a partition range to one run (as backfills do).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def file_run_key(key: str, size: int, mtime_ns: int) -> str:
    """Same file, same key: a re-landed (changed) file is processed again, an unchanged one never."""
    return f"{key}:{size}:{mtime_ns}"


MAX_ATTEMPTS = 3  # runs per processing request: the first and two retries
RUN_KEY_TAG = "dagster/run_key"  # set by Dagster on every run a sensor requested


def _load_cursor(cursor: str | None) -> tuple[dict[str, ScenarioWatch], dict[str, dict]]:
    """(what the last look at each scenario folder saw, processing requests whose run has not
    succeeded yet). A cursor from before the folder watch keeps its pending requests; its
    scenarios are looked at afresh."""
    state = json.loads(zlib.decompress(base64.b64decode(cursor))) if cursor else {}
    watches = {name: ScenarioWatch.from_json(w) for name, w in state.get("scenarios", {}).items()}
    return watches, state.get("pending", {})


def _dump_cursor(watches: dict[str, ScenarioWatch], pending: dict[str, dict]) -> str:
    payload = {"scenarios": {name: w.to_json() for name, w in sorted(watches.items())}, "pending": pending}
    return base64.b64encode(zlib.compress(json.dumps(payload, sort_keys=True).encode())).decode()


def _pending(request: dg.RunRequest, attempts: int = 1) -> dict:
    return {"attempts": attempts, "partition_key": request.partition_key, "tags": dict(request.tags or {})}


def _retries(context: dg.SensorEvaluationContext, pending: dict[str, dict]) -> list[dg.RunRequest]:
    """Follow the processing requests in flight: a succeeded run ends its entry, a failed or
    canceled one is requested again under a new run key until MAX_ATTEMPTS runs have failed."""
    retries = []
    for run_key, entry in sorted(pending.items()):
        runs = context.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
        if not runs or runs[0].status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            if runs and runs[0].status == dg.DagsterRunStatus.SUCCESS:
                del pending[run_key]
            continue  # not launched yet, or still queued / running
        del pending[run_key]
        reason = run_failure_reason(context.instance, runs[0].run_id)
        attempts = entry["attempts"]
        if attempts >= MAX_ATTEMPTS:
            context.log.error(f"giving up on {run_key} after {attempts} failed runs (last {runs[0].run_id}: "
                              f"{reason}); it runs again when its landing file changes")
            continue
        retry = dg.RunRequest(run_key=f"{run_key.split(':retry')[0]}:retry{attempts}",
                              job_name=process_sessions_job.name, partition_key=entry["partition_key"],
                              tags=entry["tags"])  # fmt: skip
        context.log.warning(f"retrying {run_key} (attempt {attempts + 1} of {MAX_ATTEMPTS}): "
                            f"run {runs[0].run_id} failed: {reason}")
        pending[retry.run_key] = _pending(retry, attempts + 1)
        retries.append(retry)
    return retries


@dataclass(frozen=True)
class DiscoverySettings:
    """How discovery paces itself. A tick with nothing new costs a few `stat` calls, so the sensor
    can look often: a landed session's processing starts within seconds (DESIGN §11; it was 30 s).
    Every scenario folder is read in full every `rescan_seconds` even if its time did not move: the
    net for a landing file rewritten in place instead of renamed into place."""

    interval_seconds: int = 5
    rescan_seconds: float = 300
    max_new_sessions_per_tick: int = 200


def session_discovery(settings: DiscoverySettings = DiscoverySettings()) -> dg.SensorDefinition:
    """The discovery sensor, paced by `settings`."""

    @dg.sensor(
        jobs=[process_sessions_job, scenario_model_job],
        minimum_interval_seconds=settings.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Registers new landing files as session/scenario partitions and requests their processing.",
    )
    def discover_sessions(context: dg.SensorEvaluationContext, swarm_data: SwarmData) -> dg.SensorResult:
        return discover(context, swarm_data.layout, settings)

    return discover_sessions


def discover(context: dg.SensorEvaluationContext, layout: DataLayout, settings: DiscoverySettings) -> dg.SensorResult:
    """A tick reads only the scenario folders whose modification time moved (or whose rescan is
    due), so with nothing new it costs a few `stat` calls per scenario whatever the history."""
    watches, pending = _load_cursor(context.cursor)
    retries = _retries(context, pending)
    landing = layout.folder("landing")
    folders = sorted(p for p in landing.iterdir() if p.is_dir()) if landing.is_dir() else []
    new, runs = _look_at_folders(context, folders, watches, settings)
    if new:
        # All of a tick's new sessions in one run: they are added in this order, so they form a range.
        keys = [f.key for f in new]
        batch = "\n".join(file_run_key(f.key, f.size, f.mtime_ns) for f in new)
        runs.insert(0, dg.RunRequest(
            run_key=f"new:{hashlib.sha256(batch.encode()).hexdigest()[:16]}",
            job_name=process_sessions_job.name,
            tags={RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]},
        ))
    known_scenarios = set(context.instance.get_dynamic_partitions(SCENARIOS))
    new_scenarios = sorted({f.scenario for f in new} - known_scenarios)
    runs += _scenario_model_requests(layout, folders, watches, known_scenarios)
    for request in runs:
        if request.job_name == process_sessions_job.name:
            pending[request.run_key] = _pending(request)
    context.log.info(f"{len(new)} new session(s), {len(new_scenarios)} new scenario(s), {len(retries)} retried")
    return dg.SensorResult(
        run_requests=[*runs, *retries],
        cursor=_dump_cursor(watches, pending),
        dynamic_partitions_requests=[
            dg.AddDynamicPartitionsRequest(SESSIONS, [f.key for f in new]),
            dg.AddDynamicPartitionsRequest(SCENARIOS, new_scenarios),
        ],
    )


def _look_at_folders(context: dg.SensorEvaluationContext, folders: list[Path], watches: dict[str, ScenarioWatch],
                     settings: DiscoverySettings) -> tuple[list[LandedFile], list[dg.RunRequest]]:
    """The new sessions (at most `max_new_sessions_per_tick`) and the re-landed or never processed
    ones to run again, from the folders that moved or are due a rescan; `watches` advance past them."""
    now = time.time()
    lookup = _PartitionLookup(context.instance)
    new: list[LandedFile] = []
    runs: list[dg.RunRequest] = []
    for folder in folders:
        scenario = folder.name
        watch = watches.get(scenario)
        mtime = folder_mtime_ns(folder)
        if not needs_scan(watch, mtime, now, settings.rescan_seconds):
            continue
        files, refused = scan_scenario(folder)
        for message in refused:
            context.log.warning(message)
        changed = changed_files(files, watch)
        room = settings.max_new_sessions_per_tick - len(new)
        handled: list[LandedFile] = []
        for f in changed:
            if not lookup.registered(f.key, first_look=watch is None):
                if room <= 0:
                    break  # the rest of this folder waits for the next tick
                new.append(f)
                room -= 1
            elif not lookup.processed_since(f, first_look=watch is None):
                runs.append(dg.RunRequest(  # a re-landed file, or one registered but never processed
                    run_key=file_run_key(f.key, f.size, f.mtime_ns), job_name=process_sessions_job.name,
                    partition_key=f.key))
            handled.append(f)
        watch = watch or ScenarioWatch()
        advance(watch, handled)
        complete = len(handled) == len(changed)
        watch.folder_mtime_ns = mtime if complete else -1  # a capped folder is read again next tick
        watch.scanned_at = now
        watches[scenario] = watch
    return new, runs


class _PartitionLookup:
    """The instance's view of a session, asked only for files that changed: one query per file
    after the first look, the whole partition sets once when a scenario is seen for the first time."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self._registered: set[str] | None = None
        self._processed: set[str] | None = None

    def _load_all(self) -> None:
        if self._processed is None:
            self._registered = set(self.instance.get_dynamic_partitions(SESSIONS))
            self._processed = self.instance.get_materialized_partitions(RAW_RECORDS)

    def registered(self, key: str, first_look: bool) -> bool:
        if first_look:
            self._load_all()
        if self._registered is not None:
            return key in self._registered
        return self.instance.has_dynamic_partition(SESSIONS, key)

    def processed_since(self, f: LandedFile, first_look: bool) -> bool:
        """Whether `raw_records` of this session was materialized after the file got its bytes: on a
        first look (a new sensor, or sessions `swarm-learn materialize` processed), any
        materialization counts, as the sensor cannot know which version it read."""
        if first_look:
            self._load_all()
            return f.key in self._processed
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=RAW_RECORDS, asset_partitions=[f.key]), limit=1).records
        return bool(records) and records[0].timestamp * 1e9 > f.ctime_ns


def _scenario_model_requests(layout: DataLayout, folders: list[Path], watches: dict[str, ScenarioWatch],
                             known_scenarios: set[str]) -> list[dg.RunRequest]:
    """A scenario model is rebuilt once every landed session of it has a snapshot; looked at only
    when the scenario's snapshot folder changed, and the run key is that folder's time, so an
    unchanged scenario is never rebuilt."""
    requests = []
    for folder in folders:
        scenario, watch = folder.name, watches.get(folder.name)
        if scenario not in known_scenarios or watch is None:  # registered scenarios have valid names
            continue
        snapshots = layout.snapshot_dir(scenario)
        mtime = folder_mtime_ns(snapshots)
        if mtime < 0 or mtime == watch.snapshots_mtime_ns:
            continue
        if (landed := _stems(folder, LANDING_SUFFIX)) and landed <= _stems(snapshots, ".json"):
            watch.snapshots_mtime_ns = mtime
            requests.append(dg.RunRequest(run_key=f"scenario_model:{scenario}:{mtime}",
                                          job_name=scenario_model_job.name, partition_key=scenario))
    return requests


def _stems(folder: Path, suffix: str) -> set[str]:
    """The names of a folder's files with this suffix, without it."""
    with os.scandir(folder) as entries:
        return {e.name[: -len(suffix)] for e in entries if e.name.endswith(suffix)}
