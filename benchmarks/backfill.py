"""Backfill performance harness: how fast is the pipeline on ~1M records, and against what?

Not part of the test suite. One run prints a report that answers three questions:

* Is the vectorised core close to the I/O floor?  Floor = DuckDB reading the same landing columns
  once; target: core ≤ 5× floor.
* Did vectorising pay off?  Baseline = a straightforward per-row Python implementation of the same
  work (read, validate row by row, write records, per-record learn models, write episodes,
  `snapshot_rowwise`, write snapshots, `merge_snapshots`) on a sample of sessions, scaled linearly
  to all sessions; target: baseline ≥ 20× core. The sampled per-row snapshots must equal the
  vectorised ones exactly, otherwise the speed-up means nothing.
* Does the real entry point stay cheap?  `swarm-learn materialize` as a subprocess with a fresh
  `DAGSTER_HOME`; targets: < 60 s wall time and < 2 GB peak RSS.

Usage (full scale, ~1M records, a few minutes):

    python benchmarks/backfill.py --json-out /tmp/backfill.json

Quick check:

    python benchmarks/backfill.py --scenarios 2 --sessions 10 --records 300 --baseline-sessions 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from swarm_learn_assets.core.contract.schema import (
    COLUMNS,
    KINDS,
    LEARN_STATS_OUTCOMES,
    NON_NEGATIVE,
    REQUIRED_BY_KIND,
    SCHEMA,
)
from swarm_learn_assets.core.contract.typed_records import records_from_table
from swarm_learn_assets.core.episodes.learn_models import WorkerDecisionSequenceLearn, WorkerTaskLearn
from swarm_learn_assets.core.stages.scenario_model import build_model_for_scenario
from swarm_learn_assets.core.stages.session_batch import IO_THREADS, process_sessions
from swarm_learn_assets.core.stats.merge import merge_snapshots
from swarm_learn_assets.core.stats.offline import latest_sessions
from swarm_learn_assets.core.stats.snapshot import Snapshot, snapshot_rowwise
from swarm_learn_assets.core.storage.atomic import write_json, write_parquet
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.core.storage.names import split_session_key
from swarm_learn_assets.simulate import simulate

# Everything the pipeline writes under the data root; removed before each timed run so that every
# run does the full work instead of replacing files that are already there.
OUTPUT_AREAS = ("records", "episodes", "snapshots", "models", "quarantine")

TARGET_CORE_OVER_FLOOR = 5.0  # core may cost at most 5× a bare columnar read
TARGET_BASELINE_OVER_CORE = 20.0  # vectorising must be worth at least 20× the per-row code
TARGET_CLI_SECONDS = 60.0
TARGET_CLI_RSS_BYTES = 2 * 1024**3
TARGET_RSS_SCALING = 1.3  # peak RSS at the larger session count / at the smaller one
DATA_ASSETS = "raw_records,episodes,session_snapshot,scenario_model"  # the CLI's data half, no training

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run `fn` once; return its result and wall-clock seconds (perf_counter: monotonic, high-res)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def maxrss_bytes(who: int) -> int:
    """Peak resident set size in bytes. Linux reports `ru_maxrss` in KiB (macOS in bytes)."""
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def fmt_bytes(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB"


def fmt_rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} records/s" if seconds > 0 else "n/a"


def clear_outputs(root: Path) -> None:
    """Remove everything the pipeline writes, leaving landing/ untouched."""
    for area in OUTPUT_AREAS:
        shutil.rmtree(root / area, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Step 1: data
# ---------------------------------------------------------------------------------------------


@dataclass
class DataInfo:
    root: str
    generated: bool
    generate_seconds: float
    landing_files: int
    landing_rows: int
    scenarios: int


def prepare_data(root: Path, scenarios: int, sessions: int, records: int, seed: int) -> DataInfo:
    """Generate the landing files unless the root already has some (a re-run should not pay 10 s again)."""
    layout = DataLayout(root)
    files, refused = layout.scan_landing()
    generated, seconds = False, 0.0
    if not files:
        print(f"generating {scenarios} scenario(s) x {sessions} session(s) x ~{records} records into {root} ...",
              file=sys.stderr, flush=True)
        _, seconds = timed(lambda: simulate(root, scenarios=scenarios, sessions=sessions, seed=seed,
                                            records_per_session=records))
        generated = True
        files, refused = layout.scan_landing()
    elif len(files) != scenarios * sessions:
        print(f"note: {root} already holds {len(files)} landing file(s), not the {scenarios * sessions} asked for; "
              "using them as they are", file=sys.stderr)
    if refused:
        print(f"note: {len(refused)} landing file(s) with refused names are ignored", file=sys.stderr)
    rows = sum(pq.ParquetFile(f.path).metadata.num_rows for f in files)
    return DataInfo(str(root), generated, seconds, len(files), rows, len({f.scenario for f in files}))


def warm_page_cache(paths: Sequence[Path]) -> float:
    """Read every landing file's bytes once so no timed step pays for cold disk reads and the order
    of the steps does not favour whichever runs second."""
    def read_all() -> int:
        total = 0
        for path in paths:
            total += len(path.read_bytes())
        return total

    return timed(read_all)[1]


# ---------------------------------------------------------------------------------------------
# Step 2: floor
# ---------------------------------------------------------------------------------------------


@dataclass
class FloorResult:
    seconds: float
    rows: int
    columns: list[str]
    io_only_seconds: float = 0.0


def floor_columns(path: Path) -> list[str]:
    """The contract columns present in the landing files: ingest reads, validates and rewrites all of
    them, so a floor over fewer columns would understate what the pipeline must at least read."""
    names = set(pq.read_schema(path).names)
    return [c for c in COLUMNS if c in names]


def run_floor(paths: Sequence[Path], columns: Sequence[str]) -> FloorResult:
    """One parallel DuckDB scan of the same files and columns, materialised to arrow: the cheapest
    way to get the pipeline's input into memory, i.e. what no pipeline over these files can beat."""
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    sql = f"SELECT {cols} FROM read_parquet({files}, union_by_name = true)"
    table, seconds = timed(lambda: duckdb.sql(sql).to_arrow_table())
    return FloorResult(seconds, table.num_rows, list(columns))


