"""Training triggers on Dagster's daemon: a sensor for the count and quality rules, a schedule for
the time rules (the reference daemon's check interval). Both read Dagster's own records.

Settings come from the YAML file named by `$SWARM_LEARN_TRIGGERS` (see `core/trigger_spec.py`);
a bad spec stops the definitions from loading, with the offending token in the message.
"""

import json
import os
import time

import dagster as dg

from ..core.trigger_spec import TRIGGERS_FILE_ENV, TriggerSettings, check_interval_cron, load_trigger_settings
from ..core.training_state import ScenarioState, TrainingState, explain, quality_window
from ..core.triggers import NeverTrigger, TimeTrigger, TrainTrigger
from .episodes import EPISODES
from .jobs import MODE_JOBS, SCENARIO_TAG
from .partitions import SCENARIOS
from .training import LORA_ADAPTER

SETTINGS = load_trigger_settings(os.environ.get(TRIGGERS_FILE_ENV))
PAGE = 1000
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def without_time(trigger: TrainTrigger) -> TrainTrigger:
    """The trigger with its time rules never firing: what the sensor evaluates (the schedule does time)."""
    if isinstance(trigger, TimeTrigger):
        return NeverTrigger()
    children = getattr(trigger, "triggers", None)
    return type(trigger)(tuple(without_time(t) for t in children)) if children is not None else trigger


def fold_episodes(state: TrainingState, records: list, last_run: str | None) -> str | None:
    """Add each run's per-scenario counts once (its partitions repeat the same batch metadata)."""
    windows: dict[str, int] = {}  # what each scenario's quality rules look at
    for record in records:
        if record.run_id and record.run_id == last_run:  # runless events ("" run id) each count
            continue
        last_run = record.run_id
        counts = record.asset_materialization.metadata.get("episodes_by_scenario")
        for scenario, entry in (counts.value if counts is not None else {}).items():
            if scenario not in windows:
                windows[scenario] = quality_window(SETTINGS.trigger_for(scenario))
            state.scenario(scenario).add(entry["episodes"], entry["success"], windows[scenario])
    return last_run


def fold_new_records(instance: dg.DagsterInstance, state: TrainingState) -> None:
    """Everything recorded since the cursor: new episodes batches, then trainings (which reset counts)."""
    last_run = None
    while True:
        page = instance.fetch_materializations(EPISODES, limit=PAGE, cursor=state.episodes_cursor, ascending=True)
        last_run = fold_episodes(state, page.records, last_run)
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


def state_since_training(instance: dg.DagsterInstance, scenario: str) -> ScenarioState:
    """One scenario's state from the records since its last training (for the schedule and the CLI):
    the cost is bounded by what happened since then, not by the whole history."""
    state = TrainingState()
    latest = instance.fetch_materializations(dg.AssetRecordsFilter(LORA_ADAPTER, asset_partitions=[scenario]), limit=1)
    after = None
    if latest.records:
        after = latest.records[0].storage_id
        state.scenario(scenario).trained(int(latest.records[0].timestamp * 1000))
    last_run, cursor = None, None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(EPISODES, after_storage_id=after), limit=PAGE,
                                               cursor=cursor, ascending=True)
        last_run = fold_episodes(state, page.records, last_run)
        cursor = page.cursor
        if not page.has_more:
            break
    return state.scenario(scenario)


def training_in_flight(instance: dg.DagsterInstance, scenario: str) -> bool:
    return bool(instance.get_run_ids(dg.RunsFilter(tags={SCENARIO_TAG: scenario}, statuses=ACTIVE), limit=1))


def request_training(scenario: str, scenario_state: ScenarioState, reason: str, source: str) -> dg.RunRequest:
    """The run key is the state that fired: the same episodes since the same training never fire twice."""
    job = MODE_JOBS[SETTINGS.mode]
    return dg.RunRequest(
        run_key=f"{source}:{job.name}:{scenario}:{scenario_state.episodes}:{scenario_state.last_training_ms}",
        job_name=job.name,
        partition_key=scenario,
        run_config=json.loads(SETTINGS.run_config),
        tags={SCENARIO_TAG: scenario, "swarm-learn/trigger": reason[:250]},
    )


def evaluate(instance: dg.DagsterInstance, states: dict[str, ScenarioState], now_ms: int, settings: TriggerSettings,
             timeless: bool, source: str) -> tuple[list[dg.RunRequest], list[str]]:
    requests, notes = [], []
    for scenario, scenario_state in sorted(states.items()):
        trigger = settings.trigger_for(scenario)
        judged = without_time(trigger) if timeless else trigger
        ctx = scenario_state.context(now_ms, quality_window(trigger))
        if not judged.should_train(ctx):
            continue
        reason = explain(judged, ctx)
        if training_in_flight(instance, scenario):
            notes.append(f"{scenario}: would train ({reason}), but a training run is already queued or running")
            continue
        requests.append(request_training(scenario, scenario_state, reason, source))
        notes.append(f"{scenario}: training ({reason})")
    return requests, notes


@dg.sensor(
    jobs=list(MODE_JOBS.values()),
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Count and quality training triggers, over the episodes and trainings Dagster recorded.",
)
def training_trigger(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    state = TrainingState.from_json(context.cursor)
    fold_new_records(context.instance, state)
    known = set(context.instance.get_dynamic_partitions(SCENARIOS))
    states = {name: s for name, s in state.scenarios.items() if name in known}
    requests, notes = evaluate(context.instance, states, int(time.time() * 1000), SETTINGS, timeless=True,
                               source="sensor")
    for note in notes:
        context.log.info(note)
    return dg.SensorResult(run_requests=requests, cursor=state.to_json())


@dg.schedule(
    job=MODE_JOBS[SETTINGS.mode],
    cron_schedule=check_interval_cron(SETTINGS.shortest_interval_ms()),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The check interval: time rules of the training triggers (and everything else at that moment).",
)
def training_check(context: dg.ScheduleEvaluationContext):
    scenarios = context.instance.get_dynamic_partitions(SCENARIOS)
    states = {s: state_since_training(context.instance, s) for s in scenarios}
    now_ms = int(context.scheduled_execution_time.timestamp() * 1000)
    requests, notes = evaluate(context.instance, states, now_ms, SETTINGS, timeless=False, source="schedule")
    for note in notes:
        context.log.info(note)
    return requests or dg.SkipReason("no scenario's trigger fires: " + "; ".join(notes or ["nothing new"]))
