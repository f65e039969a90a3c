"""The CLI and its Dagster instance under misuse: two runs at once, one home for two data roots,
runs that must fail (one line naming the path, no stack trace, landing untouched)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm_learn_assets.cli import main
from swarm_learn_assets.simulate import simulate

DATA_ASSETS = "raw_records,episodes,session_snapshot,scenario_model"


def _tree(root: Path, *areas: str) -> dict[str, str]:
    """Relative path → sha256 of every file under the given areas of a data root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for area in areas for p in sorted((root / area).rglob("*")) if p.is_file()}  # fmt: skip


def _landed(root: Path) -> Path:
    simulate(root, scenarios=2, sessions=3, seed=5)
    return root


def _cli(*args: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "swarm_learn_assets.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_two_materialize_at_once_on_a_fresh_home(tmp_path: Path):
    """Both end cleanly, the outputs equal a clean run's, and the next run succeeds."""
    clean = _landed(tmp_path / "clean")
    alone = _cli("materialize", "--data-root", str(clean), "--assets", DATA_ASSETS, home=tmp_path / "clean-home")
    assert alone.wait(timeout=300) == 0, alone.stderr.read()
    root, home = _landed(tmp_path / "data"), tmp_path / "home"
    runs = [_cli("materialize", "--data-root", str(root), "--assets", DATA_ASSETS, home=home) for _ in range(2)]
    outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    areas = ("records", "quarantine", "episodes", "snapshots", "models")
    assert _tree(root, *areas) == _tree(clean, *areas) != {}
    again = _cli("materialize", "--data-root", str(root), "--assets", DATA_ASSETS, home=home)
    assert again.wait(timeout=300) == 0, again.stderr.read()


def test_one_home_refuses_a_second_data_root(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    first, second = _landed(tmp_path / "a"), tmp_path / "b"
    simulate(second, scenarios=1, sessions=2, seed=9)
    assert main(["materialize", "--data-root", str(first), "--assets", "raw_records"]) == 0
    capsys.readouterr()
    assert main(["materialize", "--data-root", str(second), "--assets", "raw_records"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"swarm-learn materialize: error: DAGSTER_HOME {tmp_path / 'home'} belongs to data root "
                   f"{first}, not {second}; set DAGSTER_HOME to another folder for this data root "
                   f"(or remove {tmp_path / 'home'} to start its history over)")
    assert not (second / "records").exists()  # none of the first root's sessions ran against it
    assert main(["materialize", "--data-root", str(first), "--assets", "raw_records"]) == 0  # its own root: fine


def _blocked_output(tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    root = _landed(tmp_path / "data")
    scenario = sorted(p.name for p in (root / "landing").iterdir())[0]
    (root / "records").mkdir()
    (root / "records" / scenario).write_text("in the way")
    return root, f"{root / 'records' / scenario} is a file where the output folder {root / 'records' / scenario} must be"


def _bad_home_file(tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return _landed(tmp_path / "data"), f"DAGSTER_HOME {tmp_path / 'home'} is a file; expected a folder"


def _bad_instance_yaml(tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("run_storage: [unclosed\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return _landed(tmp_path / "data"), f"{tmp_path / 'home' / 'dagster.yaml'}: cannot open the Dagster instance"


@pytest.mark.parametrize("make", [_blocked_output, _bad_home_file, _bad_instance_yaml])
def test_runs_that_must_fail_say_why_in_one_line(tmp_path: Path, capsys, monkeypatch, make):
    root, says = make(tmp_path, monkeypatch)
    landing = _tree(root, "landing")
    assert main(["materialize", "--data-root", str(root), "--assets", "raw_records"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("swarm-learn materialize: error: ") and says in err[-1]
    assert not any(line.startswith((" ", "Traceback", "Stack Trace")) or "Stack Trace" in line for line in err)
    assert len(err) <= 4  # the stage line, Dagster's step and run failure lines, the error
    assert _tree(root, "landing") == landing


def test_materialize_runs_many_sessions_in_bounded_runs(tmp_path: Path, monkeypatch):
    """A run's memory must not grow with the sessions landed: the CLI splits them as backfills do."""
    import dagster as dg

    from swarm_learn_assets import runner

    monkeypatch.setattr(runner, "RUN_PARTITIONS", 4)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"
    simulate(root, scenarios=2, sessions=5, seed=3)
    stages: list[str] = []
    runner.materialize(root, ("raw_records", "episodes"), log_level="WARNING", on_stage=stages.append)
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs(dg.RunsFilter(job_name="process_sessions"))
    assert sorted(r.tags[runner.ASSET_PARTITION_RANGE_START_TAG] for r in runs) == sorted(
        instance.get_dynamic_partitions("sessions")[i] for i in (0, 4, 8))
    assert [s.strip() for s in stages[1:]] == ["sessions 1-4 of 10", "sessions 5-8 of 10", "sessions 9-10 of 10"]
    assert len(instance.get_materialized_partitions(dg.AssetKey("episodes"))) == 10