def run_io_only(layout: DataLayout, keys: Sequence[str], out: Path) -> float:
    """What the per-session file layout costs with no rules at all: read every landing file and write
    a records file, an episodes file and a snapshot file per session, of the sizes the core wrote,
    with the same writers and threads. Not a target; it shows how much of the core is file I/O."""
    episodes = {k: pq.read_table(layout.episodes(k)) for k in keys if layout.episodes(k).is_file()}
    snapshots = {k: json.loads(layout.snapshot(k).read_text()) for k in keys if layout.snapshot(k).is_file()}
    mine = DataLayout(out)

    def one(key: str) -> None:
        write_parquet(pq.ParquetFile(layout.landing(key)).read(use_threads=False), mine.records(key))
        if key in episodes:
            write_parquet(episodes[key], mine.episodes(key))
        if key in snapshots:
            write_json(snapshots[key], mine.snapshot(key))

    def run() -> None:
        with ThreadPoolExecutor(IO_THREADS) as pool:
            list(pool.map(one, keys))

    return timed(run)[1]


# ---------------------------------------------------------------------------------------------
# Step 3: core compute
# ---------------------------------------------------------------------------------------------


@dataclass
class CoreResult:
    stage_seconds: dict[str, float]
    total_seconds: float
    sessions: int
    records: int
    rejected: int
    unreadable: int
    episodes: int
    peak_rss_bytes: int = 0
    rss_before_bytes: int = 0


def run_core(layout: DataLayout, keys: Sequence[str], scenarios: Sequence[str]) -> CoreResult:
    """The stage functions the Dagster assets call, over all sessions as one batch, without Dagster:
    the cost of the rules themselves, which the floor and the baseline are compared against.
    `process_sessions` is what the session assets run: records → episodes → snapshots in one pass."""
    stages: dict[str, float] = {}
    batch, stages["process_sessions"] = timed(lambda: process_sessions(layout, keys))
    _, stages["build_model_for_scenario"] = timed(
        lambda: [build_model_for_scenario(layout, s) for s in scenarios]
    )
    return CoreResult(
        stage_seconds=stages,
        total_seconds=sum(stages.values()),
        sessions=len(keys),
        records=sum(i.records for i in batch.ingest),
        rejected=sum(i.rejected for i in batch.ingest),
        unreadable=sum(1 for i in batch.ingest if i.error is not None),
        episodes=batch.episodes.rows,
    )


# ---------------------------------------------------------------------------------------------
# Step 4: per-row baseline
# ---------------------------------------------------------------------------------------------


