"""The scenario model kept current by adding new snapshots, and rebuilt whenever adding could differ."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from swarm_learn_assets.core.stages.scenario_model import build_model_for_scenario
from swarm_learn_assets.core.stages.session_batch import process_sessions
from swarm_learn_assets.core.stats.merge import MergeStrategy
from swarm_learn_assets.core.stats.query import TimeWindow
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.simulate import simulate

SCENARIO = "troubleshooting"


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model-src")
    simulate(root, scenarios=1, sessions=9, seed=23)
    layout = DataLayout(root)
    process_sessions(layout, [f.key for f in layout.scan_landing()[0]])
    return root


@pytest.fixture
def layout(processed: Path, tmp_path: Path) -> DataLayout:
    root = tmp_path / "data"
    shutil.copytree(processed, root)
    return DataLayout(root)


def _hold_back(layout: DataLayout, count: int, aside: Path) -> list[Path]:
    """Moves the last `count` snapshots (by name) out of the scenario, as if not processed yet."""
    aside.mkdir()
    held = sorted(layout.snapshot_dir(SCENARIO).glob("*.json"))[-count:]
    for path in held:
        path.rename(aside / path.name)
    return [aside / p.name for p in held]


def _from_scratch(layout: DataLayout, strategy: MergeStrategy, max_sessions: int = 20) -> bytes:
    build_model_for_scenario(layout, SCENARIO, strategy, max_sessions=max_sessions, incremental=False)
    return layout.scenario_model(SCENARIO).read_bytes()


@pytest.mark.parametrize("strategy", ["additive", "success_weighted"])
def test_new_snapshots_added_to_the_last_model_give_the_bytes_of_a_full_merge(layout, tmp_path, strategy):
    merge = MergeStrategy.parse(strategy)
    held = _hold_back(layout, 3, tmp_path / "aside")
    first = build_model_for_scenario(layout, SCENARIO, merge, max_sessions=4)
    assert first.rebuilt_because == "no model with an index of its sessions yet" and first.added == 6
    for path in held:
        path.rename(layout.snapshot_dir(SCENARIO) / path.name)

    second = build_model_for_scenario(layout, SCENARIO, merge, max_sessions=4)
    assert second.rebuilt_because is None and second.added == 3
    added = layout.scenario_model(SCENARIO).read_bytes()
    assert len(second.model["sessions"]) == 9 and second.model["merged"]["metadata"]["session_count"] == 9
    assert second.model["offline_model"]["analyzed_sessions"] == 4
    assert added == _from_scratch(layout, merge, max_sessions=4)

    nothing_new = build_model_for_scenario(layout, SCENARIO, merge, max_sessions=4)
    assert nothing_new.rebuilt_because is None and nothing_new.added == 0
    assert layout.scenario_model(SCENARIO).read_bytes() == added


def test_a_rewritten_snapshot_rebuilds_from_every_snapshot_instead_of_adding_it_twice(layout):
    build_model_for_scenario(layout, SCENARIO)
    path = sorted(layout.snapshot_dir(SCENARIO).glob("*.json"))[0]
    replayed = json.loads(path.read_text())
    replayed["metadata"]["total_episodes"] += 100  # the replayed session's new content
    temp = path.with_name(".replay.tmp")
    temp.write_text(json.dumps(replayed))
    os.replace(temp, path)

    build = build_model_for_scenario(layout, SCENARIO)
    assert build.rebuilt_because.startswith("1 snapshot(s) rewritten or removed") and build.added == 9
    assert layout.scenario_model(SCENARIO).read_bytes() == _from_scratch(layout, MergeStrategy())
    path.unlink()
    gone = build_model_for_scenario(layout, SCENARIO)
    assert gone.rebuilt_because.startswith("1 snapshot(s) rewritten or removed") and gone.added == 8


def test_a_model_written_by_something_else_or_another_strategy_is_not_added_to(layout):
    build_model_for_scenario(layout, SCENARIO)
    model = layout.scenario_model(SCENARIO)
    model.write_text(model.read_text().replace('"session_count"', '"session_count" ', 1))
    assert build_model_for_scenario(layout, SCENARIO).rebuilt_because == \
        "scenario_model.json was written since its index of sessions"
    build = build_model_for_scenario(layout, SCENARIO, MergeStrategy.parse("success_weighted"))
    assert build.rebuilt_because == "the last model was merged with {'name': 'additive'}"


@pytest.mark.parametrize("strategy, window, reason", [
    ("time_decay:2", TimeWindow(), "time_decay weights change with every session"),
    ("additive", TimeWindow(since_ms=0), "a time window was asked for"),
])
def test_time_decay_and_windows_are_always_merged_from_every_snapshot(layout, strategy, window, reason):
    build_model_for_scenario(layout, SCENARIO)
    assert layout.merge_index(SCENARIO).is_file()
    build = build_model_for_scenario(layout, SCENARIO, MergeStrategy.parse(strategy), window=window)
    assert build.rebuilt_because == reason and build.added == 9
    assert not layout.merge_index(SCENARIO).exists()  # nothing to add to next time
    assert build_model_for_scenario(layout, SCENARIO).rebuilt_because == "no model with an index of its sessions yet"
