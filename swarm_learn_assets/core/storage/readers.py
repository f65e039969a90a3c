"""Reading many per-session files at once: the columns a stage needs from thousands of records or
episode files in one parallel DuckDB scan, each row tagged with its session (`SESSION_KEY`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ..contract.schema import COLUMNS
from ..episodes.episode_table import EPISODE_SCHEMA
from .layout import DataLayout
from .names import SESSION_KEY, session_partition_key, split_session_key


def read_session_files(paths: dict[str, Path], columns: Sequence[str], where: str = "") -> pa.Table:
    """Read the given columns of many per-session parquet files in one parallel DuckDB scan,
    optionally only the rows matching a (constant) SQL condition."""
    con = duckdb.connect()
    mapping = pa.table({"file": [str(p) for p in paths.values()], SESSION_KEY: list(paths)})
    con.register("mapping", mapping)
    cols = ", ".join(f'd."{c}"' for c in columns)
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths.values()) + "]"
    table = con.sql(
        f"SELECT m.{SESSION_KEY}, {cols} FROM read_parquet({files}, filename = true, union_by_name = true) d "
        f"JOIN mapping m ON d.filename = m.file {'WHERE ' + where if where else ''}"
    ).to_arrow_table()
    con.close()
    return table


RECORD_COLUMNS_FOR_STATS = (
    "kind", "seq", "timestamp_ms", "worker_id", "action", "success", "duration_ms", "previous_action",
    "selection_logic", "task_id", "group_id", "context",
)


def existing_files(layout_path: Callable[[str], Path], keys: Sequence[str]) -> dict[str, Path]:
    """The files of the given sessions that exist, keyed by session."""
    paths = {k: layout_path(k) for k in keys}
    return {k: p for k, p in paths.items() if p.is_file()}


def read_records(layout: DataLayout, keys: Sequence[str]) -> pa.Table:
    """The validated records of the given sessions (the columns the learn models use)."""
    paths = existing_files(layout.records, keys)
    if not paths:
        return pa.table({SESSION_KEY: pa.array([], pa.string()),
                         **{c: pa.array([], COLUMNS[c]) for c in RECORD_COLUMNS_FOR_STATS}})
    return read_session_files(paths, RECORD_COLUMNS_FOR_STATS)


def read_episodes(layout: DataLayout, keys: Sequence[str]) -> pa.Table:
    """The episode files of the given sessions, as one table of EPISODE_SCHEMA."""
    paths = existing_files(layout.episodes, keys)
    if not paths:
        return EPISODE_SCHEMA.empty_table()
    return read_session_files(paths, EPISODE_SCHEMA.names).drop_columns([SESSION_KEY]).cast(EPISODE_SCHEMA)


DECISION_RECORD_COLUMNS = ("kind", "seq", "worker_id", "target", "call_type", "prompt", "response", "error")


def read_decision_records(layout: DataLayout, scenario: str, session_ids: Sequence[str]) -> list[dict]:
    """The `action` and `llm_call` rows of the sessions (only the columns that link a decide call to
    its task, and the action's target), each with its `session_id`: what the `llm_decision` and
    `task_step` training rows are made from."""
    paths = existing_files(layout.records, [session_partition_key(scenario, s) for s in session_ids])
    if not paths:
        return []
    table = read_session_files(paths, DECISION_RECORD_COLUMNS, "d.kind IN ('action', 'llm_call')")
    rows = table.to_pylist()
    for row in rows:
        row["session_id"] = split_session_key(row.pop(SESSION_KEY))[1]
    return rows


def read_session_actions(layout: DataLayout, scenario: str, session_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each session's available actions, from its first dependency graph that names any."""
    paths = existing_files(layout.records, [session_partition_key(scenario, s) for s in session_ids])
    if not paths:
        return {}
    table = read_session_files(paths, ["seq", "available_actions"],
                                "d.kind = 'dependency_graph' AND len(d.available_actions) > 0")
    first = table.take(pc.sort_indices(table, [(SESSION_KEY, "ascending"), ("seq", "ascending")]))
    actions: dict[str, list[str]] = {}
    for key, names in zip(first.column(SESSION_KEY).to_pylist(), first.column("available_actions").to_pylist()):
        actions.setdefault(split_session_key(key)[1], list(names))
    return actions