@dataclass
class BaselineResult:
    sample_sessions: int
    total_sessions: int
    phase_seconds: dict[str, float]
    sample_seconds: float
    scaled_seconds: float
    sample_rows: int
    matched: int
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatched and self.matched == self.sample_sessions


def sample_keys(keys: Sequence[str], n: int) -> list[str]:
    """`n` sessions spread evenly over the sorted keys, so every scenario and both early and late
    sessions are represented, and the sample is the same on every run."""
    if n >= len(keys):
        return list(keys)
    picks = np.linspace(0, len(keys) - 1, n).round().astype(int)
    return [keys[i] for i in sorted(set(picks.tolist()))]


def rowwise_validate(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The contract checks of `validation`, one row at a time: (records sorted by seq, rejected rows)."""
    good, bad, seen = [], [], set()
    for position, row in enumerate(rows):
        row = dict(row, source_row=position)
        kind = row.get("kind")
        reason = None
        if kind is None:
            reason = "kind: required, got null"
        elif kind not in KINDS:
            reason = f"kind: expected one of {', '.join(KINDS)}, got '{kind}'"
        else:
            for name, dtype in COLUMNS.items():
                value = row.get(name)
                if value is not None and not _fits(value, dtype):
                    reason = f"{name}: expected {dtype}, got '{value}'"
                    break
            if reason is None:
                for name in REQUIRED_BY_KIND.get(kind, ()):
                    if row.get(name) is None:
                        reason = f"{name}: required for kind '{kind}'"
                        break
            if reason is None:
                for name in NON_NEGATIVE:
                    if row.get(name) is not None and row[name] < 0:
                        reason = f"{name}: expected >= 0, got {row[name]}"
                        break
            if reason is None and kind == "learn_stats" and row.get("outcome") not in (None, *LEARN_STATS_OUTCOMES):
                reason = f"outcome: expected one of {', '.join(LEARN_STATS_OUTCOMES)}, got '{row['outcome']}'"
        if row.get("seq") is None:
            row["seq"] = position
        if reason is None and row["seq"] in seen:
            reason = f"seq: duplicate value {row['seq']}, expected unique within the session"
        if reason is None:
            seen.add(row["seq"])
            if kind == "action" and row.get("success") is None:
                row["success"] = True
            good.append(row)
        else:
            bad.append(dict(row, reject_reason=reason))
    good.sort(key=lambda r: (r["seq"], r["source_row"]))
    return good, bad


def _fits(value: Any, dtype: pa.DataType) -> bool:
    if pa.types.is_list(dtype):
        return isinstance(value, list)
    python = {pa.string(): str, pa.int64(): int, pa.bool_(): bool, pa.float64(): (int, float)}[dtype]
    return isinstance(value, python) and not (dtype == pa.int64() and isinstance(value, bool))


RECORDS_SCHEMA = pa.schema([*SCHEMA, pa.field("source_row", pa.int64())])
EPISODE_COLUMNS = ("episode_id", "learn_model", "scenario", "session_id", "worker_id", "task_id", "group_id",
                   "outcome", "score", "reason", "actions", "record_seqs", "started_at_ms", "ended_at_ms",
                   "context", "selection_logic")


def run_baseline(layout: DataLayout, keys: Sequence[str], sample: Sequence[str], out: Path) -> BaselineResult:
    """A straightforward per-row Python implementation of the same work as the core, session by
    session, on a sample: read the landing file, validate row by row, write records/ and quarantine/,
    cut episodes with the per-record learn models and write them, compute the snapshot with
    `snapshot_rowwise` and write it, then merge each scenario's snapshots and write the model. Outputs
    go under `out`, not the data root. Each snapshot is checked against the one the core wrote; only
    the work is timed, not the comparison."""
    task_model, decision_model = WorkerTaskLearn(), WorkerDecisionSequenceLearn()
    mine = DataLayout(out)
    phases: dict[str, float] = defaultdict(float)
    by_scenario: dict[str, list[Snapshot]] = defaultdict(list)
    matched, mismatched, rows = 0, [], 0

    def phase(name: str, fn: Callable[[], T]) -> T:
        result, seconds = timed(fn)
        phases[name] += seconds
        return result

    for key in sample:
        scenario, session_id = split_session_key(key)
        landing = phase("read landing (to_pylist)", lambda: pq.read_table(layout.landing(key)).to_pylist())
        rows += len(landing)
        good, bad = phase("validate per row", lambda: rowwise_validate(landing))
        phase("write records + quarantine", lambda: (
            write_parquet(pa.Table.from_pylist(good, RECORDS_SCHEMA), mine.records(key)),
            bad and write_parquet(pa.Table.from_pylist(bad), mine.quarantine(key)),
        ))
        records = phase("records_from_table", lambda: records_from_table(pa.Table.from_pylist(good, RECORDS_SCHEMA)))
        episodes = phase("build_episodes (2 models)", lambda: task_model.build_episodes(records, scenario, session_id)
                         + decision_model.build_episodes(records, scenario, session_id))
        phase("write episodes", lambda: write_parquet(pa.Table.from_pylist(
            [dict(zip(EPISODE_COLUMNS, (e.id, e.learn_model, scenario, session_id, e.worker_id(), e.get_task_id(),
                                        e.get_group_id(), e.outcome.kind, e.outcome.score(), None, e.actions(),
                                        [r.seq for r in e.records], e.started_at_ms(), e.ended_at_ms(), e.context(),
                                        e.selection_logic())))
             for e in episodes]), mine.episodes(key)))
        snapshot = phase("snapshot_rowwise", lambda: snapshot_rowwise(records, episodes, scenario, session_id))
        phase("write snapshot", lambda: write_json(snapshot, mine.snapshot(key)))
        by_scenario[scenario].append(snapshot)
        written = layout.snapshot(key)
        if written.is_file() and json.loads(written.read_text()) == snapshot:
            matched += 1
        else:
            mismatched.append(key)
    for scenario, snapshots in by_scenario.items():
        merged = phase("merge_snapshots", lambda: merge_snapshots(latest_sessions(snapshots, len(snapshots))))
        phase("write model", lambda: write_json(merged, mine.scenario_model(scenario)))
    sample_seconds = sum(phases.values())
    return BaselineResult(
        sample_sessions=len(sample),
        total_sessions=len(keys),
        phase_seconds=dict(phases),
        sample_seconds=sample_seconds,
        scaled_seconds=sample_seconds * len(keys) / len(sample) if sample else 0.0,
        sample_rows=rows,
        matched=matched,
        mismatched=mismatched,
    )


# ---------------------------------------------------------------------------------------------
# Step 5: CLI end to end
# ---------------------------------------------------------------------------------------------


@dataclass
class CliResult:
    returncode: int
    wall_seconds: float
    reported_seconds: float | None
    peak_rss_bytes: int
    naive_children_rss_bytes: int
    outputs_match_core: bool | None
    output_tail: str


# Runs in a fresh, small interpreter: starts the CLI, waits for it, and writes its exit code, wall time
# and RUSAGE_CHILDREN peak RSS as JSON to argv[1]; the CLI's argv follows. See `run_cli` for why.
LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[2:], check=False)
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as out:
    json.dump({"returncode": proc.returncode, "seconds": seconds, "maxrss": usage.ru_maxrss}, out)
"""


def same_tree(a: Path, b: Path) -> bool:
    """Whether two output folders hold the same files with the same bytes."""
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    return files(a) == files(b)


def run_cli(root: Path, keep_dir: Path) -> CliResult:
    """`swarm-learn materialize` as a user runs it: its own process, a fresh Dagster instance, all
    outputs removed first. The core's snapshots and models are moved aside (not lost) so the CLI's
    output can be checked byte for byte against them.

    The CLI is started through a small launcher process rather than directly: on Linux a child's
    `ru_maxrss` starts from its parent's high-water mark (fork/exec carry it over), so a CLI started
    from this process, which has just run the whole core in memory, would be reported with at least
    this process's peak even if it used far less. The launcher is tiny, so `RUSAGE_CHILDREN` read
    inside it is the CLI's own peak. The harness's own (inflated) reading is kept in the report.
    """
    for area in ("snapshots", "models"):
        if (root / area).exists():
            shutil.move(str(root / area), str(keep_dir / area))
    clear_outputs(root)
    exe = shutil.which("swarm-learn") or str(Path(sys.executable).with_name("swarm-learn"))
    result_file = keep_dir / "cli-result.json"
    with tempfile.TemporaryDirectory(prefix="swarm-learn-bench-dagster-") as home:
        env = {**os.environ, "DAGSTER_HOME": home}
        proc = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(result_file), exe, "materialize", "--data-root", str(root),
             "--assets", DATA_ASSETS],
            env=env, capture_output=True, text=True, check=False,
        )
    naive = maxrss_bytes(resource.RUSAGE_CHILDREN)
    try:
        measured = json.loads(result_file.read_text())
    except (OSError, ValueError):  # the launcher itself failed; report that instead of numbers
        measured = {"returncode": proc.returncode or -1, "seconds": float("nan"), "maxrss": 0}
    peak = measured["maxrss"] if sys.platform == "darwin" else measured["maxrss"] * 1024
    reported = None
    for line in proc.stdout.splitlines():
        if line.startswith("done in ") and line.endswith("s"):
            reported = float(line[len("done in "):-1])
    match = None
    if measured["returncode"] == 0 and all((keep_dir / a).exists() for a in ("snapshots", "models")):
        match = all(same_tree(keep_dir / a, root / a) for a in ("snapshots", "models"))
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return CliResult(measured["returncode"], measured["seconds"], reported, peak, naive, match, tail)


