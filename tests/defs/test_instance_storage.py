"""The instance template's event log: pooled, batched SQLite that stores the same events as Dagster's."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from swarm_learn_assets.defs.instance_storage import EVENT_BATCH_SIZE_ENV, PooledSqliteEventLogStorage
from swarm_learn_assets.runner import materialize, prepare_instance


def test_template_instance_uses_the_pooled_event_log_and_turns_batching_on(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    instance = prepare_instance(tmp_path / "home")
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    assert (tmp_path / "home" / "history" / "runs" / "index.db").is_file()
    assert int(os.environ[EVENT_BATCH_SIZE_ENV]) > 1


def test_batched_partition_events_are_complete_and_in_order(data_root: Path):
    sessions, _, _ = materialize(data_root, assets=("raw_records", "episodes"), log_level="WARNING")
    instance = dg.DagsterInstance.get()
    key = dg.AssetKey("episodes")

    found = instance.fetch_materializations(key, limit=100).records
    assert sorted(r.partition_key for r in found) == sorted(sessions)
    assert instance.get_materialized_partitions(key) == set(sessions)
    # Every planned partition was followed by its materialization (nothing looks in progress or failed).
    attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(key)
    assert attempts == {}
    # The asset row points at the newest materialization of the run.
    run_id = found[0].run_id
    latest = instance.get_latest_materialization_event(key)
    assert latest is not None and latest.run_id == run_id

    # The run's own log holds one planned event and one materialization per partition and asset,
    # the check's planned event that was batched among them, in storage order.
    logs = instance.all_logs(run_id)
    planned = [e for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED]
    done = [e for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    checks = [e for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED]
    assert len(planned) == len(done) == 2 * len(sessions)
    assert len(checks) == 2
    assert {e.get_dagster_event().partition for e in done} == set(sessions)
    records = instance.get_records_for_run(run_id).records
    assert [r.storage_id for r in records] == sorted(r.storage_id for r in records)


def test_the_postgres_instance_file_replaces_only_the_storage():
    import yaml

    from swarm_learn_assets.runner import POSTGRES_URL_ENV, SQLITE_STORAGE_KEYS, instance_yaml

    sqlite, postgres = yaml.safe_load(instance_yaml()), yaml.safe_load(instance_yaml(postgres=True))
    assert all("Sqlite" in sqlite[k]["class"] for k in SQLITE_STORAGE_KEYS)
    url = {"postgres_url": {"env": POSTGRES_URL_ENV}}
    assert postgres["run_storage"] == {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage",
                                       "config": url}
    assert postgres["event_log_storage"] == {"module": "swarm_learn_assets.defs.instance_storage",
                                             "class": "CachedPostgresEventLogStorage", "config": url}
    assert postgres["schedule_storage"] == {"module": "dagster_postgres.schedule_storage",
                                            "class": "PostgresScheduleStorage", "config": url}
    assert {k: v for k, v in sqlite.items() if k not in SQLITE_STORAGE_KEYS} == \
        {k: v for k, v in postgres.items() if k not in SQLITE_STORAGE_KEYS}


def _partition_set_answers_what_the_database_holds(home: Path, monkeypatch) -> None:
    """Two instances on one storage, as the CLI and the daemon: what one adds or deletes, the other's
    cached set shows on its next read; a repeated read is served without reading the keys again."""
    writer, reader = prepare_instance(home), dg.DagsterInstance.from_config(str(home))
    try:
        writer.add_dynamic_partitions("sessions", ["sc.a", "sc.b"])
        assert reader.get_dynamic_partitions("sessions") == ["sc.a", "sc.b"]
        storage = reader.event_log_storage
        reads = []
        parent = type(storage).__mro__[2].get_dynamic_partitions  # the stock storage's full read
        monkeypatch.setattr(type(storage).__mro__[2], "get_dynamic_partitions",
                            lambda self, name: reads.append(name) or parent(self, name))
        assert reader.get_dynamic_partitions("sessions") == ["sc.a", "sc.b"]
        assert reads == []  # answered from the cache
        writer.add_dynamic_partitions("sessions", ["sc.c"])
        assert reader.get_dynamic_partitions("sessions") == ["sc.a", "sc.b", "sc.c"]
        writer.delete_dynamic_partition("sessions", "sc.c")
        assert reader.get_dynamic_partitions("sessions") == ["sc.a", "sc.b"]
        writer.delete_dynamic_partition("sessions", "sc.a")
        writer.add_dynamic_partitions("sessions", ["sc.d"])  # same count as before
        assert reader.get_dynamic_partitions("sessions") == ["sc.b", "sc.d"]
        writer.delete_dynamic_partition("sessions", "sc.d")  # the newest: SQLite gives its id to the next key
        writer.add_dynamic_partitions("sessions", ["sc.e"])
        assert reader.get_dynamic_partitions("sessions") == ["sc.b", "sc.e"]
        assert reads == ["sessions"] * 4
        assert reader.get_dynamic_partitions("scenarios") == []
        reader.get_dynamic_partitions("sessions").append("not stored")  # callers get their own list
        assert reader.get_dynamic_partitions("sessions") == ["sc.b", "sc.e"]
    finally:
        writer.dispose()
        reader.dispose()


def test_the_sqlite_partition_set_cache_answers_what_the_database_holds(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    _partition_set_answers_what_the_database_holds(tmp_path / "home", monkeypatch)


@pytest.mark.postgres
def test_the_postgres_partition_set_cache_answers_what_the_database_holds(postgres_server, tmp_path: Path,
                                                                         monkeypatch):
    from swarm_learn_assets.runner import POSTGRES_URL_ENV

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(POSTGRES_URL_ENV, postgres_server.create_database())
    _partition_set_answers_what_the_database_holds(tmp_path / "home", monkeypatch)


@pytest.mark.postgres
def test_a_new_home_with_the_url_set_stores_in_postgres_and_keeps_it(postgres_server, tmp_path: Path, monkeypatch):
    from swarm_learn_assets.runner import POSTGRES_URL_ENV

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(POSTGRES_URL_ENV, postgres_server.create_database())
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    instance = prepare_instance(tmp_path / "home")
    assert int(os.environ[EVENT_BATCH_SIZE_ENV]) > 1  # batched event writes, as for the pooled SQLite
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "CachedPostgresEventLogStorage"
    assert not (tmp_path / "home" / "history").exists()  # no SQLite files
    instance.add_dynamic_partitions("sessions", ["sc.s1"])
    instance.dispose()
    # the same home again: its instance file names the storage, and what was stored is there
    again = prepare_instance(tmp_path / "home")
    assert again.get_dynamic_partitions("sessions") == ["sc.s1"]
    again.dispose()


def test_a_postgres_url_without_the_psycopg2_driver_is_one_clear_line(tmp_path: Path, monkeypatch):
    from swarm_learn_assets.runner import POSTGRES_URL_ENV, InstanceError

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(POSTGRES_URL_ENV, "postgresql://u:secret@db:5432/dagster")
    with pytest.raises(InstanceError, match=r"expected postgresql\+psycopg2://.*got postgresql://…") as caught:
        prepare_instance(tmp_path / "home")
    assert "secret" not in str(caught.value)


# What PooledSqliteEventLogStorage takes from Dagster's SQLite event log beyond its public API:
# method -> the parameters it is called with. pyproject bounds Dagster below 1.14; a Dagster that
# changes any of these must fail here, not corrupt or slow an instance quietly.
PRIVATE_API = {
    "_connect": ["self", "shard"],
    "_initdb": ["self", "engine", "for_index_shard"],
    "conn_string_for_shard": ["self", "shard_name"],
    "prepare_insert_event": ["self", "event"],
    "run_connection": ["self", "run_id"],
    "index_transaction": ["self"],
    "_store_asset_event_tags": ["self", "conn", "events", "event_ids"],
    "_store_asset_event": ["self", "conn", "event", "event_id"],
    "has_table": ["self", "table_name"],
    "store_event": ["self", "event"],
}


def test_the_private_event_log_api_the_pooled_storage_relies_on_is_unchanged():
    import inspect

    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    changed = {name: str(inspect.signature(getattr(SqliteEventLogStorage, name)))
               for name, params in PRIVATE_API.items()
               if not hasattr(SqliteEventLogStorage, name)
               or list(inspect.signature(getattr(SqliteEventLogStorage, name)).parameters) != params}
    assert not changed, (f"Dagster {dg.__version__} changed SqliteEventLogStorage internals that "
                         f"defs/instance_storage.py uses: {changed}; re-check it, or use Dagster's own storage")
    source = inspect.getsource(SqliteEventLogStorage.__init__)
    assert "self._db_lock" in source and "self._initialized_dbs" in source, "the shard lock and init set moved"
    assert tuple(int(x) for x in dg.__version__.split(".")[:2]) < (1, 14), "pyproject bounds dagster below 1.14"
