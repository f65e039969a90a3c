"""Instance storage benchmark: the same `swarm-learn materialize` of 300 landed sessions on Dagster's
stock SQLite storage, on swarm-learn's pooled SQLite event log (defs/instance_storage.py), and on a
throwaway PostgreSQL server. Not a test.

Each run is its own process with a fresh `DAGSTER_HOME` and all outputs removed first; the runs
alternate (`--repeats`), and the table shows each storage's median wall time, its ratio to the stock
SQLite storage measured in the same invocation, and the instance's size afterwards.

    python benchmarks/instance_storage.py                      # 3 scenarios x 100 sessions, 2 repeats
    python benchmarks/instance_storage.py --sessions 20 --repeats 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SESSION_ASSETS = "raw_records,episodes,session_snapshot,scenario_model"
OUTPUT_AREAS = ("records", "episodes", "snapshots", "models", "quarantine")


def instance_file(kind: str) -> str:
    from swarm_learn_assets.runner import SQLITE_STORAGE_KEYS, instance_yaml

    if kind == "pooled-sqlite":
        return instance_yaml()
    if kind == "postgres":
        return instance_yaml(postgres=True)
    config = yaml.safe_load(instance_yaml())  # Dagster's own SQLite storage classes, same folders
    config["event_log_storage"] = {"module": "dagster._core.storage.event_log", "class": "SqliteEventLogStorage",
                                   "config": {"base_dir": {"env": "DAGSTER_HOME"}}}
    assert set(SQLITE_STORAGE_KEYS) <= set(config)
    return yaml.safe_dump(config, sort_keys=False)


def database_bytes(home: Path, postgres_url: str | None) -> int:
    if postgres_url:
        import psycopg2

        connection = psycopg2.connect(postgres_url.replace("postgresql+psycopg2://", "postgresql://"))
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_database_size(current_database())")
                return int(cursor.fetchone()[0])
        finally:
            connection.close()
    return sum(p.stat().st_size for p in home.rglob("*.db*") if p.is_file())


def run_once(kind: str, root: Path, postgres) -> dict:
    for area in OUTPUT_AREAS:
        shutil.rmtree(root / area, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"swarm-learn-{kind}-") as home_dir:
        home = Path(home_dir)
        (home / "dagster.yaml").write_text(instance_file(kind))
        env = {**os.environ, "DAGSTER_HOME": str(home)}
        url = None
        if kind == "postgres":
            url = postgres.create_database()
            env["SWARM_LEARN_POSTGRES_URL"] = url
        exe = shutil.which("swarm-learn") or str(Path(sys.executable).with_name("swarm-learn"))
        started = time.perf_counter()
        proc = subprocess.run([exe, "materialize", "--data-root", str(root), "--assets", SESSION_ASSETS],
                              env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{kind}: materialize failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
        return {"seconds": seconds, "instance_bytes": database_bytes(home, url)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="swarm-learn materialize on stock SQLite, pooled SQLite and PostgreSQL")
    p.add_argument("--scenarios", type=int, default=3)
    p.add_argument("--sessions", type=int, default=100, help="per scenario")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)

    from swarm_learn_assets.simulate import simulate
    from swarm_learn_assets.testing.postgres import ThrowawayPostgres

    work = Path(tempfile.mkdtemp(prefix="swarm-learn-storage-bench-"))
    simulate(work / "data", scenarios=args.scenarios, sessions=args.sessions, seed=7)
    kinds = ("stock-sqlite", "pooled-sqlite", "postgres")
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    with ThrowawayPostgres() as postgres:
        for repeat in range(args.repeats):
            for kind in kinds:
                result = run_once(kind, work / "data", postgres)
                results[kind].append(result)
                print(f"repeat {repeat + 1}: {kind:<14} {result['seconds']:7.1f} s, instance "
                      f"{result['instance_bytes'] / 2**20:6.1f} MiB", file=sys.stderr, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    stock = statistics.median(r["seconds"] for r in results["stock-sqlite"])
    sessions = args.scenarios * args.sessions
    print(f"\n`swarm-learn materialize --assets {SESSION_ASSETS}` of {sessions} sessions, median of {args.repeats}:\n")
    print("| instance storage | wall s | vs stock SQLite | instance MiB |\n|---|---|---|---|")
    for kind in kinds:
        seconds = statistics.median(r["seconds"] for r in results[kind])
        size = statistics.median(r["instance_bytes"] for r in results[kind])
        print(f"| {kind} | {seconds:.1f} | {seconds / stock:.2f}x | {size / 2**20:.1f} |")
    if args.json_out:
        args.json_out.write_text(json.dumps({"sessions": sessions, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
