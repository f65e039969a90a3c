"""The pipeline stages as plain functions over the data root: read inputs, apply the rules, write outputs.

Every stage takes many sessions at once (a backfill batch) and handles them in a few vectorised
passes; per-session work is limited to file reads and writes. Outputs are written atomically and
replace what a previous run wrote, so running a stage twice gives the same files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .atomic import remove_stale_temps, write_json, write_parquet
from .episode_table import EPISODE_SCHEMA, build_episode_table
from .layout import DataLayout
from .learn_models import WORKER_TASK
from .names import split_session_key
from .offline import DependencyOrder
from .schema import COLUMNS, LEARN_STATS_OUTCOMES, REJECT_REASON, SOURCE_ROW
from .snapshot import DEFAULT_NGRAM_ORDERS, Snapshot, build_snapshots, check_ngram_orders
from .validation import SESSION_KEY, LandingFileError, NormalisedSession, normalise, read_landing, validate

Write = Callable[[], object]  # one file written (or removed), run in the background


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


PREVIEW_ROWS = 10


@dataclass
class EpisodeSummary:
    """What the episodes step produced over a whole run, folded chunk by chunk: the chunk's table
    is dropped once folded, so a run's memory does not grow with its session count."""

    rows: int = 0
    task_outcomes: dict[str, int] = field(default_factory=dict)  # worker-task episodes per outcome
    # (judged worker-task episodes, successes) of every session whose episodes were cut
    task_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    preview: list[dict] = field(default_factory=list)  # the first worker-task episodes
    duplicates: int = 0  # episode ids seen more than once in the run
    _ids: set[str] = field(default_factory=set)

    def add(self, table: pa.Table, sessions: Iterable[str]) -> None:
        self.rows += table.num_rows
        for outcome, n in task_outcomes(table).items():
            self.task_outcomes[outcome] = self.task_outcomes.get(outcome, 0) + n
        counts = task_counts_by_session(table)
        self.task_counts.update({k: counts.get(k, (0, 0)) for k in sessions})
        if len(self.preview) < PREVIEW_ROWS:
            tasks = table.filter(pc.equal(table.column("learn_model"), WORKER_TASK))
            self.preview += tasks.slice(0, PREVIEW_ROWS - len(self.preview)).to_pylist()
        ids = table.column("episode_id").to_pylist()
        before = len(self._ids)
        self._ids.update(ids)
        self.duplicates += len(ids) - (len(self._ids) - before)

    @property
    def task_rows(self) -> int:
        return sum(self.task_outcomes.values())

    def judged_by_scenario(self) -> dict[str, dict[str, int]]:
        """Judged worker-task episodes and successes per scenario, for the run's metadata (the
        training triggers count the per-session `task_counts` instead)."""
        out: dict[str, dict[str, int]] = {}
        for key, (episodes, successes) in sorted(self.task_counts.items()):
            if episodes:
                entry = out.setdefault(split_session_key(key)[0], {"episodes": 0, "success": 0})
                entry["episodes"] += episodes
                entry["success"] += successes
        return out


@dataclass
class SnapshotSummary:
    """Totals and n-gram counts of the snapshots a run wrote, folded chunk by chunk."""

    sessions: int = 0
    total_episodes: int = 0
    success_episodes: int = 0
    total_actions: int = 0
    ngrams: dict[tuple, list[int]] = field(default_factory=dict)  # gram → [success, failure]

    def add(self, snapshots: dict[str, Snapshot]) -> None:
        for snap in snapshots.values():
            meta = snap["metadata"]
            self.sessions += 1
            self.total_episodes += meta["total_episodes"]
            self.success_episodes += meta["success_episodes"]
            self.total_actions += meta["total_actions"]
            for g in snap["ngrams"]:
                acc = self.ngrams.setdefault(tuple(g["gram"]), [0, 0])
                acc[0] += g["success"]
                acc[1] += g["failure"]


