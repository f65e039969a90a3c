"""Time from a session landing to its episodes being materialized, with `dagster-daemon` running.
Not part of the test suite.

Starts the daemon on a temporary instance and data root, lands one warm-up session (so the code
server and the first run are started), then lands sessions one at a time and measures, for each,
the seconds until Dagster records the `episodes` materialization of its partition.

    python benchmarks/landing_latency.py --sessions 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args()

    import dagster as dg

    from swarm_learn_assets.runner import prepare_instance
    from swarm_learn_assets.simulate import simulate

    work = Path(tempfile.mkdtemp(prefix="swarm-learn-latency-"))
    home, data, source = work / "home", work / "data", work / "source"
    instance = prepare_instance(home)
    simulate(source, scenarios=1, sessions=args.sessions + 1, seed=9)
    files = sorted(source.glob("landing/*/*.parquet"))
    env = {**os.environ, "DAGSTER_HOME": str(home), "SWARM_LEARN_DATA": str(data),
           "SWARM_LEARN_TRIGGERS": ""}
    daemon = subprocess.Popen([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
                               str(REPO / "workspace.yaml")], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    latencies = []
    try:
        for i, file in enumerate(files):
            target = data / "landing" / file.parent.name / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target.with_suffix(".tmp"))
            os.replace(target.with_suffix(".tmp"), target)  # lands atomically, as a swarm should
            landed = time.monotonic()
            key = dg.AssetRecordsFilter(dg.AssetKey("episodes"), asset_partitions=[f"{file.parent.name}.{file.stem}"])
            while not instance.fetch_materializations(key, limit=1).records:
                if time.monotonic() - landed > args.timeout or daemon.poll() is not None:
                    raise SystemExit(f"no episodes for {file.stem} after {args.timeout:.0f} s")
                time.sleep(0.25)
            seconds = time.monotonic() - landed
            print(f"{'warm-up ' if i == 0 else ''}{file.stem}: landed → episodes materialized in {seconds:.1f} s",
                  flush=True)
            if i:
                latencies.append(seconds)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        instance.dispose()
        shutil.rmtree(work, ignore_errors=True)
    from swarm_learn_assets.defs.discovery import DiscoverySettings

    print(f"median {statistics.median(latencies):.1f} s, max {max(latencies):.1f} s over {len(latencies)} sessions "
          f"(discovery sensor interval {DiscoverySettings().interval_seconds} s + run start + processing); target median <= 10 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
