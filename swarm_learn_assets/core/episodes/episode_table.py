"""The learn-model rules of `learn_models` applied to many sessions at once, on Arrow columns.

Input: validated records with the `_session` column (`<scenario>.<session_id>`), any order.
Output: one row per episode with the columns of DESIGN §5 (plus `context` and `selection_logic`,
which prompts and strategy statistics need).

Why not SQL: an episode is a contiguous run of one worker's actions in `seq` order. After one sort,
every episode is a slice, so its lists are offsets into the sorted columns and its first/last/min/max
values are `reduceat` over those offsets — no per-group sorting, which is what ordered list
aggregates in SQL spend their time on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contract.schema import DONE, SYSTEM_EVENTS
from ..storage.names import SESSION_KEY
from .episode import episode_id
from .learn_models import WORKER_DECISION_SEQUENCE, WORKER_TASK

EPISODE_SCHEMA = pa.schema(
    [
        ("episode_id", pa.string()),
        ("learn_model", pa.string()),
        ("scenario", pa.string()),
        ("session_id", pa.string()),
        ("worker_id", pa.int64()),
        ("task_id", pa.string()),
        ("group_id", pa.string()),
        ("outcome", pa.string()),
        ("score", pa.float64()),
        ("reason", pa.string()),
        ("actions", pa.list_(pa.string())),
        ("record_seqs", pa.list_(pa.int64())),
        ("started_at_ms", pa.int64()),
        ("ended_at_ms", pa.int64()),
        ("context", pa.string()),
        ("selection_logic", pa.string()),
    ]
)

ACTION_COLUMNS = (SESSION_KEY, "seq", "worker_id", "action", "success", "task_id", "group_id", "context",
                  "selection_logic", "timestamp_ms")
_NONE = np.iinfo(np.int64).max  # "no such row" in index reductions
_SYSTEM = pa.array(sorted(SYSTEM_EVENTS))


@dataclass
class _Actions:
    """One learn model's input: action rows sorted by (session, worker, seq), with episode starts."""

    table: pa.Table
    starts: np.ndarray  # first row of each episode, ascending

    @property
    def ends(self) -> np.ndarray:
        """One past the last row of each episode."""
        return np.append(self.starts[1:], self.table.num_rows).astype(np.int64)


def _sorted_actions(records: pa.Table, keep: pa.ChunkedArray | None = None) -> pa.Table:
    actions = records.select(ACTION_COLUMNS).filter(pc.equal(records.column("kind"), "action"))
    if keep is not None:
        actions = actions.filter(keep)
    order = pc.sort_indices(actions, [(SESSION_KEY, "ascending"), ("worker_id", "ascending"), ("seq", "ascending")])
    return actions.take(order).combine_chunks()


def _group_changes(table: pa.Table) -> np.ndarray:
    """True where a row starts a new (session, worker) group."""
    n = table.num_rows
    session = pc.dictionary_encode(table.column(SESSION_KEY)).combine_chunks().indices.to_numpy(zero_copy_only=False)
    worker = table.column("worker_id").to_numpy()
    change = np.ones(n, dtype=bool)
    if n > 1:
        change[1:] = (session[1:] != session[:-1]) | (worker[1:] != worker[:-1])
    return change


