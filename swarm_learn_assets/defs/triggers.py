"""Training triggers on Dagster's daemon: a sensor (every minute, over the records since its cursor)
and a schedule (the reference daemon's check interval) tick, and one evaluator decides for both, over
every rule of a scenario's trigger; a state that fired is claimed, so it starts one training whatever
ticked. Counts come from Dagster's own records: per-session observations of `episodes`, each session's
content counted once.

The settings (`TriggerSettings`, from the YAML file named by `$SWARM_LEARN_TRIGGERS`, see
`core/triggers/spec.py`) are passed in: `training_automation(settings)` builds the sensor and the
schedule, and `definitions.py` reads the file once when Dagster loads the code; a bad spec stops the
definitions from loading, with the offending token in the message.
"""

import json
import time
from pathlib import Path

import dagster as dg

from ..core.storage.locks import file_lock
from ..core.triggers.spec import TriggerSettings, check_interval_cron
from ..core.triggers.state import (
    ScenarioState,
    SessionCount,
    TrainingState,
    explain,
    fold_session_counts,
    quality_window,
)
from .episodes import EPISODES, TASK_EPISODES, TASK_SUCCESSES
from .jobs import MODE_JOBS, SCENARIO_TAG
from .partitions import SCENARIOS
from .training import LORA_ADAPTER

PAGE = 1000
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def _count(record) -> SessionCount:
    metadata = record.asset_observation.metadata
    return SessionCount(int(metadata[TASK_EPISODES].value), int(metadata[TASK_SUCCESSES].value))


def _counts_before(instance: dg.DagsterInstance, keys: list[str], storage_id: int) -> dict[str, SessionCount]:
    """Each session's latest count observed before `storage_id`, if any (newest first, so the first
    record of a key is its latest)."""
    found: dict[str, SessionCount] = {}
    for start in range(0, len(keys), PAGE):
        chunk, cursor = keys[start:start + PAGE], None
        while True:
            page = instance.fetch_observations(
                dg.AssetRecordsFilter(EPISODES, asset_partitions=chunk, before_storage_id=storage_id),
                limit=PAGE, cursor=cursor)  # fmt: skip
            for record in page.records:
                found.setdefault(record.partition_key, _count(record))
            cursor = page.cursor
            if not page.has_more or all(k in found for k in chunk):
                break
    return found


def fold_observations(instance: dg.DagsterInstance, state: TrainingState, records: list,
                      settings: TriggerSettings, scenario: str | None = None) -> None:  # fmt: skip
    """Add a page of session observations (oldest first), each compared with the same session's
    observation before it, wherever that is: in this page, or before it in the event log. Runs that
    interleave their events, or storages that write them one at a time, count the same."""
    records = [r for r in records if r.partition_key and (scenario is None or r.partition_key.startswith(f"{scenario}."))]
    if not records:
        return
    previous = _counts_before(instance, sorted({r.partition_key for r in records}), records[0].storage_id)
    observed = []
    for record in records:
        count = _count(record)
        observed.append((record.partition_key, count, previous.get(record.partition_key)))
        previous[record.partition_key] = count
    fold_session_counts(state, observed, lambda name: quality_window(settings.trigger_for(name)))


def fold_new_records(instance: dg.DagsterInstance, state: TrainingState, settings: TriggerSettings) -> None:
    """Everything recorded since the cursor: new session observations, then trainings (which reset counts)."""
    while True:
        page = instance.fetch_observations(EPISODES, limit=PAGE, cursor=state.episodes_cursor, ascending=True)
        fold_observations(instance, state, page.records, settings)
        state.episodes_cursor = page.cursor or state.episodes_cursor
        if not page.has_more:
            break
    while True:
        page = instance.fetch_materializations(LORA_ADAPTER, limit=PAGE, cursor=state.training_cursor, ascending=True)
        for record in page.records:
            state.scenario(record.partition_key).trained(int(record.timestamp * 1000))
        state.training_cursor = page.cursor or state.training_cursor
        if not page.has_more:
            break


def state_since_training(instance: dg.DagsterInstance, scenario: str, settings: TriggerSettings) -> ScenarioState:
    """One scenario's state from the records since its last training (for the schedule and the CLI):
    the cost is bounded by what happened since then, not by the whole history."""
    state = TrainingState()
    latest = instance.fetch_materializations(dg.AssetRecordsFilter(LORA_ADAPTER, asset_partitions=[scenario]), limit=1)
    after = None
    if latest.records:
        after = latest.records[0].storage_id
        state.scenario(scenario).trained(int(latest.records[0].timestamp * 1000))
    cursor = None
    while True:
        page = instance.fetch_observations(dg.AssetRecordsFilter(EPISODES, after_storage_id=after), limit=PAGE,
                                           cursor=cursor, ascending=True)
        fold_observations(instance, state, page.records, settings, scenario)
        cursor = page.cursor
        if not page.has_more:
            break
    return state.scenario(scenario)


