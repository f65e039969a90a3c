"""The continuous loop for real: `dagster-daemon` (which starts the code server it needs) on a
temporary instance and data root; sessions land; discovery processes them, the training trigger
fires, a tiny-model adapter is trained and applied. Slow (`pytest -m slow`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm_learn_assets.core.stages.session_batch import process_sessions
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.simulate import simulate
from swarm_learn_assets.training.tiny_model import build_tiny_model_for_data

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 900


def _tiny_model(tmp_path: Path) -> Path:
    """A tiny base model whose tokenizer knows the simulated vocabulary (built from a scratch copy)."""
    scratch = tmp_path / "scratch"
    simulate(scratch, scenarios=1, sessions=6, seed=3)
    layout = DataLayout(scratch)
    process_sessions(layout, [f.key for f in layout.scan_landing()[0]])
    return build_tiny_model_for_data(tmp_path / "tiny", scratch)


def _wait(what: str, condition, daemon: subprocess.Popen, log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AssertionError(f"dagster-daemon exited ({daemon.returncode}) while waiting for {what}:\n"
                                 + log.read_text()[-3000:])
        if condition():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}; daemon log:\n" + log.read_text()[-3000:])


def test_sessions_land_get_processed_trigger_fires_adapter_is_trained_and_applied(tmp_path: Path, instance_backend: str):
    import dagster as dg

    from swarm_learn_assets.runner import prepare_instance

    home, data = tmp_path / "home", tmp_path / "data"
    instance = prepare_instance(home)
    assert type(instance.event_log_storage).__name__ == (
        "CachedPostgresEventLogStorage" if instance_backend == "postgres" else "PooledSqliteEventLogStorage")
    model = _tiny_model(tmp_path)
    triggers_file = tmp_path / "triggers.yaml"
    triggers_file.write_text(json.dumps({
        "default": "episodes>=40", "mode": "lora",
        "run_config": {"ops": {
            "sft_dataset": {"config": {"eval_fraction": 0.3, "min_train_rows": 5, "train_on": ["task_decision"]}},
            "lora_adapter": {"config": {"rank": 16, "alpha": 64.0, "epochs": 30, "batch_size": 8,
                                        "learning_rate": 0.01, "max_seq_length": 256, "max_new_tokens": 40}},
        }},
    }))
    env = {**os.environ, "DAGSTER_HOME": str(home), "SWARM_LEARN_DATA": str(data),
           "SWARM_LEARN_BASE_MODEL": str(model), "SWARM_LEARN_TRIGGERS": str(triggers_file)}
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(REPO / "workspace.yaml")],
        env=env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        simulate(data, scenarios=1, sessions=10, seed=3)  # the sessions land while the daemon runs
        scenario = next((data / "landing").iterdir()).name
        sessions = sorted(p.stem for p in (data / "landing" / scenario).glob("*.parquet"))

        def runs(job: str, status=dg.DagsterRunStatus.SUCCESS) -> list:
            return instance.get_runs(dg.RunsFilter(job_name=job, statuses=[status]))

        every = {f"{scenario}.{s}" for s in sessions}
        active = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                  dg.DagsterRunStatus.STARTED]

        def processed() -> bool:  # every session's snapshot recorded, and its run finished
            done = instance.get_materialized_partitions(dg.AssetKey("session_snapshot")) >= every
            return done and not instance.get_runs(dg.RunsFilter(job_name="process_sessions", statuses=active))

        _wait("discovery to process every session", processed, daemon, log, deadline)
        batches = [r for r in runs("process_sessions") if "dagster/asset_partition_range_start" in r.tags]
        assert any(r.tags["dagster/asset_partition_range_start"] != r.tags["dagster/asset_partition_range_end"]
                   for r in batches)  # sessions that landed together were processed in one run
        assert sorted(instance.get_dynamic_partitions("sessions")) == [f"{scenario}.{s}" for s in sessions]
        for session in sessions:
            assert (data / "episodes" / scenario / f"{session}.parquet").is_file()

        current = data / "adapters" / scenario / "current"
        _wait("the trigger to fire and an adapter to be trained and applied",
              lambda: current.is_file() and runs("train_adapter"), daemon, log, deadline)
        trained = runs("train_adapter")
        assert trained and all(r.tags["swarm-learn/scenario"] == scenario for r in trained)
        assert "new episodes since the last training, needs 40" in trained[0].tags["swarm-learn/trigger"]
        version = current.read_text().strip()
        scores = json.loads((data / "adapters" / scenario / version / "eval.json").read_text())
        assert scores["gate"]["passed"]
        assert scores["models"]["adapter"]["exact_match"] > scores["models"]["base"]["exact_match"]
        assert instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])) == []
    finally:
        _stop_group(daemon)
        instance.dispose()
    # Everything the daemon started (code server, run workers, training processes) is gone.
    assert _group_members(daemon.pid) == []


def _group_members(group: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()


def _stop_group(daemon: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to the daemon's whole process group; what has not exited after `grace` gets SIGKILL."""
    os.killpg(daemon.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (daemon.poll() is None or _group_members(daemon.pid)):
        time.sleep(0.5)
    if _group_members(daemon.pid):
        os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _group_members(daemon.pid):
        time.sleep(0.2)
