"""Scale benchmark (DESIGN §11): per-tick and per-run costs with a long history. Not a test.

Lands `--sessions` small sessions over `--scenarios` scenarios (copies of a few simulated ones, so
landing takes seconds), processes them all with `swarm-learn materialize` on a fresh instance
(SQLite, or PostgreSQL on a throwaway server), then measures:

* a discovery-sensor tick with nothing new (target <= 1 s), after the first look at the history;
* a training-sensor tick with its cursor caught up (target <= 1 s);
* `swarm-learn materialize` of `--new` new sessions on this instance, against the same sessions
  landed and processed alone on an empty instance (target <= 1.5x);
* one scenario model rebuild from every snapshot, the largest scenario (target <= 5 s at 10,000
  sessions), and the update that the pipeline makes instead (nothing new to add);
* the asset page's partition status of `raw_records` through the webserver's GraphQL (target <= 2 s);
* the instance database's size.

    python benchmarks/scale.py --storage sqlite                      # 100,000 sessions: hours on 2 cores
    python benchmarks/scale.py --sessions 10000 --storage both       # what the README reports
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from instance_storage import database_bytes  # benchmarks/instance_storage.py

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"discovery_tick": 1.0, "training_tick": 1.0, "materialize_ratio": 1.5, "model_rebuild": 5.0,
           "partition_status": 2.0}
DATA_ASSETS = "raw_records,episodes,session_snapshot,scenario_model"
PARTITION_STATUS_QUERY = """
query PartitionStatus($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions materializingPartitions }
      }
    }
  }
}"""


def land(root: Path, scenarios: int, sessions: int, start: int = 0) -> list[Path]:
    """`sessions` landing files spread over the scenarios, named s<start>…, each a copy of one of a few
    simulated sessions of its scenario, written under a temporary name and renamed into place."""
    from swarm_learn_assets.simulate import simulate

    templates_root = root.parent / "templates"
    if not templates_root.exists():
        simulate(templates_root, scenarios=scenarios, sessions=6, seed=3, tasks_per_worker=1)
    templates = {p.name: sorted(p.glob("*.parquet")) for p in sorted((templates_root / "landing").iterdir())}
    names = sorted(templates)
    written = []
    for i in range(start, start + sessions):
        scenario = names[i % len(names)]
        target = root / "landing" / scenario / f"s{i:06d}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(templates[scenario][i % len(templates[scenario])], temp)
        os.replace(temp, target)
        written.append(target)
    return written


def materialize(root: Path, home: Path, env: dict[str, str]) -> float:
    exe = shutil.which("swarm-learn") or str(Path(sys.executable).with_name("swarm-learn"))
    started = time.perf_counter()
    proc = subprocess.run([exe, "materialize", "--data-root", str(root), "--assets", DATA_ASSETS],
                          env={**env, "DAGSTER_HOME": str(home)}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"materialize failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return time.perf_counter() - started


def timed(fn, repeats: int = 5) -> tuple[float, Any]:
    values, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        values.append(time.perf_counter() - started)
    return statistics.median(values), result


def sensor_ticks(root: Path, home: Path) -> dict[str, float]:
    import dagster as dg

    from swarm_learn_assets.core.triggers.spec import TriggerSettings
    from swarm_learn_assets.defs import triggers
    from swarm_learn_assets.defs.discovery import session_discovery
    from swarm_learn_assets.defs.resources import SwarmData

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        def discovery(cursor: str | None):
            context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                              resources={"swarm_data": SwarmData(data_root=str(root))})
            return session_discovery()(context)

        first_discovery, first = timed(lambda: discovery(None), repeats=1)
        quiet_discovery, quiet = timed(lambda: discovery(first.cursor))
        assert not [r for r in quiet.run_requests if r.job_name == "process_sessions"], "nothing new expected"

        def training(cursor: str | None):
            sensor, _ = triggers.training_automation(TriggerSettings())
            return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))

        first_training, caught_up = timed(lambda: training(None), repeats=1)
        quiet_training, _ = timed(lambda: training(caught_up.cursor))
    finally:
        instance.dispose()
    return {"discovery_first_look": first_discovery, "discovery_tick": quiet_discovery,
            "training_first_tick": first_training, "training_tick": quiet_training}


def partition_status_seconds(home: Path, env: dict[str, str]) -> tuple[float, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-w", str(REPO / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        env={**env, "DAGSTER_HOME": str(home)}, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/graphql"
    body = json.dumps({"query": PARTITION_STATUS_QUERY, "variables": {"key": {"path": ["raw_records"]}}}).encode()

    def query() -> dict:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                query()  # the first answer also loads the code location
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the webserver did not answer")
                time.sleep(1)
        seconds, answer = timed(query, repeats=3)
        status = answer["data"]["assetNodeOrError"]["assetPartitionStatuses"]
        return seconds, len(status["materializedPartitions"])
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def fresh_home(work: Path, name: str, storage: str, postgres, env: dict[str, str]) -> tuple[Path, dict, str | None]:
    from swarm_learn_assets.runner import POSTGRES_URL_ENV, instance_yaml

    home = work / name
    home.mkdir()
    url = postgres.create_database() if storage == "postgres" else None
    env = {**env, POSTGRES_URL_ENV: url} if url else {k: v for k, v in env.items() if k != POSTGRES_URL_ENV}
    (home / "dagster.yaml").write_text(instance_yaml(postgres=url is not None))
    return home, env, url


def run(storage: str, args: argparse.Namespace, postgres) -> dict[str, Any]:
    from swarm_learn_assets.core.stages.scenario_model import build_model_for_scenario
    from swarm_learn_assets.core.storage.layout import DataLayout

    work = Path(tempfile.mkdtemp(prefix=f"swarm-learn-scale-{storage}-"))
    env = {**os.environ, "SWARM_LEARN_TRIGGERS": ""}
    root = work / "data"
    report: dict[str, Any] = {"storage": storage, "sessions": args.sessions}
    started = time.perf_counter()
    land(root, args.scenarios, args.sessions)
    report["landing_seconds"] = time.perf_counter() - started
    home, env, url = fresh_home(work, "home", storage, postgres, env)
    print(f"[{storage}] landed {args.sessions} sessions in {report['landing_seconds']:.0f} s; processing them",
          file=sys.stderr, flush=True)
    report["process_all_seconds"] = materialize(root, home, env)
    print(f"[{storage}] processed in {report['process_all_seconds']:.0f} s", file=sys.stderr, flush=True)
    os.environ.update({k: v for k, v in env.items() if k.startswith("SWARM_LEARN")})
    os.environ["DAGSTER_HOME"] = str(home)
    report.update(sensor_ticks(root, home))

    land(root, args.scenarios, args.new, start=args.sessions)
    report["materialize_new_seconds"] = materialize(root, home, env)
    alone_root = work / "alone"
    land(alone_root, args.scenarios, args.new, start=args.sessions)
    alone_home, alone_env, _ = fresh_home(work, "alone-home", storage, postgres, env)
    report["materialize_new_alone_seconds"] = materialize(alone_root, alone_home, alone_env)

    layout = DataLayout(root)
    largest = max((p.name for p in (root / "landing").iterdir()),
                  key=lambda s: sum(1 for _ in (root / "landing" / s).iterdir()))
    report["model_sessions"] = sum(1 for _ in (root / "snapshots" / largest).iterdir())
    report["model_rebuild"], _ = timed(lambda: build_model_for_scenario(layout, largest, incremental=False), repeats=1)
    report["model_update"], _ = timed(lambda: build_model_for_scenario(layout, largest), repeats=1)
    report["partition_status"], report["partitions_materialized"] = partition_status_seconds(home, env)
    report["instance_bytes"] = database_bytes(home, url)
    shutil.rmtree(work, ignore_errors=True)
    return report


def print_report(reports: list[dict[str, Any]]) -> bool:
    ok = True
    header = "| measure | target | " + " | ".join(r["storage"] for r in reports) + " |"
    print(f"\n{reports[0]['sessions']} sessions landed and processed\n\n{header}\n|---|---|" + "---|" * len(reports))

    def row(name: str, target: str, cells: list[str]) -> None:
        print(f"| {name} | {target} | " + " | ".join(cells) + " |")

    row("process all (materialize, s)", "-", [f"{r['process_all_seconds']:.0f}" for r in reports])
    row("discovery: first look at the history (s)", "-", [f"{r['discovery_first_look']:.2f}" for r in reports])
    for key, name in (("discovery_tick", "discovery tick, nothing new (s)"),
                      ("training_tick", "training-sensor tick, caught up (s)")):
        row(name, f"<= {TARGETS[key]:.0f}", [f"{r[key]:.3f}" for r in reports])
        ok &= all(r[key] <= TARGETS[key] for r in reports)
    row("training sensor: first tick (s)", "-", [f"{r['training_first_tick']:.2f}" for r in reports])
    ratios = [r["materialize_new_seconds"] / r["materialize_new_alone_seconds"] for r in reports]
    row("materialize of the new sessions: on this history / alone", f"<= {TARGETS['materialize_ratio']}",
        [f"{x:.2f}x ({r['materialize_new_seconds']:.1f} / {r['materialize_new_alone_seconds']:.1f} s)"
         for x, r in zip(ratios, reports)])
    ok &= all(x <= TARGETS["materialize_ratio"] for x in ratios)
    row("scenario model rebuild (s; sessions)", f"<= {TARGETS['model_rebuild']:.0f} at 10,000",
        [f"{r['model_rebuild']:.2f} ({r['model_sessions']})" for r in reports])
    row("scenario model update, nothing new (s)", "-", [f"{r['model_update']:.2f}" for r in reports])
    row("raw_records partition status via GraphQL (s; partitions)", f"<= {TARGETS['partition_status']:.0f}",
        [f"{r['partition_status']:.2f} ({r['partitions_materialized']})" for r in reports])
    ok &= all(r["partition_status"] <= TARGETS["partition_status"] for r in reports)
    row("instance database (MiB)", "-", [f"{r['instance_bytes'] / 2**20:.0f}" for r in reports])
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="per-tick and per-run costs with a long history")
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--scenarios", type=int, default=10)
    p.add_argument("--new", type=int, default=1_000, help="sessions landed after the history")
    p.add_argument("--storage", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    from swarm_learn_assets.testing.postgres import ThrowawayPostgres

    storages = ["sqlite", "postgres"] if args.storage == "both" else [args.storage]
    reports = []
    with ThrowawayPostgres() as postgres:
        for storage in storages:  # each storage's table as soon as it is measured: a run takes hours
            reports.append(run(storage, args, postgres))
            if args.json_out:
                args.json_out.write_text(json.dumps(reports, indent=2) + "\n")
            if len(storages) > 1:
                print_report(reports[-1:])
    ok = print_report(reports)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
