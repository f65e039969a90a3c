"""Sessions over time: the reference store's `query_range`, `query_latest` and `list_sessions`, for the
CLI (`swarm-learn query`) and for the scenario model's `since` / `until` window. No Dagster.

A session's time is its first record's time (`created_at_ms` of its snapshot), never its name: names
sort like time only when the swarm names them so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb

from ..storage.layout import DataLayout
from .snapshot import Snapshot

_EPOCH_MS = re.compile(r"^-?\d+$")


def parse_time(text: str, what: str = "time") -> int:
    """Epoch milliseconds from ISO 8601 (`2026-12-01`, `2026-12-01T08:00:00Z`, with an offset; no
    offset means UTC) or from epoch milliseconds (`1764576000000`)."""
    value = text.strip()
    if _EPOCH_MS.match(value):
        return int(value)
    try:
        moment = datetime.fromisoformat(value)  # 3.11: `Z`, offsets, dates alone
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected ISO 8601 (2026-12-01 or 2026-12-01T08:00:00Z) "
                         "or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class TimeWindow:
    """Sessions whose time is within [since_ms, until_ms] (either end open when None)."""

    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> TimeWindow:
        window = cls(parse_time(since, "since") if since else None, parse_time(until, "until") if until else None)
        if window.since_ms is not None and window.until_ms is not None and window.since_ms > window.until_ms:
            raise ValueError(f"since {since!r} is after until {until!r}")
        return window

    def contains(self, time_ms: int) -> bool:
        return (self.since_ms is None or time_ms >= self.since_ms) and (self.until_ms is None or time_ms <= self.until_ms)

    def select(self, snapshots: Sequence[Snapshot]) -> list[Snapshot]:
        return [s for s in snapshots if self.contains(s["metadata"]["created_at_ms"])]

    @property
    def everything(self) -> bool:
        """No bound on either side: all history."""
        return self.since_ms is None and self.until_ms is None

    def describe(self) -> dict[str, int | None]:
        return {"since_ms": self.since_ms, "until_ms": self.until_ms}


@dataclass(frozen=True)
class SessionRow:
    session_id: str
    started_at_ms: int
    ended_at_ms: int | None  # the last episode's end; None when the session has no episodes file
    episodes: int  # judged worker-task episodes
    success_rate: float | None
    snapshot: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def query_sessions(layout: DataLayout, scenario: str, window: TimeWindow = TimeWindow(),
                   latest: int | None = None) -> list[SessionRow]:
    """The scenario's sessions in the window (the `latest` newest of them when given), oldest first,
    read with DuckDB from the snapshot files (only their metadata) and the episode files."""
    if latest is not None and latest < 1:
        raise ValueError(f"latest {latest}: expected a count >= 1")
    snapshots = layout.snapshot_dir(scenario)
    if not snapshots.is_dir() or not any(snapshots.glob("*.json")):
        return []
    meta = "STRUCT(session_id VARCHAR, created_at_ms BIGINT, total_episodes BIGINT, success_episodes BIGINT)"
    params: list[Any] = [str(snapshots / "*.json")]
    episodes = layout.episodes_dir(scenario)
    if episodes.is_dir() and any(episodes.glob("*.parquet")):
        ends = "SELECT session_id, max(ended_at_ms) AS ended_at_ms FROM read_parquet(?) GROUP BY session_id"
        params.append(str(episodes / "*.parquet"))
    else:
        ends = "SELECT NULL::VARCHAR AS session_id, NULL::BIGINT AS ended_at_ms"
    where = []
    for bound, condition in ((window.since_ms, "s.started_at_ms >= ?"), (window.until_ms, "s.started_at_ms <= ?")):
        if bound is not None:
            where.append(condition)
            params.append(bound)
    if latest:
        params.append(latest)
    rows = duckdb.connect().execute(f"""
        WITH snaps AS (
            SELECT metadata.session_id AS session_id, metadata.created_at_ms AS started_at_ms,
                   metadata.total_episodes AS episodes, metadata.success_episodes AS successes, filename AS snapshot
            FROM read_json(?, columns = {{'metadata': '{meta}'}}, filename = true)),
        ends AS ({ends})
        SELECT s.session_id, s.started_at_ms, e.ended_at_ms, s.episodes, s.successes, s.snapshot
        FROM snaps s LEFT JOIN ends e USING (session_id)
        {'WHERE ' + ' AND '.join(where) if where else ''}
        ORDER BY s.started_at_ms DESC, s.session_id DESC {'LIMIT ?' if latest else ''}""", params).fetchall()
    return [SessionRow(sid, start, end, total, successes / total if total else None, path)
            for sid, start, end, total, successes, path in reversed(rows)]


def format_sessions(rows: Sequence[SessionRow]) -> str:
    """A plain-text table, times in UTC."""
    if not rows:
        return "no sessions match"
    stamp = lambda ms: "-" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    headers = ("session", "started (UTC)", "ended (UTC)", "episodes", "success rate", "snapshot")
    body = [(r.session_id, stamp(r.started_at_ms), stamp(r.ended_at_ms), r.episodes,
             "-" if r.success_rate is None else f"{r.success_rate:.1%}", r.snapshot) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in body)])
