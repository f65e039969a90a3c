"""The offline model (DESIGN §7): recommended paths, tuned selection parameters, learned action order.

The reference leaves the heuristics open; the ones here are deliberately simple and documented in
docs/decisions.md so that the swarm's behaviour can be traced back to the statistics.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .merge import MergeStrategy, merge_snapshots
from .snapshot import Snapshot

OFFLINE_MODEL_VERSION = 1
DEFAULT_MAX_SESSIONS = 20
STRATEGIES = ("UCB1", "Thompson", "Greedy")
DEFAULT_UCB1_C = math.sqrt(2)
DEFAULT_LEARNING_WEIGHT = 0.3
DEFAULT_NGRAM_WEIGHT = 0.5


@dataclass(frozen=True)
class DependencyOrder:
    """The action order one session's dependency-graph inference produced."""

    created_at_ms: int
    discover: list[str]
    not_discover: list[str]


def action_set_hash(actions: Sequence[str]) -> str:
    """Order-independent id of an action set: sha256 of the sorted names joined by newlines."""
    return hashlib.sha256("\n".join(sorted(set(actions))).encode()).hexdigest()


def latest_sessions(snapshots: Sequence[Snapshot], max_sessions: int = DEFAULT_MAX_SESSIONS) -> list[Snapshot]:
    """The newest `max_sessions` snapshots, oldest first (by first-record time, then session id)."""
    ordered = sorted(snapshots, key=lambda s: (s["metadata"]["created_at_ms"], s["metadata"]["session_id"] or ""))
    return ordered[-max_sessions:] if max_sessions > 0 else []


def _rate(success: int, failure: int) -> float | None:
    return success / (success + failure) if success + failure else None


def _parameters(merged: Snapshot, sessions: int) -> dict[str, float]:
    """More failures → more exploration (c); more sessions → more trust in learned scores."""
    visits = sum(a["visits"] for a in merged["action_stats"])
    failures = sum(a["failures"] for a in merged["action_stats"])
    failure_rate = failures / visits if visits else 0.5
    ucb1_c = min(2.5, max(0.5, DEFAULT_UCB1_C * (0.5 + failure_rate)))
    learning_weight = DEFAULT_LEARNING_WEIGHT + 0.6 * (1 - math.exp(-sessions / 20))
    decisive = total = 0
    for gram in merged["ngrams"]:
        count = gram["success"] + gram["failure"]
        total += count
        rate = gram["success"] / count if count else 0.5
        if rate >= 0.8 or rate <= 0.2:
            decisive += count
    ngram_weight = min(0.9, max(0.1, decisive / total)) if total else DEFAULT_NGRAM_WEIGHT
    return {
        "ucb1_c": round(ucb1_c, 4),
        "learning_weight": round(learning_weight, 4),
        "ngram_weight": round(ngram_weight, 4),
    }


def _recommended_paths(merged: Snapshot, min_count: int, limit: int) -> list[dict]:
    """Frequent n-grams of successful episodes, best success rate first, longer paths breaking ties."""
    paths = []
    for gram in merged["ngrams"]:
        count = gram["success"] + gram["failure"]
        rate = _rate(gram["success"], gram["failure"])
        if count >= min_count and rate is not None and rate >= 0.5:
            paths.append({"actions": list(gram["gram"]), "success_rate": round(rate, 4), "count": count})
    paths.sort(key=lambda p: (-p["success_rate"], -p["count"], -len(p["actions"]), p["actions"]))
    return paths[:limit]


def _strategy_config(merged: Snapshot) -> dict:
    """Start with the strategy whose episodes succeeded most; switch rules follow the reference's intent."""
    rates = {}
    for entry in merged["selection_performance"]:
        rate = _rate(entry["episodes_success"], entry["episodes_failure"])
        if rate is not None:
            rates[entry["strategy"]] = round(rate, 4)
    initial = max(sorted(rates), key=lambda s: rates[s]) if rates else STRATEGIES[0]
    return {
        "initial_strategy": initial,
        "episode_success_rates": dict(sorted(rates.items())),
        "thompson_above_failure_rate": 0.4,
        "greedy_after_visits": 100,
    }


def _action_order(orders: Sequence[DependencyOrder]) -> dict | None:
    if not orders:
        return None
    latest = max(orders, key=lambda o: o.created_at_ms)
    return {
        "discover": list(latest.discover),
        "not_discover": list(latest.not_discover),
        "action_set_hash": action_set_hash([*latest.discover, *latest.not_discover]),
        "source": "llm",
    }


def analyze(
    snapshots: Sequence[Snapshot],
    dependency_orders: Sequence[DependencyOrder] = (),
    min_path_count: int = 2,
    max_paths: int = 10,
) -> dict:
    """The offline model of the given (already selected) sessions."""
    merged = merge_snapshots(list(snapshots), MergeStrategy())
    return {
        "version": OFFLINE_MODEL_VERSION,
        "analyzed_sessions": len(snapshots),
        "updated_at_ms": max((s["metadata"]["created_at_ms"] for s in snapshots), default=0),
        "parameters": _parameters(merged, len(snapshots)),
        "recommended_paths": _recommended_paths(merged, min_path_count, max_paths),
        "strategy_config": _strategy_config(merged),
        "action_order": _action_order(dependency_orders),
    }


def build_scenario_model(
    scenario: str,
    snapshots: Sequence[Snapshot],
    strategy: MergeStrategy = MergeStrategy(),
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    dependency_orders: dict[str, DependencyOrder] | None = None,
) -> dict:
    """`models/<scenario>/scenario_model.json`: every session merged, plus the offline model of the latest."""
    ordered = latest_sessions(snapshots, len(snapshots))
    recent = latest_sessions(ordered, max_sessions)
    recent_ids = [s["metadata"]["session_id"] for s in recent]
    orders = [dependency_orders[i] for i in recent_ids if dependency_orders and i in dependency_orders]
    return {
        "scenario": scenario,
        "sessions": [s["metadata"]["session_id"] for s in ordered],
        "merged": merge_snapshots(ordered, strategy),
        "offline_model": analyze(recent, orders),
    }