@dataclass
class SessionBatch:
    """What one pass over a batch of sessions produced, per step that ran (summaries, not data)."""

    ingest: list[SessionIngest] = field(default_factory=list)
    episodes: EpisodeSummary = field(default_factory=EpisodeSummary)
    snapshots: SnapshotSummary = field(default_factory=SnapshotSummary)


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
    for scenario in sorted({split_session_key(key)[0] for key in keys}):
        remove_stale_temps(*layout.session_folders(scenario))  # a killed run's half-written files
    batch = SessionBatch()
    # A chunk's files are written in the background while the next chunk is computed; at most one
    # chunk's writes are pending, so memory stays bounded.
    with ThreadPoolExecutor(IO_THREADS) as pool:
        pending: list[Future] = []
        for chunk in _chunks(keys):
            writes: list[Write] = []
            records = None
            if RECORDS in steps:
                ingest, records, jobs = _ingest_chunk(layout, chunk, pool)
                batch.ingest.extend(ingest)
                writes += jobs
                with_records = {r.key for r in ingest if r.error is None}
            if EPISODES in steps or SNAPSHOTS in steps:
                if records is None:
                    records = read_records(layout, chunk)
                    with_records = set(_existing(layout.records, chunk))
                if EPISODES in steps:
                    episodes, jobs = _episodes_chunk(layout, chunk, records, with_records, settings)
                    batch.episodes.add(episodes, [k for k in chunk if k in with_records])
                    writes += jobs
                else:
                    episodes = _read_episodes(layout, chunk)
                if SNAPSHOTS in steps:
                    snapshots, jobs = _snapshots_chunk(layout, chunk, records, episodes, settings)
                    batch.snapshots.add(snapshots)
                    writes += jobs
            _finish(pending)
            pending = [pool.submit(write) for write in writes]
        _finish(pending)
    return batch


def _finish(futures: list[Future]) -> None:
    """Wait for background writes; the first that failed raises here."""
    for future in futures:
        future.result()


def ingest_sessions(layout: DataLayout, keys: Sequence[str]) -> list[SessionIngest]:
    """landing → records/ + quarantine/. An unreadable file gets `<session>.error.json`; others go on."""
    return process_sessions(layout, keys, [RECORDS]).ingest


def build_session_episodes(
    layout: DataLayout, keys: Sequence[str], min_task_actions: int = 2, min_decision_actions: int = 3
) -> pa.Table:
    """records/ → episodes/. Sessions without records (rejected whole) get no episodes file."""
    settings = SessionSettings(min_task_actions, min_decision_actions)
    process_sessions(layout, keys, [EPISODES], settings)
    return _read_episodes(layout, keys)


def build_session_snapshots(
    layout: DataLayout, keys: Sequence[str], ngram_orders: Sequence[int] = DEFAULT_NGRAM_ORDERS
) -> dict[str, Snapshot]:
    """episodes/ + records/ → snapshots/*.json."""
    process_sessions(layout, keys, [SNAPSHOTS], SessionSettings(ngram_orders=tuple(ngram_orders)))
    return {k: json.loads(layout.snapshot(k).read_text()) for k in keys if layout.snapshot(k).is_file()}


def _read_normalised(layout: DataLayout, key: str) -> NormalisedSession | LandingFileError:
    path = layout.landing(key)
    try:
        if not path.is_file():
            raise LandingFileError(path, "does not exist; expected a landing parquet file")
        return normalise(read_landing(path), key, str(path))
    except LandingFileError as exc:
        return exc


