"""Session discovery: new landing files become partitions and get processed, exactly once per file
version; a processing run that failed is requested again on later ticks (at most MAX_ATTEMPTS runs per
request), with the failure's reason in the tick's log."""

import base64
import hashlib
import json
import zlib

import dagster as dg

from .failures import run_failure_reason
from .jobs import process_sessions_job, scenario_model_job
from .records import RAW_RECORDS
from .partitions import SCENARIOS, SESSIONS
from .resources import SwarmData

MAX_NEW_SESSIONS_PER_TICK = 200
# The run tags with which Dagster hands a partition range to one run (as backfills do).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def file_run_key(key: str, size: int, mtime_ns: int) -> str:
    """Same file, same key: a re-landed (changed) file is processed again, an unchanged one never."""
    return f"{key}:{size}:{mtime_ns}"


MAX_ATTEMPTS = 3  # runs per processing request: the first and two retries
RUN_KEY_TAG = "dagster/run_key"  # set by Dagster on every run a sensor requested


def _load_cursor(cursor: str | None) -> tuple[dict[str, str], dict[str, dict]]:
    """(file versions already requested, processing requests whose run has not succeeded yet)."""
    state = json.loads(zlib.decompress(base64.b64decode(cursor))) if cursor else {}
    if "versions" not in state:  # a cursor written before retries: versions only
        return state, {}
    return state["versions"], state["pending"]


def _dump_cursor(versions: dict[str, str], pending: dict[str, dict]) -> str:
    """Compressed: the cursor holds one entry per session."""
    payload = {"versions": versions, "pending": pending}
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


@dg.sensor(
    jobs=[process_sessions_job, scenario_model_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers new landing files as session/scenario partitions and requests their processing.",
)
def discover_sessions(context: dg.SensorEvaluationContext, swarm_data: SwarmData) -> dg.SensorResult:
    layout = swarm_data.layout
    files, refused = layout.scan_landing()
    for message in refused:
        context.log.warning(message)
    versions, pending = _load_cursor(context.cursor)
    retries = _retries(context, pending)
    known_sessions = set(context.instance.get_dynamic_partitions(SESSIONS))
    known_scenarios = set(context.instance.get_dynamic_partitions(SCENARIOS))
    processed = context.instance.get_materialized_partitions(RAW_RECORDS) if known_sessions else set()
    current = {f.key: (f, f.path.stat()) for f in files}
    new = [f for f in files if f.key not in known_sessions][:MAX_NEW_SESSIONS_PER_TICK]
    new_scenarios = sorted({f.scenario for f in new} - known_scenarios)
    runs = []
    if new:
        # All of a tick's new sessions in one run: they are added in this order, so they form a range.
        keys = [f.key for f in new]
        batch = "\n".join(file_run_key(k, current[k][1].st_size, current[k][1].st_mtime_ns) for k in keys)
        runs.append(dg.RunRequest(
            run_key=f"new:{hashlib.sha256(batch.encode()).hexdigest()[:16]}",
            job_name=process_sessions_job.name,
            tags={RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]},
        ))
    for key, (f, stat) in sorted(current.items()):
        version = f"{stat.st_size}:{stat.st_mtime_ns}"
        if key in known_sessions and versions.get(key) is None and key in processed:
            versions[key] = version  # processed before the sensor saw it (e.g. by `swarm-learn materialize`)
        elif key in known_sessions and versions.get(key) != version:
            runs.append(dg.RunRequest(  # a re-landed file, or one registered but never processed
                run_key=file_run_key(key, stat.st_size, stat.st_mtime_ns),
                job_name=process_sessions_job.name,
                partition_key=key,
            ))
            versions[key] = version
    for f in new:
        versions[f.key] = f"{current[f.key][1].st_size}:{current[f.key][1].st_mtime_ns}"
    # A scenario model is rebuilt once every registered session of it has a snapshot; the run key is
    # the set of snapshot files, so an unchanged scenario is never rebuilt.
    for scenario in sorted(known_scenarios):
        keys = [k for k in known_sessions if k.startswith(f"{scenario}.")]
        snaps = [layout.snapshot(k) for k in sorted(keys)]
        if snaps and all(p.is_file() for p in snaps):
            digest = hashlib.sha256(
                "\n".join(f"{p.name}:{p.stat().st_mtime_ns}" for p in snaps).encode()
            ).hexdigest()[:16]
            runs.append(
                dg.RunRequest(
                    run_key=f"scenario_model:{scenario}:{digest}",
                    job_name=scenario_model_job.name,
                    partition_key=scenario,
                )
            )
    for request in runs:
        if request.job_name == process_sessions_job.name:
            pending[request.run_key] = _pending(request)
    context.log.info(f"{len(new)} new session(s), {len(new_scenarios)} new scenario(s), {len(retries)} retried")
    return dg.SensorResult(
        run_requests=[*runs, *retries],
        cursor=_dump_cursor(versions, pending),
        dynamic_partitions_requests=[
            dg.AddDynamicPartitionsRequest(SESSIONS, [f.key for f in new]),
            dg.AddDynamicPartitionsRequest(SCENARIOS, new_scenarios),
        ],
    )

