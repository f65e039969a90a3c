"""Training triggers on real instance records: the sensor (count, quality) with its cursor, the
schedule (time), manual trainings resetting counts, in-flight runs, and bad specs."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from swarm_learn_assets.core.triggers.spec import TriggerSettings, TriggerSpecError, load_trigger_settings
from swarm_learn_assets.defs import triggers
from swarm_learn_assets.runner import materialize


@pytest.fixture
def recorded(instance_backend: str, data_root: Path):
    """Two scenarios whose sessions were processed: episodes materializations are in the instance
    (SQLite, and PostgreSQL under the `postgres` marker)."""
    _, scenarios, _ = materialize(data_root, log_level="WARNING")
    return dg.DagsterInstance.get(), scenarios


def _tick(settings: TriggerSettings, instance, cursor=None) -> dg.SensorResult:
    sensor, _ = triggers.training_automation(settings)
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def test_count_rule_fires_once_per_state_and_a_training_resets_it(recorded):
    instance, scenarios = recorded
    settings = TriggerSettings(default="episodes>=5 | every 1h")
    first = _tick(settings, instance)
    assert sorted(r.partition_key for r in first.run_requests) == scenarios
    assert {r.job_name for r in first.run_requests} == {"train_adapter"}
    assert all("new episodes since the last training" in r.tags["swarm-learn/trigger"] for r in first.run_requests)
    again = _tick(settings, instance, first.cursor)  # nothing new: the same state was already requested
    assert again.run_requests == []
    # A training of the first scenario, by hand or not, resets its count.
    instance.report_runless_asset_event(dg.AssetMaterialization("lora_adapter", partition=scenarios[0]))
    after = _tick(settings, instance, again.cursor)
    assert after.run_requests == []  # the first: nothing new since; the second: still requested
    state = triggers.TrainingState.from_json(after.cursor).scenarios
    assert state[scenarios[0]].at_last_training == state[scenarios[0]].episodes > 0
    assert state[scenarios[1]].at_last_training == 0


def _schedule_tick(settings: TriggerSettings, instance):
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime.now(dt.timezone.utc))
    return triggers.training_automation(settings)[1](context)


@pytest.mark.parametrize("first", ["sensor", "schedule"])
def test_sensor_and_schedule_start_one_training_per_state(recorded, first):
    """Both tick on the same state before any run exists: whichever ticks first requests it, the
    other sees it was requested, even though Dagster deduplicates run keys per origin only."""
    instance, scenarios = recorded
    settings = TriggerSettings(default="episodes>=5 | every 1h")
    ticks = {"sensor": lambda: _tick(settings, instance).run_requests,
             "schedule": lambda: _schedule_tick(settings, instance)}
    requested = ticks[first]()
    assert sorted(r.partition_key for r in requested) == scenarios
    second = ticks["schedule" if first == "sensor" else "sensor"]()
    assert second == [] or isinstance(second, dg.SkipReason)
    if isinstance(second, dg.SkipReason):
        assert "already requested for this state" in second.skip_message


def test_time_rules_fire_from_either_tick(recorded):
    instance, scenarios = recorded
    settings = TriggerSettings(default="episodes>=100000 | every 1h")
    requests = _tick(settings, instance).run_requests  # never trained: the time rule fires on the sensor's tick too
    assert sorted(r.partition_key for r in requests) == scenarios
    assert all("never trained" in r.tags["swarm-learn/trigger"] for r in requests)


def _judged_tasks_on_disk(scenario: str) -> int:
    """Worker-task episodes with a success, failure or timeout outcome in the scenario's episode files."""
    import pyarrow.parquet as pq

    folder = Path(os.environ["SWARM_LEARN_DATA"]) / "episodes" / scenario
    rows = [r for p in folder.glob("*.parquet") for r in pq.read_table(p, columns=["learn_model", "outcome"]).to_pylist()]
    return sum(r["learn_model"] == "worker_task" and r["outcome"] in ("success", "failure", "timeout") for r in rows)


def test_rerunning_the_same_sessions_adds_nothing(recorded):
    """A CLI re-run, a backfill or a retry of sessions already counted: the counts stay."""
    instance, scenarios = recorded
    settings = TriggerSettings(default="never")
    before = _tick(settings, instance)
    counts = {s: triggers.TrainingState.from_json(before.cursor).scenarios[s].episodes for s in scenarios}
    assert counts == {s: _judged_tasks_on_disk(s) for s in scenarios}
    materialize(Path(os.environ["SWARM_LEARN_DATA"]), log_level="WARNING")  # the same sessions again
    after = triggers.TrainingState.from_json(_tick(settings, instance, before.cursor).cursor)
    assert {s: after.scenarios[s].episodes for s in scenarios} == counts
    assert {s: triggers.state_since_training(instance, s, settings).episodes for s in scenarios} == counts  # the CLI's view