def _ingest_chunk(
    layout: DataLayout, keys: Sequence[str], pool: ThreadPoolExecutor
) -> tuple[list[SessionIngest], pa.Table, list[Write]]:
    """Validate a chunk of landing files: results, the valid records in memory, and the file writes."""
    outcome: dict[str, SessionIngest] = {}
    writes: list[Write] = []
    normalised = []
    for key, session in zip(keys, pool.map(lambda k: _read_normalised(layout, k), keys)):
        if isinstance(session, LandingFileError):
            error = {"file": session.path, "error": session.problem, "session": key}
            writes.append(partial(_replace_with_error, layout, key, error))
            outcome[key] = SessionIngest(key, 0, 0, str(session))
        else:
            normalised.append(session)
    result = validate(normalised)
    good = dict(split_by_session(result.records))
    bad = dict(split_by_session(result.rejected))
    for session in normalised:
        key = session.session_key
        keep = [*COLUMNS, *session.extra_columns, SOURCE_ROW]
        records = good.get(key)
        records = records.select(keep) if records is not None else session.table.slice(0, 0).select(keep)
        rejected = bad.get(key)
        if rejected is not None:
            rejected = rejected.select([*keep, REJECT_REASON])
            rejected = rejected.append_column(
                "source_file", pa.repeat(pa.scalar(session.source, pa.string()), rejected.num_rows)
            )
        writes.append(partial(_write_session_records, layout, key, records, rejected))
        outcome[key] = SessionIngest(key, records.num_rows, 0 if rejected is None else rejected.num_rows)
    stats_columns = [SESSION_KEY, *RECORD_COLUMNS_FOR_STATS]
    # One contiguous chunk per column: the sorts and takes downstream are much faster on it.
    return [outcome[k] for k in keys], result.records.select(stats_columns).combine_chunks(), writes


def _replace_with_error(layout: DataLayout, key: str, error: dict) -> None:
    write_json(error, layout.error(key))
    _remove(layout.records(key), layout.quarantine(key))


def _write_session_records(layout: DataLayout, key: str, records: pa.Table, rejected: pa.Table | None) -> None:
    write_parquet(records, layout.records(key))
    if rejected is not None:
        write_parquet(rejected, layout.quarantine(key))
    else:
        _remove(layout.quarantine(key))
    _remove(layout.error(key))


def _read_session_files(paths: dict[str, Path], columns: Sequence[str], where: str = "") -> pa.Table:
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


def _episodes_chunk(
    layout: DataLayout, keys: Sequence[str], records: pa.Table, with_records: set[str], settings: SessionSettings
) -> tuple[pa.Table, list[Write]]:
    """Episodes of a chunk and their file writes; a session without a records file gets none."""
    episodes = build_episode_table(records, settings.min_task_actions, settings.min_decision_actions)
    sessions = pc.binary_join_element_wise(episodes.column("scenario"), episodes.column("session_id"), ".")
    by_session = dict(split_by_session(episodes.append_column(SESSION_KEY, sessions)))
    writes: list[Write] = []
    for key in keys:
        if key not in with_records:
            writes.append(partial(_remove, layout.episodes(key)))
            continue
        table = by_session.get(key)
        table = table.drop_columns([SESSION_KEY]) if table is not None else EPISODE_SCHEMA.empty_table()
        writes.append(partial(write_parquet, table, layout.episodes(key)))
    return episodes, writes


def _snapshots_chunk(
    layout: DataLayout, keys: Sequence[str], records: pa.Table, episodes: pa.Table, settings: SessionSettings
) -> tuple[dict[str, Snapshot], list[Write]]:
    snapshots = build_snapshots(records, episodes, settings.ngram_orders)
    writes: list[Write] = [
        partial(write_json, snapshots[key], layout.snapshot(key)) if key in snapshots
        else partial(_remove, layout.snapshot(key))
        for key in keys
    ]
    return snapshots, writes


def task_outcomes(table: pa.Table) -> dict[str, int]:
    """Worker-task episodes per outcome in an episode table."""
    tasks = table.filter(pc.equal(table.column("learn_model"), WORKER_TASK))
    return {row["values"]: row["counts"] for row in pc.value_counts(tasks.column("outcome")).to_pylist()}


