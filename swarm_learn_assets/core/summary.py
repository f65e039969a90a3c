"""The per-scenario summary that `swarm-learn materialize` and `status` print, read from the files on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from .layout import DataLayout
from .learn_models import WORKER_TASK
from .names import NAME_PATTERN


@dataclass(frozen=True)
class ScenarioSummary:
    scenario: str
    sessions: int
    records: int
    quarantined: int
    unreadable: int
    episodes: int
    task_episodes: int
    task_successes: int
    has_model: bool

    @property
    def success_rate(self) -> float | None:
        return self.task_successes / self.task_episodes if self.task_episodes else None


def _rows(directory: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in directory.glob("*.parquet")) if directory.is_dir() else 0


def summarize(root: Path) -> list[ScenarioSummary]:
    """One row per scenario with a valid name (a refused landing folder is reported where it is
    refused, not here); sessions are the landing files the pipeline accepts."""
    landed, _ = DataLayout(root).scan_landing()
    scenarios = sorted(
        {p.name for area in ("landing", "records") if (root / area).is_dir() for p in (root / area).iterdir()
         if p.is_dir() and NAME_PATTERN.fullmatch(p.name)}
    )
    out = []
    for scenario in scenarios:
        episode_dir = root / "episodes" / scenario
        total = tasks = successes = 0
        if episode_dir.is_dir() and any(episode_dir.glob("*.parquet")):
            glob = str(episode_dir / "*.parquet").replace("'", "''")
            total, tasks, successes = duckdb.sql(
                f"""SELECT count(*), count(*) FILTER (WHERE learn_model = '{WORKER_TASK}' AND outcome <> 'unknown'),
                           count(*) FILTER (WHERE learn_model = '{WORKER_TASK}' AND outcome = 'success')
                    FROM read_parquet('{glob}')"""
            ).fetchall()[0]
        quarantine = root / "quarantine" / scenario
        out.append(
            ScenarioSummary(
                scenario=scenario,
                sessions=sum(f.scenario == scenario for f in landed),
                records=_rows(root / "records" / scenario),
                quarantined=_rows(quarantine),
                unreadable=len(list(quarantine.glob("*.error.json"))) if quarantine.is_dir() else 0,
                episodes=total,
                task_episodes=tasks,
                task_successes=successes,
                has_model=(root / "models" / scenario / "scenario_model.json").is_file(),
            )
        )
    return out


def format_summary(rows: list[ScenarioSummary]) -> str:
    """A plain-text table with a total line."""
    if not rows:
        return "no sessions found (land parquet files under <data-root>/landing/<scenario>/ or run `swarm-learn simulate`)"
    headers = ("scenario", "sessions", "records", "quarantined", "unreadable", "episodes", "success rate", "model")
    body = [
        (r.scenario, r.sessions, r.records, r.quarantined, r.unreadable, r.episodes,
         "-" if r.success_rate is None else f"{r.success_rate:.1%}", "yes" if r.has_model else "no")
        for r in rows
    ]
    tasks = sum(r.task_episodes for r in rows)
    body.append(
        ("TOTAL", sum(r.sessions for r in rows), sum(r.records for r in rows), sum(r.quarantined for r in rows),
         sum(r.unreadable for r in rows), sum(r.episodes for r in rows),
         f"{sum(r.task_successes for r in rows) / tasks:.1%}" if tasks else "-", "")
    )
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in body)])


def format_global_model(model: dict) -> str:
    """One line for the global model under the data table."""
    meta = model["merged"]["metadata"]
    rate = f"{meta['success_episodes'] / meta['total_episodes']:.1%}" if meta["total_episodes"] else "-"
    return (f"global model: {len(model['scenarios'])} scenario(s), {model['sessions']} session(s), "
            f"{meta['total_episodes']} episodes, success rate {rate}, {meta['total_actions']} actions")
