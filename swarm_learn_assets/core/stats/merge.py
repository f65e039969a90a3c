"""Merging session snapshots into the scenario model (DESIGN §7).

The merge is recomputed from all snapshots every time, so replaying a session replaces its snapshot
instead of being counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .snapshot import SECTIONS, Snapshot, empty_snapshot

# Which fields of each section are counts (weighted), and which identify an entry.
_KEYS = {
    "episode_transitions": ("from", "to"),
    "ngrams": ("n", "gram"),
    "action_stats": ("action",),
    "contextual_stats": ("prev", "action"),
    "selection_performance": ("strategy",),
}
_METADATA_COUNTS = ("session_count", "total_episodes", "success_episodes", "failure_episodes", "total_actions")


@dataclass(frozen=True)
class MergeStrategy:
    """Additive (weight 1), time decay by session age, or weighting by a session's success share."""

    name: str = "additive"
    half_life_sessions: float = 1.0

    @classmethod
    def parse(cls, text: str) -> MergeStrategy:
        """`additive`, `success_weighted`, or `time_decay` / `time_decay:<half_life_sessions>`."""
        name, _, arg = text.strip().lower().partition(":")
        if name == "time_decay":
            try:
                half_life = float(arg) if arg else 1.0
            except ValueError:
                half_life = -1.0
            if not (half_life > 0 and math.isfinite(half_life)):
                raise ValueError(f"merge strategy {text!r}: expected time_decay:<half-life > 0>")
            return cls(name, half_life)
        if name in ("additive", "success_weighted") and not arg:
            return cls(name)
        raise ValueError(f"merge strategy {text!r}: expected additive, success_weighted or time_decay[:<half-life>]")

    def weights(self, snapshots: Sequence[Snapshot]) -> list[float]:
        n = len(snapshots)
        if self.name == "time_decay":
            return [0.5 ** ((n - 1 - i) / self.half_life_sessions) for i in range(n)]
        if self.name == "success_weighted":
            out = []
            for snap in snapshots:
                total = snap["metadata"]["total_episodes"]
                out.append(1.0 + snap["metadata"]["success_episodes"] / total if total else 1.0)
            return out
        return [1.0] * n

    @property
    def additive(self) -> bool:
        """Whether a snapshot's share of the merge depends on it alone (not on how many came after),
        so that new snapshots can be added to an earlier merge."""
        return self.name != "time_decay"

    def describe(self) -> dict:
        return {"name": self.name, **({"half_life_sessions": self.half_life_sessions} if self.name == "time_decay" else {})}


def round_half_away(value: float) -> int:
    """Round like Rust's `f64::round`: halves go away from zero (Python's round() goes to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def merge_snapshots(snapshots: Sequence[Snapshot], strategy: MergeStrategy = MergeStrategy()) -> Snapshot:
    """Merge snapshots given oldest first. Each count is weighted and rounded per snapshot, then summed."""
    return _weighted_sum(snapshots, strategy.weights(snapshots), strategy)


def add_to_merged(merged: Snapshot, snapshots: Sequence[Snapshot], strategy: MergeStrategy) -> Snapshot:
    """`merged` (what `merge_snapshots` made with `strategy`) with `snapshots` added: the same as
    merging all of them at once, because the counts are integer sums of per-snapshot rounded shares
    and every list is sorted by its key. Only for strategies whose weights do not shift (`additive`)."""
    if not strategy.additive:
        raise ValueError(f"cannot add to a {strategy.name} merge: every weight changes with a new session")
    return _weighted_sum([merged, *snapshots], [1.0, *strategy.weights(snapshots)], strategy)


def _weighted_sum(snapshots: Sequence[Snapshot], weights: Sequence[float], strategy: MergeStrategy) -> Snapshot:
    scenario = snapshots[-1]["metadata"]["scenario"] if snapshots else ""
    merged = empty_snapshot(scenario, None)
    merged["metadata"]["session_count"] = 0
    merged["metadata"]["created_at_ms"] = max((s["metadata"]["created_at_ms"] for s in snapshots), default=0)
    for section in SECTIONS:
        key_fields = _KEYS[section]
        acc: dict[tuple, dict] = {}
        for snap, weight in zip(snapshots, weights):
            unweighted = weight == 1.0  # the additive case: integer counts stay as they are
            for entry in snap[section]:
                key = tuple(tuple(entry[k]) if isinstance(entry[k], list) else entry[k] for k in key_fields)
                target = acc.get(key)
                if target is None:
                    target = acc[key] = {k: entry[k] for k in key_fields}
                for name, value in entry.items():
                    if name not in key_fields:
                        add = value if unweighted and type(value) is int else round_half_away(value * weight)
                        target[name] = target.get(name, 0) + add
        merged[section] = [acc[k] for k in sorted(acc)]
    for name in _METADATA_COUNTS:
        merged["metadata"][name] = sum(s["metadata"][name] for s in snapshots)
    merged["strategy"] = strategy.describe()
    return merged


GLOBAL = "global"


def merge_scenario_models(models: Sequence[dict]) -> dict:
    """The global level: each scenario model's merged statistics added up (the reference merged every
    session into its global stats additively; for additive scenario models this is the same sum), so
    one scenario's rebuild never needs another scenario's snapshots. Models in any order."""
    ordered = sorted(models, key=lambda m: m["scenario"])
    merged = merge_snapshots([m["merged"] for m in ordered])
    merged["metadata"]["scenario"] = GLOBAL
    return {"scenario": GLOBAL, "scenarios": [m["scenario"] for m in ordered],
            "sessions": sum(len(m["sessions"]) for m in ordered), "merged": merged}
