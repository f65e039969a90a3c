"""Dagster's SQLite instance storage, made fit for backfills that materialize thousands of partitions.

A run over 1,000 sessions records one materialization (and one "planned" event) per session and
asset: ~6,000 events. Dagster's stock SQLite event log opens a new SQLAlchemy engine for every
write (so nothing is pooled and every statement is compiled anew) and has no batch write; here that
cost ~14 ms per event, more than the pipeline's own work. This storage keeps the same files and
schema as the stock SQLite event log, so every Dagster tool reads it, and changes only how it writes:

* one engine per database file, reused (a small LRU, re-created after a fork);
* `store_event_batch` writes a batch of asset events in one transaction per database, and
  Dagster's event batching (`DAGSTER_EVENT_BATCH_SIZE`) is switched on in every process that uses
  this storage, so a partition range's events arrive as such batches;
* `PRAGMA synchronous=NORMAL`, the setting SQLite recommends for WAL databases: a crash of the
  process loses nothing; a power cut may lose the last transactions, never corrupts the file.

Both this storage and the PostgreSQL one (`CachedPostgresEventLogStorage`, see README, "Scaling
out") also remember a dynamic partition set between calls (`PartitionSetCache`): Dagster reads the
whole `sessions` set several times per run to resolve a partition range, which at 100,000
sessions made every run of a `swarm-learn materialize` slower the longer the history.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import DynamicPartitionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlalchemy_compat import db_result, db_select
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import pg_url_from_config

EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = 1000  # events per write transaction; a 1,000-session step is one batch
MAX_OPEN_ENGINES = 16  # run shards a process keeps open (the webserver reads many runs)


def _plain_asset_event(event: EventLogEntry) -> bool:
    """An asset event that needs no special handling beyond the index (not a check or run event)."""
    kind = event.dagster_event_type
    return (
        kind in ASSET_EVENTS
        and kind not in ASSET_CHECK_EVENTS
        and kind not in EVENT_TYPE_TO_PIPELINE_RUN_STATUS
        and event.get_dagster_event().asset_key is not None
    )


class PartitionSetCache:
    """Mixed into a SQL event log storage: `get_dynamic_partitions` answers from memory while the
    set's version — its row count and largest id (from the index alone), and that row's key and
    creation time (one primary-key lookup) — is the one it was read at. Another process adding or
    deleting keys changes the version: an added key gets a larger id; a deleted one lowers the
    count, and re-adding to the same count either raises the largest id or, where SQLite reuses the
    id of a deleted newest row, puts another key or creation time there. (A set changed so that all
    four agree — delete the newest and an older key, then add a new key and re-add the newest within
    the second it was first created — would go unseen until the next change.) The version is read
    before the keys, so a key added between the two reads is seen on the next call. Dagster asks for
    the whole `sessions` set ~9 times per run; at 100,000 keys each read costs ~0.1 s, a version
    check a few milliseconds."""

    def get_dynamic_partitions(self, partitions_def_name: str) -> Sequence[str]:
        cache: dict[str, tuple[tuple, tuple[str, ...]]] = self.__dict__.setdefault("_partition_sets", {})
        version = self._partition_set_version(partitions_def_name)
        hit = cache.get(partitions_def_name)
        if hit is not None and hit[0] == version:
            return list(hit[1])
        keys = super().get_dynamic_partitions(partitions_def_name)  # type: ignore[misc]
        cache[partitions_def_name] = (version, tuple(keys))
        return keys

    def _partition_set_version(self, partitions_def_name: str) -> tuple:
        table = DynamicPartitionsTable
        size = db_select([db.func.count(table.c.id), db.func.max(table.c.id)]).where(
            table.c.partitions_def_name == partitions_def_name)
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            count, newest = conn.execute(size).fetchone()
            row = conn.execute(db_select([table.c.partition, table.c.create_timestamp]).where(
                table.c.id == newest)).fetchone() if newest is not None else None
        return count, newest, *(row or ())


class CachedPostgresEventLogStorage(PartitionSetCache, PostgresEventLogStorage):
    """dagster-postgres's event log with the partition-set cache; configured like `postgres_url`."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> CachedPostgresEventLogStorage:
        return cls(postgres_url=pg_url_from_config(config_value), inst_data=inst_data,
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True))


class PooledSqliteEventLogStorage(PartitionSetCache, SqliteEventLogStorage):
    """SQLite event log with pooled engines and real batch writes (see the module docstring)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, db.Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._tables: set[str] = set()
        self._engines_lock = threading.Lock()
        super().__init__(base_dir, inst_data)
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, str(EVENT_BATCH_SIZE))

    def _engine(self, shard: str) -> db.Engine:
        with self._engines_lock:
            if self._engines_pid != os.getpid():  # pooled connections must not cross a fork
                self._engines.clear()
                self._engines_pid = os.getpid()
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = db.create_engine(
                self.conn_string_for_shard(shard), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
            )
            db.event.listen(engine, "connect", _set_synchronous_normal)
            self._engines[shard] = engine
            while len(self._engines) > MAX_OPEN_ENGINES:
                _, old = self._engines.popitem(last=False)
                old.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Asked on every asset event; a table that exists stays, so a yes is remembered."""
        if table_name in self._tables:
            return True
        with self._engine(INDEX_SHARD_NAME).connect() as conn:
            found = bool(conn.dialect.has_table(conn, table_name))
        if found:
            self._tables.add(table_name)
        return found

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Runs of consecutive plain asset events of one run are written together; anything else
        (check and run-status events) the stock way, one by one, in order."""
        pending: list[EventLogEntry] = []
        for event in events:
            if _plain_asset_event(event) and (not pending or pending[0].run_id == event.run_id):
                pending.append(event)
                continue
            self._store_asset_events(pending)
            pending = []
            if _plain_asset_event(event):
                pending.append(event)
            else:
                self.store_event(event)
        self._store_asset_events(pending)

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        """One transaction on the run's database and one on the index for many asset events."""
        if not events:
            return
        statements = [self.prepare_insert_event(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        with self.index_transaction() as conn:
            ids = []
            for statement in statements:
                with db_result(conn, statement) as result:
                    ids.append(result.inserted_primary_key[0])
            self._store_asset_event_tags(conn, events, ids)
            # The asset-key row keeps only the latest event of each type, so later events of the
            # same asset and type would overwrite what earlier ones write: write just the last.
            last = {(e.get_dagster_event().asset_key, e.dagster_event_type): i for i, e in enumerate(events)}
            for i in sorted(last.values()):
                self._store_asset_event(conn, events[i], ids[i])

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledSqliteEventLogStorage:
        """`base_dir` may be relative: it is then taken under `$DAGSTER_HOME`, so one dagster.yaml
        serves every instance folder."""
        base_dir = os.path.join(os.environ.get("DAGSTER_HOME", "."), config_value["base_dir"])
        return cls(base_dir, inst_data=inst_data)

    def dispose(self) -> None:
        super().dispose()
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


def _set_synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
