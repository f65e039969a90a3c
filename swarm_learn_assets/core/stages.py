"""The pipeline stages as plain functions over the data root: read inputs, apply the rules, write outputs.

Every stage takes many sessions at once (a backfill batch) and handles them in a few vectorised
passes; per-session work is limited to file reads and writes. Outputs are written atomically and
replace what a previous run wrote, so running a stage twice gives the same files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .atomic import write_json, write_parquet
from .episode_table import EPISODE_SCHEMA, build_episode_table
from .layout import DataLayout
from .learn_models import WORKER_TASK
from .merge import MergeStrategy
from .names import split_session_key
from .offline import DEFAULT_MAX_SESSIONS, DependencyOrder, build_scenario_model
from .schema import COLUMNS, REJECT_REASON, SOURCE_ROW
from .snapshot import DEFAULT_NGRAM_ORDERS, Snapshot, build_snapshots, check_ngram_orders
from .validation import SESSION_KEY, LandingFileError, NormalisedSession, normalise, read_landing, validate

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SessionIngest:
    """What validation did to one landing file."""

    key: str
    records: int
    rejected: int
    error: str | None = None

    @property
    def rows(self) -> int:
        return self.records + self.rejected

    @property
    def quarantine_share(self) -> float:
        """Share of rows that did not make it; a file rejected whole counts as 1.0."""
        if self.error is not None:
            return 1.0
        return self.rejected / self.rows if self.rows else 0.0


def split_by_session(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """Slices of a table sorted by `_session`, one per session, without copying."""
    if table.num_rows == 0:
        return
    encoded = table.column(SESSION_KEY).combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.diff(codes)) + 1
    bounds = [0, *starts.tolist(), len(codes)]
    for begin, end in zip(bounds, bounds[1:]):
        yield encoded.dictionary[codes[begin]].as_py(), table.slice(begin, end - begin)


# Sessions handled per vectorised pass: large enough to amortise per-query costs, small enough to
# keep memory flat however many sessions a backfill run covers.
CHUNK_SESSIONS = 100
# Parquet reads and writes release the GIL; a few threads keep both cores busy with per-file work.
IO_THREADS = 4

RECORDS, EPISODES, SNAPSHOTS = "records", "episodes", "snapshots"
STEPS = (RECORDS, EPISODES, SNAPSHOTS)


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), CHUNK_SESSIONS):
        yield keys[start : start + CHUNK_SESSIONS]


def _parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    with ThreadPoolExecutor(IO_THREADS) as pool:
        return list(pool.map(fn, items))


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class SessionSettings:
    """The rules' parameters for a session batch (the learn models' minimums, n-gram orders)."""

    min_task_actions: int = 2
    min_decision_actions: int = 3
    ngram_orders: tuple[int, ...] = tuple(DEFAULT_NGRAM_ORDERS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ngram_orders", tuple(check_ngram_orders(self.ngram_orders)))


@dataclass
class SessionBatch:
    """What one pass over a batch of sessions produced, per step that ran."""

    ingest: list[SessionIngest] = field(default_factory=list)
    episodes: list[pa.Table] = field(default_factory=list)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)

    def episode_table(self) -> pa.Table:
        return pa.concat_tables(self.episodes) if self.episodes else EPISODE_SCHEMA.empty_table()


def process_sessions(
    layout: DataLayout,
    keys: Sequence[str],
    steps: Collection[str] = STEPS,
    settings: SessionSettings = SessionSettings(),
) -> SessionBatch:
    """Run the selected session steps over many sessions, chunk by chunk, in one pass.

    A chunk's records and episodes stay in memory from the step that makes them to the steps that
    use them; a step that is not selected has its inputs read from the files an earlier run wrote.
    """
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown step(s) {sorted(unknown)}; expected some of {list(STEPS)}")
    batch = SessionBatch()
    for chunk in _chunks(keys):
        records = None
        if RECORDS in steps:
            ingest, records = _ingest_chunk(layout, chunk)
            batch.ingest.extend(ingest)
        if EPISODES not in steps and SNAPSHOTS not in steps:
            continue
        if records is None:
            records = read_records(layout, chunk)
        if EPISODES in steps:
            episodes = _episodes_chunk(layout, chunk, records, settings)
            batch.episodes.append(episodes)
        else:
            episodes = _read_episodes(layout, chunk)
        if SNAPSHOTS in steps:
            batch.snapshots.update(_snapshots_chunk(layout, chunk, records, episodes, settings))
    return batch


def ingest_sessions(layout: DataLayout, keys: Sequence[str]) -> list[SessionIngest]:
    """landing → records/ + quarantine/. An unreadable file gets `<session>.error.json`; others go on."""
    return process_sessions(layout, keys, [RECORDS]).ingest


def build_session_episodes(
    layout: DataLayout, keys: Sequence[str], min_task_actions: int = 2, min_decision_actions: int = 3
) -> pa.Table:
    """records/ → episodes/. Sessions without records (rejected whole) get no episodes file."""
    settings = SessionSettings(min_task_actions, min_decision_actions)
    return process_sessions(layout, keys, [EPISODES], settings).episode_table()


def build_session_snapshots(
    layout: DataLayout, keys: Sequence[str], ngram_orders: Sequence[int] = DEFAULT_NGRAM_ORDERS
) -> dict[str, Snapshot]:
    """episodes/ + records/ → snapshots/*.json."""
    return process_sessions(layout, keys, [SNAPSHOTS], SessionSettings(ngram_orders=tuple(ngram_orders))).snapshots


def _read_normalised(layout: DataLayout, key: str) -> NormalisedSession | LandingFileError:
    path = layout.landing(key)
    try:
        if not path.is_file():
            raise LandingFileError(path, "does not exist; expected a landing parquet file")
        return normalise(read_landing(path), key, str(path))
    except LandingFileError as exc:
        return exc


def _ingest_chunk(layout: DataLayout, keys: Sequence[str]) -> tuple[list[SessionIngest], pa.Table]:
    outcome: dict[str, SessionIngest] = {}
    normalised = []
    for key, session in zip(keys, _parallel(lambda k: _read_normalised(layout, k), keys)):
        if isinstance(session, LandingFileError):
            write_json({"file": session.path, "error": session.problem, "session": key}, layout.error(key))
            _remove(layout.records(key), layout.quarantine(key))
            outcome[key] = SessionIngest(key, 0, 0, str(session))
        else:
            normalised.append(session)
    result = validate(normalised)
    good = dict(split_by_session(result.records))
    bad = dict(split_by_session(result.rejected))

    def write(session: NormalisedSession) -> SessionIngest:
        key = session.session_key
        keep = [*COLUMNS, *session.extra_columns, SOURCE_ROW]
        records = good.get(key)
        records = records.select(keep) if records is not None else session.table.slice(0, 0).select(keep)
        write_parquet(records, layout.records(key))
        rejected = bad.get(key)
        if rejected is not None:
            rejected = rejected.select([*keep, REJECT_REASON])
            rejected = rejected.append_column(
                "source_file", pa.repeat(pa.scalar(session.source, pa.string()), rejected.num_rows)
            )
            write_parquet(rejected, layout.quarantine(key))
        else:
            _remove(layout.quarantine(key))
        _remove(layout.error(key))
        return SessionIngest(key, records.num_rows, 0 if rejected is None else rejected.num_rows)

    outcome.update((r.key, r) for r in _parallel(write, normalised))
    stats_columns = [SESSION_KEY, *RECORD_COLUMNS_FOR_STATS]
    return [outcome[k] for k in keys], result.records.select(stats_columns)


def _read_session_files(paths: dict[str, Path], columns: Sequence[str]) -> pa.Table:
    """Read the given columns of many per-session parquet files in one parallel DuckDB scan."""
    con = duckdb.connect()
    mapping = pa.table({"file": [str(p) for p in paths.values()], SESSION_KEY: list(paths)})
    con.register("mapping", mapping)
    cols = ", ".join(f'd."{c}"' for c in columns)
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths.values()) + "]"
    table = con.sql(
        f"SELECT m.{SESSION_KEY}, {cols} FROM read_parquet({files}, filename = true, union_by_name = true) d "
        f"JOIN mapping m ON d.filename = m.file"
    ).to_arrow_table()
    con.close()
    return table


RECORD_COLUMNS_FOR_STATS = (
    "kind", "seq", "timestamp_ms", "worker_id", "action", "success", "duration_ms", "previous_action",
    "selection_logic", "task_id", "group_id", "context",
)


def _existing(layout_path: Callable[[str], Path], keys: Sequence[str]) -> dict[str, Path]:
    """The files of the given sessions that exist, keyed by session."""
    paths = {k: layout_path(k) for k in keys}
    return {k: p for k, p in paths.items() if p.is_file()}


def read_records(layout: DataLayout, keys: Sequence[str]) -> pa.Table:
    """The validated records of the given sessions (the columns the learn models use)."""
    paths = _existing(layout.records, keys)
    if not paths:
        return pa.table({SESSION_KEY: pa.array([], pa.string()),
                         **{c: pa.array([], COLUMNS[c]) for c in RECORD_COLUMNS_FOR_STATS}})
    return _read_session_files(paths, RECORD_COLUMNS_FOR_STATS)


def _read_episodes(layout: DataLayout, keys: Sequence[str]) -> pa.Table:
    paths = _existing(layout.episodes, keys)
    if not paths:
        return EPISODE_SCHEMA.empty_table()
    return _read_session_files(paths, EPISODE_SCHEMA.names).drop_columns([SESSION_KEY]).cast(EPISODE_SCHEMA)


def _episodes_chunk(layout: DataLayout, keys: Sequence[str], records: pa.Table, settings: SessionSettings) -> pa.Table:
    episodes = build_episode_table(records, settings.min_task_actions, settings.min_decision_actions)
    sessions = pc.binary_join_element_wise(episodes.column("scenario"), episodes.column("session_id"), ".")
    by_session = dict(split_by_session(episodes.append_column(SESSION_KEY, sessions)))
    with_records = set(pc.unique(records.column(SESSION_KEY)).to_pylist())

    def write(key: str) -> None:
        if key not in with_records and not layout.records(key).is_file():
            _remove(layout.episodes(key))
            return
        table = by_session.get(key)
        table = table.drop_columns([SESSION_KEY]) if table is not None else EPISODE_SCHEMA.empty_table()
        write_parquet(table, layout.episodes(key))

    _parallel(write, keys)
    return episodes


def _snapshots_chunk(
    layout: DataLayout, keys: Sequence[str], records: pa.Table, episodes: pa.Table, settings: SessionSettings
) -> dict[str, Snapshot]:
    snapshots = build_snapshots(records, episodes, settings.ngram_orders)

    def write(key: str) -> None:
        if key in snapshots:
            write_json(snapshots[key], layout.snapshot(key), indent=None)
        else:
            _remove(layout.snapshot(key))

    _parallel(write, keys)
    return snapshots


def count_task_outcomes(layout: DataLayout, keys: Sequence[str]) -> dict[str, int]:
    """Worker-task episodes per outcome in the episode files of the given sessions."""
    paths = _existing(layout.episodes, keys)
    if not paths:
        return {}
    table = _read_session_files(paths, ["learn_model", "outcome"])
    tasks = table.filter(pc.equal(table.column("learn_model"), WORKER_TASK))
    return {row["values"]: row["counts"] for row in pc.value_counts(tasks.column("outcome")).to_pylist()}


def load_snapshots(layout: DataLayout, scenario: str) -> list[Snapshot]:
    directory = layout.snapshot_dir(scenario)
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []


def _dependency_orders(layout: DataLayout, scenario: str, created_at: dict[str, int]) -> dict[str, DependencyOrder]:
    """The last dependency-graph inference of each session that has one, stamped with the session's time."""
    paths = _existing(layout.records, [f"{scenario}.{s}" for s in created_at])
    if not paths:
        return {}
    table = _read_session_files(paths, ["kind", "seq", "discover_order", "not_discover_order"])
    con = duckdb.connect()
    con.register("records", table)
    rows = con.sql(
        f"""SELECT {SESSION_KEY}, arg_max(discover_order, seq), arg_max(not_discover_order, seq)
            FROM records WHERE kind = 'dependency_graph' GROUP BY {SESSION_KEY}"""
    ).fetchall()
    con.close()
    orders = {}
    for key, discover, not_discover in rows:
        session_id = split_session_key(key)[1]
        orders[session_id] = DependencyOrder(created_at[session_id], list(discover or []), list(not_discover or []))
    return orders


def build_model_for_scenario(
    layout: DataLayout,
    scenario: str,
    strategy: MergeStrategy = MergeStrategy(),
    max_sessions: int = DEFAULT_MAX_SESSIONS,
) -> dict:
    """snapshots/<scenario>/* → models/<scenario>/scenario_model.json, recomputed from scratch."""
    snapshots = load_snapshots(layout, scenario)
    created_at = {s["metadata"]["session_id"]: s["metadata"]["created_at_ms"] for s in snapshots}
    orders = _dependency_orders(layout, scenario, created_at)
    model = build_scenario_model(scenario, snapshots, strategy, max_sessions, orders)
    write_json(model, layout.scenario_model(scenario))
    return model


__all__ = [
    "SessionBatch",
    "SessionIngest",
    "SessionSettings",
    "process_sessions",
    "ingest_sessions",
    "build_session_episodes",
    "build_session_snapshots",
    "build_model_for_scenario",
    "load_snapshots",
    "read_records",
    "split_by_session",
]
