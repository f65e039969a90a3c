"""The pipeline stages as plain functions over the data root: read inputs, apply the rules, write outputs.

Every stage takes many sessions at once (a backfill batch) and handles them in a few vectorised
passes; per-session work is limited to file reads and writes. Outputs are written atomically and
replace what a previous run wrote, so running a stage twice gives the same files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .atomic import write_json, write_parquet
from .episodes_sql import EPISODE_SCHEMA, build_episode_table
from .layout import DataLayout
from .learn_models import WORKER_TASK
from .merge import MergeStrategy
from .names import split_session_key
from .offline import DEFAULT_MAX_SESSIONS, DependencyOrder, build_scenario_model
from .schema import COLUMNS, REJECT_REASON, SOURCE_ROW
from .snapshot import DEFAULT_NGRAM_ORDERS, Snapshot, build_snapshots, check_ngram_orders
from .validation import SESSION_KEY, LandingFileError, normalise, read_landing, validate


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


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), CHUNK_SESSIONS):
        yield keys[start : start + CHUNK_SESSIONS]


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def ingest_sessions(layout: DataLayout, keys: Sequence[str]) -> list[SessionIngest]:
    """landing → records/ + quarantine/. An unreadable file gets `<session>.error.json`; others go on."""
    return [result for chunk in _chunks(keys) for result in _ingest_chunk(layout, chunk)]


def _ingest_chunk(layout: DataLayout, keys: Sequence[str]) -> list[SessionIngest]:
    normalised, outcome = [], {}
    for key in keys:
        path = layout.landing(key)
        try:
            if not path.is_file():
                raise LandingFileError(path, "does not exist; expected a landing parquet file")
            normalised.append(normalise(read_landing(path), key, str(path)))
        except LandingFileError as exc:
            write_json({"file": str(path), "error": exc.problem, "session": key}, layout.error(key))
            _remove(layout.records(key), layout.quarantine(key))
            outcome[key] = SessionIngest(key, 0, 0, str(exc))
    result = validate(normalised)
    good = dict(split_by_session(result.records))
    bad = dict(split_by_session(result.rejected))
    for session in normalised:
        key = session.session_key
        keep = [*COLUMNS, *session.extra_columns, SOURCE_ROW]
        records = good.get(key)
        records = records.select(keep) if records is not None else session.table.slice(0, 0).select(keep)
        write_parquet(records, layout.records(key))
        rejected = bad.get(key)
        if rejected is not None:
            rejected = rejected.select([*keep, REJECT_REASON])
            rejected = rejected.append_column("source_file", pa.array([session.source] * rejected.num_rows))
            write_parquet(rejected, layout.quarantine(key))
        else:
            _remove(layout.quarantine(key))
        _remove(layout.error(key))
        outcome[key] = SessionIngest(key, records.num_rows, 0 if rejected is None else rejected.num_rows)
    return [outcome[k] for k in keys]


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


def build_session_episodes(
    layout: DataLayout, keys: Sequence[str], min_task_actions: int = 2, min_decision_actions: int = 3
) -> pa.Table:
    """records/ → episodes/. Sessions without records (rejected whole) get no episodes file."""
    return pa.concat_tables(
        [_episodes_chunk(layout, chunk, min_task_actions, min_decision_actions) for chunk in _chunks(keys)]
        or [EPISODE_SCHEMA.empty_table()]
    )


def _episodes_chunk(
    layout: DataLayout, keys: Sequence[str], min_task_actions: int, min_decision_actions: int
) -> pa.Table:
    records = read_records(layout, keys)
    episodes = build_episode_table(records, min_task_actions, min_decision_actions)
    sessions = pc.binary_join_element_wise(episodes.column("scenario"), episodes.column("session_id"), ".")
    by_session = dict(split_by_session(episodes.append_column(SESSION_KEY, sessions)))
    with_records = set(pc.unique(records.column(SESSION_KEY)).to_pylist())
    for key in keys:
        if key not in with_records and not layout.records(key).is_file():
            _remove(layout.episodes(key))
            continue
        table = by_session.get(key)
        table = table.drop_columns([SESSION_KEY]) if table is not None else EPISODE_SCHEMA.empty_table()
        write_parquet(table, layout.episodes(key))
    return episodes


def build_session_snapshots(
    layout: DataLayout, keys: Sequence[str], ngram_orders: Sequence[int] = DEFAULT_NGRAM_ORDERS
) -> dict[str, Snapshot]:
    """episodes/ + records/ → snapshots/*.json."""
    orders = check_ngram_orders(ngram_orders)
    return {key: snap for chunk in _chunks(keys) for key, snap in _snapshots_chunk(layout, chunk, orders).items()}


def _snapshots_chunk(layout: DataLayout, keys: Sequence[str], ngram_orders: Sequence[int]) -> dict[str, Snapshot]:
    records = read_records(layout, keys)
    paths = _existing(layout.episodes, keys)
    episodes = (
        _read_session_files(paths, EPISODE_SCHEMA.names).drop_columns([SESSION_KEY]).cast(EPISODE_SCHEMA)
        if paths
        else EPISODE_SCHEMA.empty_table()
    )
    snapshots = build_snapshots(records, episodes, ngram_orders)
    for key in keys:
        if key in snapshots:
            write_json(snapshots[key], layout.snapshot(key))
        else:
            _remove(layout.snapshot(key))
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
    "SessionIngest",
    "ingest_sessions",
    "build_session_episodes",
    "build_session_snapshots",
    "build_model_for_scenario",
    "load_snapshots",
    "read_records",
    "split_by_session",
]
