"""The pipeline stages as plain functions over the data root: read inputs, apply the rules, write outputs.

Every stage takes many sessions at once (a backfill batch) and handles them in a few vectorised
passes; per-session work is limited to file reads and writes. Outputs are written atomically and
replace what a previous run wrote, so running a stage twice gives the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contract.schema import COLUMNS, REJECT_REASON, SOURCE_ROW
from ..contract.validation import LandingFileError, NormalisedSession, normalise, read_landing, validate
from ..episodes.episode_table import EPISODE_SCHEMA, build_episode_table
from ..episodes.learn_models import WORKER_TASK
from ..episodes.task_counts import task_counts_by_session, task_outcomes
from ..stats.snapshot import DEFAULT_NGRAM_ORDERS, Snapshot, build_snapshots, check_ngram_orders
from ..storage.atomic import remove_stale_temps, write_json, write_parquet
from ..storage.layout import DataLayout
from ..storage.names import SESSION_KEY, split_session_key
from ..storage.readers import RECORD_COLUMNS_FOR_STATS, existing_files, read_episodes, read_records

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


def _chunks(keys: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


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
    chunk_sessions: int = CHUNK_SESSIONS,
) -> SessionBatch:
    """Run the selected session steps over many sessions, `chunk_sessions` at a time, in one pass.

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
        for chunk in _chunks(keys, chunk_sessions):
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
                    with_records = set(existing_files(layout.records, chunk))
                if EPISODES in steps:
                    episodes, jobs = _episodes_chunk(layout, chunk, records, with_records, settings)
                    batch.episodes.add(episodes, [k for k in chunk if k in with_records])
                    writes += jobs
                else:
                    episodes = read_episodes(layout, chunk)
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