# ---------------------------------------------------------------------------------------------
# Step 6: report
# ---------------------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def build_report(data: DataInfo, floor: FloorResult, core: CoreResult, baseline: BaselineResult,
                 cli: CliResult | None, warm_seconds: float) -> dict[str, Any]:
    """All numbers and verdicts in one JSON-able dict; the printed report is rendered from it."""
    core_over_floor = core.total_seconds / floor.seconds if floor.seconds else float("inf")
    baseline_over_core = baseline.scaled_seconds / core.total_seconds if core.total_seconds else float("inf")
    targets: dict[str, dict[str, Any]] = {
        "core_over_floor": {"value": core_over_floor, "target": f"<= {TARGET_CORE_OVER_FLOOR:g}x",
                            "met": core_over_floor <= TARGET_CORE_OVER_FLOOR},
        "baseline_over_core": {"value": baseline_over_core, "target": f">= {TARGET_BASELINE_OVER_CORE:g}x",
                               "met": baseline_over_core >= TARGET_BASELINE_OVER_CORE},
        "rowwise_equals_vectorised": {"value": f"{baseline.matched}/{baseline.sample_sessions}",
                                      "target": "all equal", "met": baseline.ok},
    }
    if cli is not None:
        targets["cli_wall_seconds"] = {"value": cli.wall_seconds, "target": f"< {TARGET_CLI_SECONDS:g} s",
                                       "met": cli.returncode == 0 and cli.wall_seconds < TARGET_CLI_SECONDS}
        targets["cli_peak_rss_bytes"] = {"value": cli.peak_rss_bytes, "target": f"< {fmt_bytes(TARGET_CLI_RSS_BYTES)}",
                                         "met": cli.returncode == 0 and cli.peak_rss_bytes < TARGET_CLI_RSS_BYTES}
    return {
        "data": asdict(data),
        "warm_page_cache_seconds": warm_seconds,
        "floor": asdict(floor),
        "core": {**asdict(core), "records_per_second": data.landing_rows / core.total_seconds},
        "baseline": {**asdict(baseline), "ok": baseline.ok},
        "cli": None if cli is None else {**asdict(cli), "records_per_second": data.landing_rows / cli.wall_seconds},
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets.values()),
    }


