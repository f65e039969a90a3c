"""How long one tick of the training sensor takes with 100 and with 10,000 episode materializations
already in the instance. Not part of the test suite.

A tick in steady state (its cursor caught up with the history) must cost the same whatever the
history: target ratio ≤ 2× and under 1 s. The trigger used fires in neither case, so both ticks
evaluate the same rules over the same number of scenarios. The first tick of a fresh sensor reads the whole history
once; it is printed too.

    python benchmarks/sensor_tick.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def measure(events: int, home: Path) -> dict[str, float]:
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    from swarm_learn_assets.core.triggers.spec import TriggerSettings
    from swarm_learn_assets.defs import triggers
    from swarm_learn_assets.runner import prepare_instance

    # A trigger that fires in neither case, so both ticks do the same work apart from the history
    # (a firing adds a query per scenario for runs in flight, whatever the history).
    sensor, _ = triggers.training_automation(TriggerSettings(default="episodes>=100000000 | success<=0.0 over 50"))
    instance = prepare_instance(home)
    scenarios = [f"sc{i}" for i in range(10)]
    instance.add_dynamic_partitions("scenarios", scenarios)
    started = time.perf_counter()
    for i in range(events):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "episodes", partition=f"{scenarios[i % 10]}.s{i:05d}",
            metadata={"episodes_by_scenario": dg.MetadataValue.json({scenarios[i % 10]: {"episodes": 3, "success": 2}})},
        ))
    fill = time.perf_counter() - started

    def tick(cursor: str | None) -> tuple[float, str | None]:
        start = time.perf_counter()
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
        return time.perf_counter() - start, result.cursor

    cold, cursor = tick(None)
    steady = min(tick(cursor)[0] for _ in range(5))
    return {"events": events, "fill_seconds": fill, "cold_tick": cold, "steady_tick": steady}


def main() -> int:
    results = []
    for events in (100, 10_000):
        with tempfile.TemporaryDirectory(prefix="swarm-learn-sensor-") as home:
            results.append(measure(events, Path(home)))
            r = results[-1]
            print(f"{events:>6} episode materializations: steady tick {r['steady_tick'] * 1000:7.1f} ms, "
                  f"first tick {r['cold_tick'] * 1000:8.1f} ms (history written in {r['fill_seconds']:.1f} s)")
    ratio = results[1]["steady_tick"] / results[0]["steady_tick"]
    met = ratio <= 2.0 and results[1]["steady_tick"] < 1.0
    print(f"steady tick 10,000 / 100: {ratio:.2f}x (target <= 2x and < 1 s): {'met' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
