"""Crash safety, measured: `swarm-learn materialize` killed with SIGKILL in the middle of a session
batch and in the middle of training (crash points, core/storage/faults.py), then run again. No partial file
is ever visible under a final name, the second run completes, and its outputs equal a clean run's
byte for byte (adapter folders excepted: a killed training's number is not reused)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.storage.faults import CRASH_ENV
from swarm_learn_assets.simulate import simulate

from .processes import gone_within, running_in_session

DATA_AREAS = ("records", "quarantine", "episodes", "snapshots", "models")
DATA_ASSETS = "raw_records,episodes,session_snapshot,scenario_model"


def _materialize(root: Path, home: Path, tiny: Path, crash: str | None = None, assets: str | None = None) -> int:
    env = {**os.environ, "DAGSTER_HOME": str(home), "SWARM_LEARN_BASE_MODEL": str(tiny)}
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    argv = [sys.executable, "-m", "swarm_learn_assets.cli", "materialize", "--data-root", str(root),
            *(["--assets", assets] if assets else [])]  # fmt: skip
    # Its own session: the crash point kills the run's whole process group, as a power cut would.
    # Output goes to a file, not a pipe, so the test never waits on a pipe a dead run left open.
    with open(home.parent / f"{home.name}-materialize.log", "a") as log:
        run = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        code = run.wait(timeout=600)
    assert gone_within(lambda: running_in_session(run.pid), 10) == []  # nothing of the run outlives it
    return code


def _files(root: Path, areas: tuple[str, ...]) -> dict[str, str]:
    """Final-named files (not hidden temporaries) → sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for area in areas for p in sorted((root / area).rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}  # fmt: skip


def _partial_files(root: Path) -> list[str]:
    """Files under final names that cannot be read whole: there must be none, whenever the run died."""
    broken = []
    for path in root.rglob("*"):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        try:
            if path.suffix == ".parquet" or path.suffix == ".arrow":
                pq.read_metadata(path) if path.suffix == ".parquet" else path.read_bytes()
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the failure
            broken.append(f"{path}: {exc}")
    return broken


def _landed(root: Path) -> Path:
    simulate(root, scenarios=2, sessions=6, seed=8)
    return root


def test_killed_in_the_middle_of_a_batch(tmp_path: Path, tiny_model_dir: Path):
    clean = _landed(tmp_path / "clean")
    assert _materialize(clean, tmp_path / "clean-home", tiny_model_dir, assets=DATA_ASSETS) == 0
    root, home = _landed(tmp_path / "data"), tmp_path / "home"
    assert _materialize(root, home, tiny_model_dir, crash="write:9", assets=DATA_ASSETS) == -signal.SIGKILL
    written = _files(root, DATA_AREAS)
    assert 0 < len(written) < len(_files(clean, DATA_AREAS))  # it died part-way through the batch
    assert _partial_files(root) == []
    assert _materialize(root, home, tiny_model_dir, assets=DATA_ASSETS) == 0
    assert _files(root, DATA_AREAS) == _files(clean, DATA_AREAS)
    assert [p for p in root.rglob(".*") if p.name not in (".swarm-learn.lock", ".swarm-learn")] == []  # no temporaries left


@pytest.mark.slow  # three trainings of the tiny model: minutes on two cores
def test_killed_in_the_middle_of_training(tmp_path: Path, tiny_model_dir: Path):
    clean = _landed(tmp_path / "clean")
    assert _materialize(clean, tmp_path / "clean-home", tiny_model_dir) == 0
    root, home = _landed(tmp_path / "data"), tmp_path / "home"
    assert _materialize(root, home, tiny_model_dir, crash="train_step:2") == -signal.SIGKILL
    assert _partial_files(root) == []
    scenario = sorted(p.name for p in (root / "datasets").iterdir())[0]
    killed = root / "adapters" / scenario / "v0001"
    assert killed.is_dir() and not (killed / "eval.json").exists()  # the training died before it finished
    assert _materialize(root, home, tiny_model_dir) == 0
    areas = (*DATA_AREAS, "datasets")
    assert _files(root, areas) == _files(clean, areas)
    finished = sorted(p.parent.name for p in (root / "adapters" / scenario).glob("v*/eval.json"))
    assert finished == ["v0002"]  # trained again under a new number; the killed v0001 is never listed
    assert all((p / "eval.json").is_file() for p in (root / "adapters").glob("*/v*") if p.name != "v0001")