def print_report(r: dict[str, Any]) -> None:
    data, floor, core, base, cli, t = r["data"], r["floor"], r["core"], r["baseline"], r["cli"], r["targets"]
    rows = data["landing_rows"]
    line = "=" * 78
    out = [line, "swarm-learn backfill benchmark", line]
    gen = f"generated in {data['generate_seconds']:.1f} s" if data["generated"] else "already present, not regenerated"
    out += [
        f"data root      {data['root']}",
        f"landing        {data['landing_files']:,} files, {data['scenarios']} scenarios, {rows:,} rows ({gen})",
        f"records        {core['records']:,} valid, {core['rejected']:,} quarantined, "
        f"{core['unreadable']} unreadable file(s); {core['episodes']:,} episodes",
        f"page cache     warmed by reading every landing file once ({r['warm_page_cache_seconds']:.2f} s, untimed)",
        "",
        "FLOOR  duckdb read_parquet -> arrow, all landing files, one scan",
        f"  {len(floor['columns'])} contract columns, {floor['rows']:,} rows   {floor['seconds']:8.2f} s   "
        f"{fmt_rate(floor['rows'], floor['seconds'])}",
        f"  I/O only: read landing, write records/episodes/snapshot files, no rules"
        f"   {floor['io_only_seconds']:8.2f} s   = {floor['io_only_seconds'] / floor['seconds']:.2f}x floor",
        "",
        f"CORE   stage functions over all {core['sessions']:,} sessions, no Dagster",
    ]
    for stage, seconds in core["stage_seconds"].items():
        out.append(f"  {stage:<32} {seconds:8.2f} s")
    out += [
        f"  {'total':<32} {core['total_seconds']:8.2f} s   {fmt_rate(rows, core['total_seconds'])}",
        f"  {'peak RSS in-process (SELF)':<32} {fmt_bytes(core['peak_rss_bytes']):>10}"
        f"   (high-water mark before core: {fmt_bytes(core['rss_before_bytes'])})",
        "",
        f"BASELINE  per-row Python, {base['sample_sessions']} of {base['total_sessions']:,} sessions "
        f"({base['sample_rows']:,} rows)",
    ]
    for phase, seconds in base["phase_seconds"].items():
        out.append(f"  {phase:<32} {seconds:8.2f} s")
    out += [
        f"  {'sample total':<32} {base['sample_seconds']:8.2f} s   {fmt_rate(base['sample_rows'], base['sample_seconds'])}",
        f"  {'scaled to all sessions':<32} {base['scaled_seconds']:8.2f} s   "
        f"(linear: x {base['total_sessions']}/{base['sample_sessions']} sessions)",
        "  per-row snapshots == vectorised snapshots: "
        + ("OK" if base["ok"] else "MISMATCH")
        + f" ({base['matched']}/{base['sample_sessions']} identical)"
        + (f"; differ: {', '.join(base['mismatched'][:10])}" if base["mismatched"] else ""),
        "",
    ]
    if cli is None:
        out += ["CLI    skipped (--skip-cli)", ""]
    else:
        reported = f", CLI says {cli['reported_seconds']:.1f} s" if cli["reported_seconds"] is not None else ""
        same = {None: "not compared", True: "OK", False: "MISMATCH"}[cli["outputs_match_core"]]
        out += [
            "CLI    swarm-learn materialize (subprocess, fresh DAGSTER_HOME, outputs removed first)",
            f"  exit code {cli['returncode']}",
            f"  {'wall time':<32} {cli['wall_seconds']:8.2f} s   "
            f"{fmt_rate(rows, cli['wall_seconds'])}{reported}",
            f"  {'peak RSS (CHILDREN, launcher)':<32} {fmt_bytes(cli['peak_rss_bytes']):>10}"
            f"   (read from this process: {fmt_bytes(cli['naive_children_rss_bytes'])},"
            " includes this process's own peak via fork/exec; not used)",
            f"  snapshots/ + models/ byte-identical to core's: {same}",
        ]
        if cli["returncode"] != 0:
            out += ["  output tail:", *("    " + s for s in cli["output_tail"].splitlines())]
        out.append("")
    out += ["TARGETS"]
    labels = {
        "core_over_floor": ("core / floor", lambda v: f"{v:.2f}x"),
        "baseline_over_core": ("baseline (scaled) / core", lambda v: f"{v:.1f}x"),
        "rowwise_equals_vectorised": ("per-row == vectorised", str),
        "cli_wall_seconds": ("CLI wall time", lambda v: f"{v:.1f} s"),
        "cli_peak_rss_bytes": ("CLI peak RSS", fmt_bytes),
    }
    for name, entry in t.items():
        label, show = labels[name]
        out.append(f"  {label:<28} {show(entry['value']):>12}   target {entry['target']:<13} {verdict(entry['met'])}")
    out += [line]
    print("\n".join(out), flush=True)


