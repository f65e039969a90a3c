"""A plain-data picture of the whole Dagster definition, for the snapshot test (dagster-open-platform
keeps one of its asset specs the same way): any change to the graph becomes a visible diff of
`tests/defs/definitions_snapshot.json`. Regenerate it on purpose with

    python -m swarm_learn_assets.testing.definitions_snapshot > tests/defs/definitions_snapshot.json
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import dagster as dg


def _partitions(definition: dg.PartitionsDefinition | None) -> str | None:
    if definition is None:
        return None
    name = getattr(definition, "name", None)
    return f"{type(definition).__name__}({name})" if name else type(definition).__name__


def _backfill(policy: dg.BackfillPolicy | None) -> str | None:
    if policy is None:
        return None
    return f"{policy.policy_type.value}(max_partitions_per_run={policy.max_partitions_per_run})"


def describe(defs: dg.Definitions) -> dict[str, Any]:
    """Every asset (key, deps with their partition mapping, partitions, group, kinds, pools, backfill
    policy, checks, automation, description), every job (selection, tags), sensor (targets,
    interval, default status) and schedule (cron, job, default status)."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        mappings = node.partition_mappings
        assets[key.to_user_string()] = {
            "deps": {p.to_user_string(): type(mappings[p]).__name__ if p in mappings else None
                     for p in sorted(node.parent_keys, key=lambda k: k.to_user_string())},
            "partitions": _partitions(node.partitions_def),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "pools": sorted(node.pools or []),
            "backfill_policy": _backfill(node.backfill_policy),
            "checks": {c.name: {"blocking": graph.get(c).blocking}
                       for c in sorted(node.check_keys, key=lambda c: c.name)},
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
            "description": node.description,
        }
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys),
            "tags": dict(sorted(job.tags.items())),
            "description": job.description,
        }
    sensors = {
        s.name: {
            "type": type(s).__name__,
            "targets": sorted(t.job_name for t in s.targets) if s.targets else [],
            "assets": sorted(k.to_user_string() for k in s.asset_selection.resolve(graph)) if s.asset_selection else [],
            "minimum_interval_seconds": s.minimum_interval_seconds,
            "default_status": s.default_status.value,
        }
        for s in sorted(defs.sensors or [], key=lambda s: s.name)
    }
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "default_status": s.default_status.value}
        for s in sorted(defs.schedules or [], key=lambda s: s.name)
    }
    return {"assets": assets, "jobs": jobs, "sensors": sensors, "schedules": schedules,
            "resources": sorted(defs.resources or {})}


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from swarm_learn_assets.definitions import build_definitions

        json.dump(describe(build_definitions()), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
