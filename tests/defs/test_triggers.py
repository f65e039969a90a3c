"""Training triggers on real instance records: the sensor (count, quality) with its cursor, the
schedule (time), manual trainings resetting counts, in-flight runs, and bad specs."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from swarm_learn_assets.core.trigger_spec import TriggerSettings, TriggerSpecError, load_trigger_settings
from swarm_learn_assets.defs import triggers
from swarm_learn_assets.runner import materialize


@pytest.fixture
def recorded(data_root: Path):
    """Two scenarios whose sessions were processed: episodes materializations are in the instance."""
    _, scenarios, _ = materialize(data_root, log_level="WARNING")
    return dg.DagsterInstance.get(), scenarios


def _tick(instance, cursor=None) -> dg.SensorResult:
    return triggers.training_trigger(dg.build_sensor_context(instance=instance, cursor=cursor))


def test_count_rule_fires_once_per_state_and_a_training_resets_it(recorded, monkeypatch):
    instance, scenarios = recorded
    monkeypatch.setattr(triggers, "SETTINGS", TriggerSettings(default="episodes>=5 | every 1h"))
    first = _tick(instance)
    assert sorted(r.partition_key for r in first.run_requests) == scenarios
    assert {r.job_name for r in first.run_requests} == {"train_adapter"}
    assert all("new episodes since the last training" in r.tags["swarm-learn/trigger"] for r in first.run_requests)
    again = _tick(instance, first.cursor)  # nothing new: the same state, the same run keys (no double firing)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]
    # A training of the first scenario, by hand or not, resets its count.
    instance.report_runless_asset_event(dg.AssetMaterialization("lora_adapter", partition=scenarios[0]))
    after = _tick(instance, again.cursor)
    assert [r.partition_key for r in after.run_requests] == [scenarios[1]]


def test_sensor_leaves_time_rules_to_the_schedule(recorded, monkeypatch):
    instance, scenarios = recorded
    monkeypatch.setattr(triggers, "SETTINGS", TriggerSettings(default="episodes>=100000 | every 1h"))
    assert _tick(instance).run_requests == []  # never trained, but time is the schedule's part
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime.now(dt.timezone.utc))
    requests = triggers.training_check(context)
    assert sorted(r.partition_key for r in requests) == scenarios
    assert all("never trained" in r.tags["swarm-learn/trigger"] for r in requests)


def test_schedule_skips_with_the_reason(recorded, monkeypatch):
    instance, _ = recorded
    monkeypatch.setattr(triggers, "SETTINGS", TriggerSettings(default="episodes>=100000"))
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime.now(dt.timezone.utc))
    result = triggers.training_check(context)
    assert isinstance(result, dg.SkipReason) and "no scenario's trigger fires" in result.skip_message


def test_quality_rule_and_runs_in_flight(recorded, monkeypatch):
    instance, scenarios = recorded
    monkeypatch.setattr(triggers, "SETTINGS", TriggerSettings(default="success<=0.99 over 5", mode="full"))
    instance.add_run(dg.DagsterRun(job_name="full_update", run_id="0" * 32, status=dg.DagsterRunStatus.STARTED,
                                   tags={"swarm-learn/scenario": scenarios[0]}))
    result = _tick(instance)
    assert [(r.partition_key, r.job_name) for r in result.run_requests] == [(scenarios[1], "full_update")]
    assert "recent success rate" in result.run_requests[0].tags["swarm-learn/trigger"]


def test_sensor_cost_does_not_depend_on_history_it_already_read(recorded, monkeypatch):
    instance, _ = recorded
    monkeypatch.setattr(triggers, "SETTINGS", TriggerSettings())
    first = _tick(instance)
    seen = []
    real = instance.fetch_materializations

    def counting(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.extend(result.records)
        return result

    monkeypatch.setattr(instance, "fetch_materializations", counting)
    _tick(instance, first.cursor)
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
    code = "import swarm_learn_assets.definitions"
    env = {"SWARM_LEARN_TRIGGERS": str(bad), "PATH": "/usr/bin:/bin"}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert loaded.returncode != 0 and "column 23 ('1y')" in loaded.stderr