def run_memory_scaling(sizes: Sequence[int], scenarios: int, records: int, seed: int) -> int:
    """Peak RSS of `swarm-learn materialize` (data assets) at each session count, fresh root and
    instance each, and the ratio of the largest to the smallest: memory must not grow with history."""
    exe = shutil.which("swarm-learn") or str(Path(sys.executable).with_name("swarm-learn"))
    peaks = {}
    for total in sizes:
        with tempfile.TemporaryDirectory(prefix="swarm-learn-bench-mem-") as work:
            root, home, result_file = Path(work) / "data", Path(work) / "home", Path(work) / "cli.json"
            print(f"{total} sessions: generating ...", file=sys.stderr, flush=True)
            simulate(root, scenarios=scenarios, sessions=total // scenarios, seed=seed, records_per_session=records)
            print(f"{total} sessions: swarm-learn materialize ...", file=sys.stderr, flush=True)
            proc = subprocess.run(
                [sys.executable, "-c", LAUNCHER, str(result_file), exe, "materialize", "--data-root", str(root),
                 "--assets", DATA_ASSETS],
                env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, check=False,
            )  # fmt: skip
            measured = json.loads(result_file.read_text())
            if measured["returncode"] != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            peaks[total] = measured["maxrss"] * (1 if sys.platform == "darwin" else 1024)
            print(f"{total:>6} sessions: peak RSS {fmt_bytes(peaks[total])}, {measured['seconds']:.1f} s")
    small, large = min(peaks), max(peaks)
    ratio = peaks[large] / peaks[small]
    print(f"peak RSS ratio {large}/{small} sessions: {ratio:.2f} (target <= {TARGET_RSS_SCALING}) "
          f"{verdict(ratio <= TARGET_RSS_SCALING)}")
    return 0 if ratio <= TARGET_RSS_SCALING else 1


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time the swarm-learn backfill against a DuckDB read floor and a per-row Python baseline.",
        epilog="Quick check: --scenarios 2 --sessions 10 --records 300 --baseline-sessions 5",
    )
    p.add_argument("--data-root", type=Path, help="data root; landing files there are reused (default: a temp dir)")
    p.add_argument("--scenarios", type=int, default=10)
    p.add_argument("--sessions", type=int, default=100, help="sessions per scenario")
    p.add_argument("--records", type=int, default=1000, help="records per session")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--baseline-sessions", type=int, default=50, help="sessions the per-row baseline runs on")
    p.add_argument("--skip-cli", action="store_true", help="leave out the `swarm-learn materialize` run")
    p.add_argument("--keep", action="store_true", help="keep the temporary data root")
    p.add_argument("--json-out", type=Path, help="also write the report as JSON here")
    p.add_argument("--memory-scaling", metavar="N,M",
                   help="only measure the CLI's peak RSS at these total session counts (e.g. 1000,5000) and their "
                        "ratio; uses --scenarios, --records (default here: 100) and --seed")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_scaling:
        sizes = [int(n) for n in args.memory_scaling.split(",")]
        records = args.records if "--records" in (argv or sys.argv) else 100
        return run_memory_scaling(sizes, args.scenarios, records, args.seed)
    temp = args.data_root is None
    root = (Path(tempfile.mkdtemp(prefix="swarm-learn-bench-")) if temp else args.data_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix="swarm-learn-bench-core-"))
    try:
        data = prepare_data(root, args.scenarios, args.sessions, args.records, args.seed)
        layout = DataLayout(root)
        files, _ = layout.scan_landing()
        if not files:
            print("no landing files to benchmark", file=sys.stderr)
            return 2
        keys = [f.key for f in files]
        scenarios = sorted({f.scenario for f in files})
        paths = [f.path for f in files]
        warm = warm_page_cache(paths)
        clear_outputs(root)

        # Core runs before the floor so that the floor's materialised arrow table (all columns of
        # every row) cannot inflate the core's peak-RSS high-water mark; the page cache is warm for both.
        print("core compute ...", file=sys.stderr, flush=True)
        rss_before = maxrss_bytes(resource.RUSAGE_SELF)
        core = run_core(layout, keys, scenarios)
        core.peak_rss_bytes = maxrss_bytes(resource.RUSAGE_SELF)
        core.rss_before_bytes = rss_before

        print("floor (duckdb read) ...", file=sys.stderr, flush=True)
        floor = run_floor(paths, floor_columns(paths[0]))
        floor.io_only_seconds = run_io_only(layout, keys, aside / "io-only")

        print(f"per-row baseline on {min(args.baseline_sessions, len(keys))} session(s) ...", file=sys.stderr, flush=True)
        baseline = run_baseline(layout, keys, sample_keys(keys, max(1, args.baseline_sessions)), aside / "baseline")

        cli = None
        if not args.skip_cli:
            print("swarm-learn materialize ...", file=sys.stderr, flush=True)
            cli = run_cli(root, aside)

        report = build_report(data, floor, core, baseline, cli, warm)
        print_report(report)
        if args.json_out:
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        return 0 if report["all_targets_met"] else 1
    finally:
        shutil.rmtree(aside, ignore_errors=True)
        if temp and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif temp:
            print(f"kept data root {root}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
