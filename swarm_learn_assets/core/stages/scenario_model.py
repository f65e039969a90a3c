"""Building `models/<scenario>/scenario_model.json` and the global model (DESIGN §7).

A scenario model is defined as a merge of all its snapshots, which with 10,000 sessions is 10,000
files to read on every rebuild — and a rebuild follows every batch of new sessions. Additive and
success-weighted merges are sums in which each snapshot's share depends on it alone, so the model
is kept current by adding only the new snapshots to the last model. An index in the data root's
state folder (`layout.merge_index`) says what the model holds: each session's snapshot file (its
time and size) and the model file it belongs to. The model is merged from every snapshot instead
whenever adding cannot be trusted to give the same bytes: a snapshot rewritten or removed since (a
replayed session must replace its share, not add to it), another strategy or window, time decay
(whose weights shift with every session), or a model file that is not the one the index names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc

from ..stats.merge import MergeStrategy, add_to_merged, merge_scenario_models
from ..stats.offline import DEFAULT_MAX_SESSIONS, DependencyOrder, analyze, build_scenario_model, latest_sessions
from ..stats.query import TimeWindow
from ..stats.snapshot import Snapshot
from ..storage.atomic import remove_stale_temps, write_json
from ..storage.layout import DataLayout, file_stats
from ..storage.names import SESSION_KEY, session_partition_key, split_session_key
from ..storage.readers import existing_files, read_session_files

SNAPSHOT_SUFFIX = ".json"


@dataclass(frozen=True)
class ModelBuild:
    """A written scenario model and how it was made (shown on the asset's materialization)."""

    model: dict
    added: int  # sessions merged into the last model; all of them when rebuilt
    rebuilt_because: str | None  # None: the new sessions were added to the last model


def build_model_for_scenario(
    layout: DataLayout,
    scenario: str,
    strategy: MergeStrategy = MergeStrategy(),
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    window: TimeWindow = TimeWindow(),
    incremental: bool = True,
) -> ModelBuild:
    """snapshots/<scenario>/* → models/<scenario>/scenario_model.json from the sessions whose time is
    in `window` (all by default; the model records the window): made by adding the new snapshots to
    the last model when that gives the same model as merging all of them (see the module
    docstring), else — or with `incremental` off — from every snapshot."""
    target, index_path = layout.scenario_model(scenario), layout.merge_index(scenario)
    files = snapshot_files(layout.snapshot_dir(scenario))
    reason, index = (_last_model_index(index_path, target, files, strategy, window) if incremental
                     else ("a full merge was asked for", None))
    if index is not None:
        model, created, added = _add_new_snapshots(layout, scenario, target, index, files, strategy, max_sessions)
    else:
        snapshots = window.select(_read_snapshots(layout, scenario, sorted(files)))
        created = {s["metadata"]["session_id"]: s["metadata"]["created_at_ms"] for s in snapshots}
        recent = latest_sessions(snapshots, max_sessions)
        orders = dependency_orders(layout, scenario, {s["metadata"]["session_id"]: created[s["metadata"]["session_id"]]
                                                      for s in recent})
        model, added = build_scenario_model(scenario, snapshots, strategy, max_sessions, orders), len(snapshots)
    model["window"] = window.describe()
    remove_stale_temps(target.parent)
    write_json(model, target)
    if strategy.additive and window.everything:
        stat = target.stat()
        write_json({"model": [stat.st_mtime_ns, stat.st_size], "strategy": strategy.describe(),
                    "sessions": {sid: [created[sid], *files[sid]] for sid in created if sid in files}}, index_path)
    else:
        index_path.unlink(missing_ok=True)
    return ModelBuild(model, added, reason)


def _add_new_snapshots(layout: DataLayout, scenario: str, target: Path, index: dict[str, list[int]],
                       files: dict[str, tuple[int, int]], strategy: MergeStrategy,
                       max_sessions: int) -> tuple[dict, dict[str, int], int]:
    """The last model with the snapshots the index does not hold added; the offline model from the
    newest `max_sessions` (read again only where not new). Returns (model, session → time, added)."""
    new = _read_snapshots(layout, scenario, sorted(set(files) - set(index)))
    created = {sid: entry[0] for sid, entry in index.items()}
    created.update({s["metadata"]["session_id"]: s["metadata"]["created_at_ms"] for s in new})
    ordered = sorted(created, key=lambda sid: (created[sid], sid))
    recent_ids = ordered[-max_sessions:] if max_sessions > 0 else []
    loaded = {s["metadata"]["session_id"]: s for s in new}
    recent = [loaded.get(sid) or _read_snapshots(layout, scenario, [sid])[0] for sid in recent_ids]
    orders = dependency_orders(layout, scenario, {sid: created[sid] for sid in recent_ids})
    model = {
        "scenario": scenario,
        "sessions": ordered,
        "merged": add_to_merged(json.loads(target.read_text())["merged"], new, strategy),
        "offline_model": analyze(recent, [orders[i] for i in recent_ids if i in orders]),
    }
    return model, created, len(new)


def snapshot_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Session id → (modification time ns, size) of each snapshot in `folder`: what says a snapshot
    is still the one a model holds."""
    return {sid: (st.st_mtime_ns, st.st_size) for sid, st in file_stats(folder, SNAPSHOT_SUFFIX).items()}


def _last_model_index(index_path: Path, target: Path, files: dict[str, tuple[int, int]], strategy: MergeStrategy,
                      window: TimeWindow) -> tuple[str | None, dict[str, list[int]] | None]:
    """(None, the sessions the last model holds) when adding the new snapshots to it gives the
    model of all of them; else (why not, None)."""
    if not strategy.additive:
        return f"{strategy.name} weights change with every session", None
    if not window.everything:
        return "a time window was asked for", None
    try:
        index = json.loads(index_path.read_text())
        stat = target.stat()
        sessions = index["sessions"]
    except FileNotFoundError:
        return "no model with an index of its sessions yet", None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{index_path} unreadable ({type(exc).__name__}: {exc})", None
    if index.get("model") != [stat.st_mtime_ns, stat.st_size]:
        return f"{target.name} was written since its index of sessions", None
    if index.get("strategy") != strategy.describe():
        return f"the last model was merged with {index.get('strategy')}", None
    changed = [sid for sid, entry in sessions.items() if tuple(entry[1:]) != files.get(sid)]
    if changed:
        return f"{len(changed)} snapshot(s) rewritten or removed since the last model (e.g. {changed[0]})", None
    return None, sessions


def _read_snapshots(layout: DataLayout, scenario: str, session_ids: Sequence[str]) -> list[Snapshot]:
    folder = layout.snapshot_dir(scenario)
    return [json.loads((folder / f"{sid}{SNAPSHOT_SUFFIX}").read_text()) for sid in session_ids]


def dependency_orders(layout: DataLayout, scenario: str, created_at: dict[str, int]) -> dict[str, DependencyOrder]:
    """The last dependency-graph inference of each session that has one, stamped with the session's time."""
    paths = existing_files(layout.records, [session_partition_key(scenario, s) for s in created_at])
    if not paths:
        return {}
    table = read_session_files(paths, ["seq", "discover_order", "not_discover_order"], "d.kind = 'dependency_graph'")
    newest_first = table.take(pc.sort_indices(table, [(SESSION_KEY, "ascending"), ("seq", "descending")]))
    orders: dict[str, DependencyOrder] = {}
    for key, discover, not_discover in zip(*(newest_first.column(c).to_pylist() for c in
                                             (SESSION_KEY, "discover_order", "not_discover_order"))):
        session_id = split_session_key(key)[1]
        if session_id not in orders:  # a session's first row here is its last inference
            orders[session_id] = DependencyOrder(created_at[session_id], list(discover or []), list(not_discover or []))
    return orders


def build_global_model(layout: DataLayout) -> dict:
    """models/*/scenario_model.json → models/global_model.json, recomputed from the scenario models."""
    model = merge_scenario_models([json.loads(p.read_text()) for p in layout.scenario_models()])
    remove_stale_temps(layout.global_model.parent)
    write_json(model, layout.global_model)
    return model
