"""The whole asset graph, as a snapshot: a change to names, partitions, deps or checks shows up here."""

from __future__ import annotations

import subprocess
import sys
import warnings

import dagster as dg

EXPECTED_GRAPH = {
    "raw_records": {"partitions": "sessions", "deps": [], "checks": ["quarantine_share_below_threshold"]},
    "episodes": {"partitions": "sessions", "deps": ["raw_records"], "checks": ["episode_ids_unique"]},
    "session_snapshot": {
        "partitions": "sessions", "deps": ["episodes"], "checks": ["snapshot_totals_match_episodes"],
    },
    "scenario_model": {"partitions": "scenarios", "deps": ["session_snapshot"], "checks": []},
    "global_model": {"partitions": None, "deps": ["scenario_model"], "checks": []},
    "sft_dataset": {"partitions": "scenarios", "deps": ["episodes"], "checks": ["chat_format_valid", "enough_training_rows"]},
    "lora_adapter": {"partitions": "scenarios", "deps": ["sft_dataset"], "checks": ["adapter_beats_applied_and_base"]},
    "applied_adapter": {"partitions": "scenarios", "deps": ["lora_adapter"], "checks": []},
}


def _graph(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        out[key.to_user_string()] = {
            "partitions": node.partitions_def.name if node.partitions_def else None,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
        }
    return out


def test_asset_graph_snapshot():
    from swarm_learn_assets.definitions import defs

    assert _graph(defs) == EXPECTED_GRAPH
    assert sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")) == [
        "build_global_model", "build_scenario_model", "full_update", "process_sessions", "train_adapter",
    ]
    assert [s.name for s in defs.sensors] == ["discover_sessions", "training_trigger", "global_model_automation"]
    assert [s.name for s in defs.schedules] == ["training_check"]


def test_the_global_model_follows_scenario_models_by_itself():
    from swarm_learn_assets.definitions import defs

    node = defs.resolve_asset_graph().get(dg.AssetKey("global_model"))
    assert node.automation_condition is not None and node.automation_condition.get_label() == "eager"
    sensor = next(s for s in defs.sensors if s.name == "global_model_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_every_session_asset_batches_backfills():
    from swarm_learn_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for name in ("raw_records", "episodes", "session_snapshot"):
        policy = graph.get(dg.AssetKey(name)).backfill_policy
        assert policy is not None and policy.max_partitions_per_run and policy.max_partitions_per_run > 1


def test_definitions_load_without_deprecation_warnings():
    """A fresh interpreter, so module caching cannot hide warnings raised at import time."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning);"
        "import dagster; warnings.simplefilter('error', dagster.SupersessionWarning) "
        "if hasattr(dagster, 'SupersessionWarning') else None;"
        "from swarm_learn_assets.definitions import defs; defs.resolve_asset_graph(); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Deprecat" not in result.stderr


def test_workspace_loads_the_definitions_module():
    import yaml

    from pathlib import Path

    workspace = yaml.safe_load((Path(__file__).parents[2] / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]["module_name"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert __import__(module, fromlist=["defs"]).defs is not None


def test_session_assets_share_one_subsettable_step():
    """One pass per batch keeps records and episodes in memory; any one asset can still run alone."""
    from swarm_learn_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    steps = {id(graph.get(dg.AssetKey(n)).assets_def) for n in ("raw_records", "episodes", "session_snapshot")}
    assert len(steps) == 1
    assert graph.get(dg.AssetKey("episodes")).assets_def.can_subset


def test_training_runs_in_the_training_pool():
    from swarm_learn_assets.definitions import defs

    node = defs.resolve_asset_graph().get(dg.AssetKey("lora_adapter"))
    assert node.pools == {"training"}
