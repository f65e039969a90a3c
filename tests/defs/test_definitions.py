"""The whole Dagster definition as a snapshot (any change to the graph is a visible diff), the
settings it is built from, and how Dagster's tools load it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from swarm_learn_assets.core.triggers.spec import TriggerSettings
from swarm_learn_assets.definitions import Settings, build_definitions
from swarm_learn_assets.defs.discovery import DiscoverySettings
from swarm_learn_assets.testing.definitions_snapshot import describe

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions()


def test_the_definition_matches_its_snapshot(defs):
    """Regenerate on purpose: python -m swarm_learn_assets.testing.definitions_snapshot > tests/defs/definitions_snapshot.json"""
    snapshot = json.loads(SNAPSHOT.read_text())
    assert describe(defs) == snapshot
    # The snapshot itself holds the pipeline DESIGN §1 names, in its stages' groups.
    assert {name: a["group"] for name, a in snapshot["assets"].items()} == {
        "raw_records": "sessions", "episodes": "sessions", "session_snapshot": "sessions",
        "scenario_model": "scenarios", "global_model": "scenarios",
        "sft_dataset": "training", "lora_adapter": "training", "applied_adapter": "training",
    }
    assert snapshot["assets"]["lora_adapter"]["pools"] == ["training"]
    assert snapshot["assets"]["episodes"]["backfill_policy"] == "MULTI_RUN(max_partitions_per_run=250)"
    assert snapshot["assets"]["global_model"]["automation"] == "eager"


def test_the_snapshot_sees_a_changed_graph():
    """What the snapshot test relies on: a different setting gives a different picture."""
    quicker = build_definitions(Settings(discovery=DiscoverySettings(interval_seconds=60)))
    assert describe(quicker)["sensors"]["discover_sessions"]["minimum_interval_seconds"] == 60
    assert describe(quicker) != json.loads(SNAPSHOT.read_text())


def test_trigger_settings_choose_the_schedule_and_its_job():
    defs = build_definitions(Settings(triggers=TriggerSettings(default="episodes>=10 | every 6h", mode="full"),
                                      base_model="/models/other"))
    (schedule,) = defs.schedules
    assert (schedule.cron_schedule, schedule.job_name) == ("0 */6 * * *", "full_update")
    assert defs.resources["base_model"].model == "/models/other"


def test_the_entry_point_reads_the_environment_when_loaded(tmp_path: Path, monkeypatch):
    from swarm_learn_assets.definitions import defs as load

    triggers = tmp_path / "triggers.yaml"
    triggers.write_text("default: every 2h\nmode: offline\n")
    monkeypatch.setenv("SWARM_LEARN_TRIGGERS", str(triggers))
    monkeypatch.setenv("SWARM_LEARN_BASE_MODEL", str(tmp_path / "model"))
    loaded = load()
    (schedule,) = loaded.schedules
    assert (schedule.cron_schedule, schedule.job_name) == ("0 */2 * * *", "build_scenario_model")
    assert loaded.resources["base_model"].model == str(tmp_path / "model")


def test_session_assets_share_one_subsettable_step(defs):
    """One pass per batch keeps records and episodes in memory; any one asset can still run alone."""
    graph = defs.resolve_asset_graph()
    steps = {id(graph.get(dg.AssetKey(n)).assets_def) for n in ("raw_records", "episodes", "session_snapshot")}
    assert len(steps) == 1
    assert graph.get(dg.AssetKey("episodes")).assets_def.can_subset


def test_dagster_loads_the_workspace(tmp_path: Path):
    """Dagster's own loader, on workspace.yaml, as `dagster dev` and the daemon load it."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    dagster = str(Path(sys.executable).with_name("dagster"))
    result = subprocess.run([dagster, "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
                            capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_the_definitions_build_without_deprecation_warnings():
    """A fresh interpreter, so module caching cannot hide warnings raised at import time."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning);"
        "import dagster; warnings.simplefilter('error', dagster.SupersessionWarning);"
        "from swarm_learn_assets.definitions import defs; defs().resolve_asset_graph(); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