def _first_index(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per episode, the first row where `mask` holds, or -1."""
    if len(starts) == 0:
        return np.empty(0, dtype=np.int64)
    candidates = np.where(mask, np.arange(len(mask), dtype=np.int64), _NONE)
    first = np.minimum.reduceat(candidates, starts)
    return np.where((first == _NONE) | (first >= ends), -1, first)


def _take_or_null(column: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> pa.Array:
    """column[rows], null where rows is -1."""
    return pc.take(column, pa.array(np.where(rows < 0, 0, rows), mask=rows < 0))


def _timestamps(column: pa.Array, rows: np.ndarray, starts: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Min and max of `column[rows]` per slice beginning at `starts` (offsets into `rows`), ignoring
    nulls; null for a slice without any."""
    if len(starts) == 0:
        return pa.array([], pa.int64()), pa.array([], pa.int64())
    gathered = pc.take(column, rows)
    valid = gathered.is_valid().to_numpy(zero_copy_only=False)
    values = gathered.fill_null(0).to_numpy()
    lo = np.minimum.reduceat(np.where(valid, values, _NONE), starts)
    hi = np.maximum.reduceat(np.where(valid, values, np.iinfo(np.int64).min), starts)
    none_valid = np.add.reduceat(valid.astype(np.int64), starts) == 0
    return pa.array(lo, mask=none_valid), pa.array(hi, mask=none_valid)


def _episode_rows(model: str, actions: _Actions, keep: np.ndarray, terminal_success: np.ndarray) -> pa.Table:
    """The episode table of one learn model, for the episodes where `keep` holds."""
    table, starts, ends = actions.table, actions.starts[keep], actions.ends[keep]
    n = len(starts)
    # The lists hold the kept slices only: gather their rows, then cut the gathered rows by length.
    lengths = ends - starts
    list_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=list_offsets[1:])
    rows = np.repeat(starts - list_offsets[:-1], lengths) + np.arange(list_offsets[-1], dtype=np.int64)
    action_values = pc.take(table.column("action"), rows).combine_chunks()
    seq_values = pc.take(table.column("seq"), rows).combine_chunks()
    list_offsets_np, list_offsets = list_offsets, pa.array(list_offsets.astype(np.int32))

    action = table.column("action")
    non_system = pc.and_(pc.is_valid(action), pc.invert(pc.is_in(action, _SYSTEM))).to_numpy(zero_copy_only=False)
    context = table.column("context")
    has_context = pc.and_(pc.is_valid(context), pc.not_equal(pc.fill_null(context, ""), "")).to_numpy(
        zero_copy_only=False
    )
    started_at, ended_at = _timestamps(table.column("timestamp_ms"), rows, list_offsets_np[:-1])

    sessions = pc.take(table.column(SESSION_KEY), starts)
    parts = pc.split_pattern(sessions, ".", max_splits=1)
    scenario = pc.list_element(parts, 0)
    session_id = pc.list_element(parts, 1)
    worker = pc.take(table.column("worker_id"), starts)
    first_seq = pc.take(table.column("seq"), starts)
    ids = [
        episode_id(sc, se, model, w, s)
        for sc, se, w, s in zip(scenario.to_pylist(), session_id.to_pylist(), worker.to_pylist(), first_seq.to_pylist())
    ]
    success = terminal_success[keep]
    return pa.table(
        {
            "episode_id": pa.array(ids, pa.string()),
            "learn_model": pa.repeat(pa.scalar(model), n),
            "scenario": scenario,
            "session_id": session_id,
            "worker_id": worker,
            "task_id": pc.take(table.column("task_id"), starts),
            "group_id": pc.take(table.column("group_id"), starts),
            "outcome": pa.array(np.where(success, "success", "failure"), pa.string()),
            "score": pa.array(np.where(success, 1.0, 0.0)),
            "reason": pa.array(np.where(success, None, "Task failed"), pa.string()),
            "actions": pa.ListArray.from_arrays(list_offsets, action_values),
            "record_seqs": pa.ListArray.from_arrays(list_offsets, seq_values),
            "started_at_ms": started_at,
            "ended_at_ms": ended_at,
            "context": _take_or_null(context, _first_index(has_context, starts, ends)),
            "selection_logic": _take_or_null(table.column("selection_logic"), _first_index(non_system, starts, ends)),
            "_first_seq": first_seq,
        }
    )


def _worker_task(records: pa.Table, min_actions: int) -> pa.Table:
    """Per worker, sequences ending at `done`; shorter than `min_actions` or unterminated: dropped."""
    table = _sorted_actions(records)
    n = table.num_rows
    is_done = pc.fill_null(pc.equal(table.column("action"), DONE), False).to_numpy(zero_copy_only=False)
    new = _group_changes(table)
    if n > 1:
        new[1:] |= is_done[:-1]
    actions = _Actions(table, np.flatnonzero(new).astype(np.int64))
    last = actions.ends - 1
    success = table.column("success").fill_null(False).to_numpy(zero_copy_only=False)
    keep = is_done[last] & ((actions.ends - actions.starts) >= min_actions) if n else np.zeros(0, dtype=bool)
    terminal_success = success[last] if n else np.zeros(0, dtype=bool)
    return _episode_rows(WORKER_TASK, actions, keep, terminal_success)


def _worker_decision_sequence(records: pa.Table, min_actions: int) -> pa.Table:
    """Per worker, the successful non-system actions, as one successful episode if there are enough."""
    kinds = records.column("kind")
    action = records.column("action")
    is_decision = pc.fill_null(
        pc.and_(pc.and_(pc.equal(kinds, "action"), records.column("success")),
                pc.and_(pc.is_valid(action), pc.invert(pc.is_in(action, _SYSTEM)))),
        False,
    )
    table = _sorted_actions(records.filter(is_decision))
    actions = _Actions(table, np.flatnonzero(_group_changes(table)).astype(np.int64))
    keep = (actions.ends - actions.starts) >= min_actions
    return _episode_rows(WORKER_DECISION_SEQUENCE, actions, keep, np.ones(len(actions.starts), dtype=bool))


def build_episode_table(records: pa.Table, min_task_actions: int = 2, min_decision_actions: int = 3) -> pa.Table:
    """Episodes of both learn models for every session in `records`, ordered by session, model,
    worker and first `seq`."""
    both = pa.concat_tables(
        [_worker_task(records, min_task_actions), _worker_decision_sequence(records, min_decision_actions)]
    )
    order = pc.sort_indices(
        both,
        [("scenario", "ascending"), ("session_id", "ascending"), ("learn_model", "ascending"),
         ("worker_id", "ascending"), ("_first_seq", "ascending")],
    )
    return both.take(order).drop_columns(["_first_seq"]).cast(EPISODE_SCHEMA)
