"""The per-scenario summary that `swarm-learn materialize` and `status` print, read from the files on disk."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from ..episodes.task_counts import JUDGED_TASK_SQL, SUCCESS_TASK_SQL
from ..storage.atomic import write_json
from ..storage.layout import DataLayout, file_stats, file_times
from ..storage.names import NAME_PATTERN, PARTITION_SEPARATOR


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


def summarize(root: Path) -> list[ScenarioSummary]:
    """One row per scenario with a valid name (a refused landing folder is reported where it is
    refused, not here); sessions are the landing files the pipeline accepts.

    Counting reads a footer or an episode file per session; with 100,000 sessions that is most of a
    `materialize` of a few new ones. So the counts of each file are kept in a per-scenario cache
    (`layout.summary_cache`) under the file's modification time and size, and only files that are
    new or changed since are read: the cost follows what changed, plus one listing of each folder."""
    layout = DataLayout(root)
    scenarios = sorted(
        {p.name for area in ("landing", "records") if layout.folder(area).is_dir() for p in layout.folder(area).iterdir()
         if p.is_dir() and NAME_PATTERN.fullmatch(p.name)}
    )
    landed = Counter(key.partition(PARTITION_SEPARATOR)[0] for key in layout.landing_keys()[0])
    return [_summarize_scenario(layout, scenario, landed[scenario]) for scenario in scenarios]


# The areas whose files are counted (and cached), with their files' suffix.
_AREAS = {"records": ".parquet", "quarantine": ".parquet", "episodes": ".parquet"}


def _summarize_scenario(layout: DataLayout, scenario: str, sessions: int) -> ScenarioSummary:
    cache_path = layout.summary_cache(scenario)
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: counted anew
        cache = {}
    fresh: dict[str, dict[str, list[int]]] = {}
    for area, suffix in _AREAS.items():
        folder = layout.folder(area, scenario)
        known = cache.get(area, {})
        files = {name: [st.st_mtime_ns, st.st_size] for name, st in file_stats(folder, suffix).items()}
        fresh[area] = {name: known[name] for name, stamp in files.items()
                       if name in known and known[name][:2] == stamp}
        new = sorted(set(files) - set(fresh[area]))
        counts = _episode_counts(folder, new, suffix) if area == "episodes" else {
            name: [pq.ParquetFile(folder / f"{name}{suffix}").metadata.num_rows] for name in new}
        fresh[area].update({name: files[name] + counts[name] for name in new})
    if fresh != cache:
        try:
            write_json(fresh, cache_path)
        except OSError:  # a read-only data root: `status` still answers, only slower next time
            pass
    episodes = fresh["episodes"].values()
    quarantine = layout.folder("quarantine", scenario)
    return ScenarioSummary(
        scenario=scenario,
        sessions=sessions,
        records=sum(c[2] for c in fresh["records"].values()),
        quarantined=sum(c[2] for c in fresh["quarantine"].values()),
        unreadable=len(file_times(quarantine, ".error.json")),
        episodes=sum(c[2] for c in episodes),
        task_episodes=sum(c[3] for c in episodes),
        task_successes=sum(c[4] for c in episodes),
        has_model=layout.scenario_model(scenario).is_file(),
    )


def _episode_counts(folder: Path, names: list[str], suffix: str) -> dict[str, list[int]]:
    """Per episode file: episodes, judged worker-task episodes, successful ones (one DuckDB scan)."""
    if not names:
        return {}
    files = {str(folder / f"{name}{suffix}"): name for name in names}
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    rows = duckdb.sql(
        f"""SELECT filename, count(*), count(*) FILTER (WHERE {JUDGED_TASK_SQL}),
                   count(*) FILTER (WHERE {SUCCESS_TASK_SQL})
            FROM read_parquet({listed}, filename = true, union_by_name = true) GROUP BY filename"""
    ).fetchall()
    counts = {name: [0, 0, 0] for name in names}  # a file without rows has no group
    counts.update({files[f]: [total, tasks, won] for f, total, tasks, won in rows})
    return counts


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