def training_in_flight(instance: dg.DagsterInstance, scenario: str) -> bool:
    return bool(instance.get_run_ids(dg.RunsFilter(tags={SCENARIO_TAG: scenario}, statuses=ACTIVE), limit=1))


def request_training(scenario: str, scenario_state: ScenarioState, reason: str, settings: TriggerSettings) -> dg.RunRequest:
    """The run key is the state that fired: the same episodes since the same training never fire twice."""
    job = MODE_JOBS[settings.mode]
    return dg.RunRequest(
        run_key=f"train:{job.name}:{scenario}:{scenario_state.episodes}:{scenario_state.last_training_ms}",
        job_name=job.name,
        partition_key=scenario,
        run_config=json.loads(settings.run_config),
        tags={SCENARIO_TAG: scenario, "swarm-learn/trigger": reason[:250]},
    )


CLAIM_PREFIX = "swarm-learn/training-requested/"


def claim(instance: dg.DagsterInstance, run_key: str) -> bool:
    """Record that a training was requested for this state; False if it already was, by the sensor
    or the schedule. Dagster deduplicates run keys per sensor or schedule only, and a run appears
    only after the tick that asked for it, so the two would otherwise both start one."""
    with file_lock(Path(instance.root_directory) / ".swarm-learn-training-claims.lock"):
        key = CLAIM_PREFIX + run_key
        if instance.run_storage.get_cursor_values({key}):
            return False
        instance.run_storage.set_cursor_values({key: str(int(time.time() * 1000))})
    return True


def evaluate(instance: dg.DagsterInstance, states: dict[str, ScenarioState], now_ms: int,
             settings: TriggerSettings) -> tuple[list[dg.RunRequest], list[str]]:  # fmt: skip
    """The one place that decides, for the sensor and the schedule alike: every rule of each
    scenario's trigger, at most one request per state, none while a training of it runs."""
    requests, notes = [], []
    for scenario, scenario_state in sorted(states.items()):
        trigger = settings.trigger_for(scenario)
        ctx = scenario_state.context(now_ms, quality_window(trigger))
        if not trigger.should_train(ctx):
            continue
        reason = explain(trigger, ctx)
        if training_in_flight(instance, scenario):
            notes.append(f"{scenario}: would train ({reason}), but a training run is already queued or running")
            continue
        request = request_training(scenario, scenario_state, reason, settings)
        if not claim(instance, request.run_key):
            notes.append(f"{scenario}: would train ({reason}), but a training was already requested for this state")
            continue
        requests.append(request)
        notes.append(f"{scenario}: training ({reason})")
    return requests, notes


def training_automation(settings: TriggerSettings) -> tuple[dg.SensorDefinition, dg.ScheduleDefinition]:
    """The training sensor and the check-interval schedule for these trigger settings (the
    schedule's cron and job follow the settings, so they are built from them)."""

    @dg.sensor(
        jobs=list(MODE_JOBS.values()),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Count and quality training triggers, over the episodes and trainings Dagster recorded.",
    )
    def training_trigger(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        state = TrainingState.from_json(context.cursor)
        fold_new_records(context.instance, state, settings)
        known = set(context.instance.get_dynamic_partitions(SCENARIOS))
        states = {name: s for name, s in state.scenarios.items() if name in known}
        requests, notes = evaluate(context.instance, states, int(time.time() * 1000), settings)
        for note in notes:
            context.log.info(note)
        return dg.SensorResult(run_requests=requests, cursor=state.to_json())

    @dg.schedule(
        job=MODE_JOBS[settings.mode],
        cron_schedule=check_interval_cron(settings.shortest_interval_ms()),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The check interval: time rules of the training triggers (and everything else at that moment).",
    )
    def training_check(context: dg.ScheduleEvaluationContext):
        scenarios = context.instance.get_dynamic_partitions(SCENARIOS)
        states = {s: state_since_training(context.instance, s, settings) for s in scenarios}
        now_ms = int(context.scheduled_execution_time.timestamp() * 1000)
        requests, notes = evaluate(context.instance, states, now_ms, settings)
        for note in notes:
            context.log.info(note)
        return requests or dg.SkipReason("no scenario's trigger fires: " + "; ".join(notes or ["nothing new"]))

    return training_trigger, training_check
