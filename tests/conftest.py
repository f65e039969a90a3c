"""Shared fixtures: small simulated data roots and an isolated Dagster instance per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_learn_assets.simulate import simulate


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory) -> Path:
    """2 scenarios x 4 sessions of simulated landing files, generated once (read-only for tests)."""
    root = tmp_path_factory.mktemp("landing_src")
    simulate(root, scenarios=2, sessions=4, seed=11)
    return root


@pytest.fixture
def data_root(tmp_path: Path, small_landing: Path, monkeypatch) -> Path:
    """A fresh data root holding a copy of the small landing set, with its own DAGSTER_HOME."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(small_landing / "landing", root / "landing")
    monkeypatch.setenv("SWARM_LEARN_DATA", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return root
