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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny base model whose tokenizer knows the simulated scenarios' texts."""
    from swarm_learn_assets.core.stages.session_batch import process_sessions
    from swarm_learn_assets.core.storage.layout import DataLayout
    from swarm_learn_assets.simulate import simulate
    from swarm_learn_assets.training.tiny_model import build_tiny_model_for_data

    root = tmp_path_factory.mktemp("tiny-src")
    simulate(root, scenarios=2, sessions=3, seed=5)
    layout = DataLayout(root)
    process_sessions(layout, [f.key for f in layout.scan_landing()[0]])
    return build_tiny_model_for_data(root / "tiny", root)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the whole run (each test gets its own database). Without
    the server binaries the postgres tests skip, unless SWARM_LEARN_REQUIRE_POSTGRES is set (CI)."""
    import os

    from swarm_learn_assets.testing.postgres import PostgresUnavailable, ThrowawayPostgres

    try:
        server = ThrowawayPostgres().start()
    except PostgresUnavailable as exc:
        if os.environ.get("SWARM_LEARN_REQUIRE_POSTGRES"):
            raise
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance_backend(request, tmp_path: Path, monkeypatch) -> str:
    """Runs the test against a SQLite instance and (marker `postgres`) a PostgreSQL one: the
    instance file in the test's `DAGSTER_HOME` (the one `data_root` uses) is written for it."""
    from swarm_learn_assets.runner import POSTGRES_URL_ENV, instance_yaml

    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    if request.param == "postgres":
        monkeypatch.setenv(POSTGRES_URL_ENV, request.getfixturevalue("postgres_server").create_database())
    else:
        monkeypatch.delenv(POSTGRES_URL_ENV, raising=False)
    (home / "dagster.yaml").write_text(instance_yaml(postgres=request.param == "postgres"))
    return request.param