def test_schedule_skips_with_the_reason(recorded):
    instance, _ = recorded
    settings = TriggerSettings(default="episodes>=100000")
    result = _schedule_tick(settings, instance)
    assert isinstance(result, dg.SkipReason) and "no scenario's trigger fires" in result.skip_message


def test_quality_rule_and_runs_in_flight(recorded):
    instance, scenarios = recorded
    settings = TriggerSettings(default="success<=0.99 over 5", mode="full")
    instance.add_run(dg.DagsterRun(job_name="full_update", run_id="0" * 32, status=dg.DagsterRunStatus.STARTED,
                                   tags={"swarm-learn/scenario": scenarios[0]}))
    result = _tick(settings, instance)
    assert [(r.partition_key, r.job_name) for r in result.run_requests] == [(scenarios[1], "full_update")]
    assert "recent success rate" in result.run_requests[0].tags["swarm-learn/trigger"]


def test_sensor_cost_does_not_depend_on_history_it_already_read(recorded, monkeypatch):
    instance, _ = recorded
    settings = TriggerSettings()
    first = _tick(settings, instance)
    seen = []
    for name in ("fetch_materializations", "fetch_observations"):
        real = getattr(instance, name)

        def counting(*args, _real=real, **kwargs):
            result = _real(*args, **kwargs)
            seen.extend(result.records)
            return result

        monkeypatch.setattr(instance, name, counting)
    _tick(settings, instance, first.cursor)
    assert seen == []  # everything before the cursor stays unread


def test_bad_specs_name_the_file_and_the_token(tmp_path: Path):
    bad = tmp_path / "triggers.yaml"
    bad.write_text("default: episodes>=100 | every 1y\nscenarios:\n  db: always\n")
    with pytest.raises(TriggerSpecError, match=r"triggers.yaml: trigger spec 'episodes>=100 \| every 1y'.*column 23"):
        load_trigger_settings(str(bad))
    good = tmp_path / "good.yaml"
    good.write_text("default: never\nscenarios:\n  db: episodes>=3\nmode: full\n"
                    "run_config:\n  ops:\n    lora_adapter:\n      config: {epochs: 5}\n")
    settings = load_trigger_settings(str(good))
    assert settings.spec_for("db") == "episodes>=3" and settings.spec_for("other") == "never" and settings.mode == "full"
    assert '"epochs": 5' in settings.run_config
    code = "from swarm_learn_assets.definitions import defs; defs()"
    env = {"SWARM_LEARN_TRIGGERS": str(bad), "PATH": "/usr/bin:/bin"}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert loaded.returncode != 0 and "column 23 ('1y')" in loaded.stderr


@pytest.mark.parametrize("page", [1000, 1])
def test_interleaved_runs_count_each_sessions_content_once(monkeypatch, page):
    """Two runs' observations interleaved in the event log (and, with page 1, read one at a time):
    a session observed again with the same content adds nothing, a re-landed one adds its growth."""
    settings = TriggerSettings(default="never")
    monkeypatch.setattr(triggers, "PAGE", page)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenarios", ["sc"])

        def observe(session: str, tasks: int, successes: int) -> None:
            instance.report_runless_asset_event(dg.AssetObservation(
                "episodes", partition=f"sc.{session}", metadata={"task_episodes": tasks, "task_successes": successes}))

        observe("s1", 5, 2)  # run A
        observe("s1", 5, 2)  # run B, the same session again
        observe("s2", 3, 3)  # run B
        first = _tick(settings, instance)
        observe("s2", 3, 3)  # run A, after the tick
        observe("s1", 8, 2)  # s1 re-landed with three more episodes, none of them a success
        observe("s3", 0, 0)  # a session without judged tasks
        state = triggers.TrainingState.from_json(_tick(settings, instance, first.cursor).cursor).scenarios["sc"]
        assert (state.episodes, state.successes) == (5 + 3 + 3, 2 + 3)
        fresh = triggers.state_since_training(instance, "sc", settings)  # the schedule's and CLI's fold agrees
        assert (fresh.episodes, fresh.successes) == (11, 5)