def task_counts_by_session(table: pa.Table) -> dict[str, tuple[int, int]]:
    """Judged worker-task episodes and successes per session key (`scenario.session_id`): what the
    training triggers count, once per distinct session content."""
    tasks = table.filter(pc.and_(pc.equal(table.column("learn_model"), WORKER_TASK),
                                 pc.is_in(table.column("outcome"), pa.array(list(LEARN_STATS_OUTCOMES)))))
    tasks = tasks.append_column("won", pc.cast(pc.equal(tasks.column("outcome"), "success"), pa.int64()))
    grouped = tasks.group_by(["scenario", "session_id"]).aggregate([("won", "count"), ("won", "sum")])
    return {f"{sc}.{sid}": (n, int(won)) for sc, sid, n, won in zip(
        grouped.column("scenario").to_pylist(), grouped.column("session_id").to_pylist(),
        grouped.column("won_count").to_pylist(), grouped.column("won_sum").to_pylist())}  # fmt: skip


def count_task_outcomes(layout: DataLayout, keys: Sequence[str]) -> dict[str, int]:
    """Worker-task episodes per outcome in the episode files of the given sessions."""
    paths = _existing(layout.episodes, keys)
    return task_outcomes(_read_session_files(paths, ["learn_model", "outcome"])) if paths else {}


def dependency_orders(layout: DataLayout, scenario: str, created_at: dict[str, int]) -> dict[str, DependencyOrder]:
    """The last dependency-graph inference of each session that has one, stamped with the session's time."""
    paths = _existing(layout.records, [f"{scenario}.{s}" for s in created_at])
    if not paths:
        return {}
    table = _read_session_files(paths, ["seq", "discover_order", "not_discover_order"], "d.kind = 'dependency_graph'")
    newest_first = table.take(pc.sort_indices(table, [(SESSION_KEY, "ascending"), ("seq", "descending")]))
    orders: dict[str, DependencyOrder] = {}
    for key, discover, not_discover in zip(*(newest_first.column(c).to_pylist() for c in
                                             (SESSION_KEY, "discover_order", "not_discover_order"))):
        session_id = split_session_key(key)[1]
        if session_id not in orders:  # a session's first row here is its last inference
            orders[session_id] = DependencyOrder(created_at[session_id], list(discover or []), list(not_discover or []))
    return orders


DECISION_RECORD_COLUMNS = ("kind", "seq", "worker_id", "target", "call_type", "prompt", "response", "error")


def read_decision_records(layout: DataLayout, scenario: str, session_ids: Sequence[str]) -> list[dict]:
    """The `action` and `llm_call` rows of the sessions (only the columns that link a decide call to
    its task, and the action's target), each with its `session_id`: what the `llm_decision` and
    `task_step` training rows are made from."""
    paths = _existing(layout.records, [f"{scenario}.{s}" for s in session_ids])
    if not paths:
        return []
    table = _read_session_files(paths, DECISION_RECORD_COLUMNS, "d.kind IN ('action', 'llm_call')")
    rows = table.to_pylist()
    for row in rows:
        row["session_id"] = split_session_key(row.pop(SESSION_KEY))[1]
    return rows


def read_session_actions(layout: DataLayout, scenario: str, session_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each session's available actions, from its first dependency graph that names any."""
    paths = _existing(layout.records, [f"{scenario}.{s}" for s in session_ids])
    if not paths:
        return {}
    table = _read_session_files(paths, ["seq", "available_actions"],
                                "d.kind = 'dependency_graph' AND len(d.available_actions) > 0")
    first = table.take(pc.sort_indices(table, [(SESSION_KEY, "ascending"), ("seq", "ascending")]))
    actions: dict[str, list[str]] = {}
    for key, names in zip(first.column(SESSION_KEY).to_pylist(), first.column("available_actions").to_pylist()):
        actions.setdefault(split_session_key(key)[1], list(names))
    return actions


__all__ = [
    "SessionBatch",
    "SessionIngest",
    "SessionSettings",
    "process_sessions",
    "ingest_sessions",
    "build_session_episodes",
    "build_session_snapshots",
    "read_records",
    "split_by_session",
]
