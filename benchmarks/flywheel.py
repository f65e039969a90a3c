"""The flywheel, measured: do the swarm's next sessions go better with what it learned? (DESIGN §10)

Not part of the test suite (tens of minutes on 2 cores). Steps, on the default base model:

1. round 0: `scripted` sessions per scenario → materialize everything (datasets, adapters, gate, apply);
2. round 1: sessions per scenario under each of `base`, `current` and `offline`, on the same seeds
   (the k-th session of a run gets the same tasks whichever policy decides);
3. round 2: materialize again, so the adapters train on round 1's sessions too, then `current` once
   more on round 1's seeds: the gate keeps the better adapter, so it must not get worse.

Prints task success per policy and scenario and LLM decisions per second, and checks the targets:
`current` ≥ 0.9, `base` ≤ 0.2, round-2 `current` ≥ round-1 `current` − 0.05 (per scenario).

    python benchmarks/flywheel.py --json-out /tmp/flywheel.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TARGETS = {"current": 0.9, "base": 0.2, "round2_slack": 0.05}


def _run_policy(root: Path, policy: str, scenarios: int, sessions: int, seed: int) -> dict:
    from swarm_learn_assets.core.llm.policy import parse_policy
    from swarm_learn_assets.core.storage.layout import DataLayout
    from swarm_learn_assets.simulate.policy_run import simulate_with_policy
    from swarm_learn_assets.training.llm_policy import make_policy

    layout, spec = DataLayout(root), parse_policy(policy)
    started = time.perf_counter()
    written = simulate_with_policy(root, lambda s: make_policy(spec, s, layout), scenarios=scenarios,
                                   sessions=sessions, seed=seed)  # fmt: skip
    seconds = time.perf_counter() - started
    by_scenario: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in written:
        by_scenario[s.path.parent.name][0] += s.succeeded
        by_scenario[s.path.parent.name][1] += s.tasks
    decisions = sum(s.decisions for s in written)
    return {"success": {k: ok / total for k, (ok, total) in sorted(by_scenario.items())},
            "decisions": decisions, "seconds": seconds, "decisions_per_second": decisions / seconds}


def _materialize(root: Path, label: str, asset_config: dict) -> float:
    from swarm_learn_assets.runner import ALL_ASSETS, materialize

    started = time.perf_counter()
    materialize(root, list(ALL_ASSETS), log_level="WARNING", training_log_level="WARNING",
                on_stage=lambda m: print(f"  [{label}] {m}", file=sys.stderr, flush=True),
                asset_config=asset_config)
    return time.perf_counter() - started


def _applied(root: Path) -> dict[str, str]:
    from swarm_learn_assets.core.storage.layout import DataLayout
    from swarm_learn_assets.training.registry import AdapterRegistry

    adapters = DataLayout(root).adapters_root
    out = {}
    for scenario in sorted(p.name for p in adapters.iterdir() if p.is_dir()) if adapters.is_dir() else []:
        current = AdapterRegistry(adapters, scenario).current
        out[scenario] = current.version if current else "none"
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", type=int, default=3)
    p.add_argument("--sessions", type=int, default=20, help="round 0 scripted sessions per scenario")
    p.add_argument("--round-sessions", type=int, default=10, help="sessions per scenario and policy in round 1")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--round-seed", type=int, default=101)
    p.add_argument("--policies", default="base,current,offline")
    p.add_argument("--skip-round-2", action="store_true")
    p.add_argument("--train-on", default="task_decision,task_step,llm_decision",
                   help="the sources the adapters train on (sft_dataset's train_on; the product's default is "
                        "task_decision,llm_decision)")
    p.add_argument("--max-train-rows", type=int, default=320, help="lora_adapter's max_train_rows (default config: 160)")
    p.add_argument("--round0-root", type=Path,
                   help="reuse a data root already simulated and materialized as round 0 (e.g. README command 1's "
                        "`data`), copied, instead of running round 0 again")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()

    from swarm_learn_assets.simulate import simulate

    asset_config = {"sft_dataset": {"train_on": args.train_on.split(",")},
                       "lora_adapter": {"max_train_rows": args.max_train_rows}}
    work = Path(tempfile.mkdtemp(prefix="swarm-learn-flywheel-"))
    os.environ["DAGSTER_HOME"] = str(work / "home")
    root = work / "data"
    if args.round0_root:
        import shutil

        shutil.copytree(args.round0_root, root)
        report: dict = {"round0_materialize_s": 0.0, "round0_root": str(args.round0_root)}
    else:
        print(f"round 0: {args.scenarios} x {args.sessions} scripted sessions in {root}", file=sys.stderr)
        simulate(root, scenarios=args.scenarios, sessions=args.sessions, seed=args.seed)
        report = {"round0_materialize_s": _materialize(root, "round 0", asset_config)}
    report["asset_config"] = asset_config
    report["applied_round0"] = _applied(root)
    print(f"  applied after round 0: {report['applied_round0']}", file=sys.stderr)

    report["round1"] = {}
    for policy in args.policies.split(","):
        print(f"round 1: policy {policy}", file=sys.stderr, flush=True)
        report["round1"][policy] = _run_policy(root, policy, args.scenarios, args.round_sessions, args.round_seed)
        print(f"  {json.dumps(report['round1'][policy])}", file=sys.stderr, flush=True)

    if not args.skip_round_2 and "current" in report["round1"]:
        report["round2_materialize_s"] = _materialize(root, "round 2", asset_config)
        report["applied_round2"] = _applied(root)
        print(f"  applied after round 2: {report['applied_round2']}", file=sys.stderr)
        report["round2_current"] = _run_policy(root, "current", args.scenarios, args.round_sessions, args.round_seed)

    scenarios = sorted(next(iter(report["round1"].values()))["success"])
    columns = [*report["round1"], *(["current (round 2)"] if "round2_current" in report else [])]
    runs = {**report["round1"], **({"current (round 2)": report["round2_current"]} if "round2_current" in report else {})}
    print(f"\n{'task success':<18}" + "".join(f"{c:>20}" for c in columns))
    for scenario in scenarios:
        print(f"{scenario:<18}" + "".join(f"{runs[c]['success'][scenario]:>20.2f}" for c in columns))
    print(f"{'decisions/s':<18}" + "".join(f"{runs[c]['decisions_per_second']:>20.1f}" for c in columns))
    print(f"round 0 materialize {report['round0_materialize_s']:.0f} s"
          + (f", round 2 materialize {report['round2_materialize_s']:.0f} s" if "round2_materialize_s" in report else ""))

    checks = []
    for scenario in scenarios:
        if "current" in runs:
            checks.append((f"{scenario}: current >= {TARGETS['current']}", runs["current"]["success"][scenario],
                           runs["current"]["success"][scenario] >= TARGETS["current"]))
        if "base" in runs:
            checks.append((f"{scenario}: base <= {TARGETS['base']}", runs["base"]["success"][scenario],
                           runs["base"]["success"][scenario] <= TARGETS["base"]))
        if "current (round 2)" in runs and "current" in runs:
            before, after = runs["current"]["success"][scenario], runs["current (round 2)"]["success"][scenario]
            checks.append((f"{scenario}: round-2 current not worse", [before, after],
                           after >= before - TARGETS["round2_slack"]))
    for name, value, ok in checks:
        print(f"{'met   ' if ok else 'MISSED'} {name}: {value}")
    report["checks"] = [{"name": n, "value": v, "met": ok} for n, v, ok in checks]
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
