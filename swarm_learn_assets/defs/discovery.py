"""Session discovery: new landing files become partitions and get processed, exactly once per file version."""

import hashlib

import dagster as dg

from .jobs import process_sessions_job, scenario_model_job
from .partitions import SCENARIOS, SESSIONS
from .resources import SwarmData

MAX_NEW_SESSIONS_PER_TICK = 200


def file_run_key(key: str, size: int, mtime_ns: int) -> str:
    """Same file, same key: a re-landed (changed) file is processed again, an unchanged one never."""
    return f"{key}:{size}:{mtime_ns}"


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
    known_sessions = set(context.instance.get_dynamic_partitions(SESSIONS))
    known_scenarios = set(context.instance.get_dynamic_partitions(SCENARIOS))
    new = [f for f in files if f.key not in known_sessions][:MAX_NEW_SESSIONS_PER_TICK]
    new_scenarios = sorted({f.scenario for f in new} - known_scenarios)
    runs = []
    for f in files:
        if f.key in known_sessions or f in new:
            stat = f.path.stat()
            runs.append(
                dg.RunRequest(
                    run_key=file_run_key(f.key, stat.st_size, stat.st_mtime_ns),
                    job_name=process_sessions_job.name,
                    partition_key=f.key,
                )
            )
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
    context.log.info(f"{len(new)} new session(s), {len(new_scenarios)} new scenario(s)")
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[
            dg.AddDynamicPartitionsRequest(SESSIONS, [f.key for f in new]),
            dg.AddDynamicPartitionsRequest(SCENARIOS, new_scenarios),
        ],
    )

