"""Merging snapshots: ports of the reference snapshot.rs merge tests plus strategies and rounding."""

from __future__ import annotations

import copy

import pytest

from swarm_learn_assets.core.stats.merge import MergeStrategy, merge_scenario_models, merge_snapshots, round_half_away
from swarm_learn_assets.core.stats.snapshot import SECTIONS, SNAPSHOT_VERSION, check_ngram_orders, empty_snapshot


def snap(session_id: str, ab_success: int = 0, ab_failure: int = 0, *, total: int = 0, success: int = 0,
         created: int = 0, scenario: str = "sc") -> dict:
    s = empty_snapshot(scenario, session_id, created)
    if ab_success or ab_failure:
        s["episode_transitions"].append({"from": "A", "to": "B", "success": ab_success, "failure": ab_failure})
    s["metadata"]["total_episodes"] = total
    s["metadata"]["success_episodes"] = success
    s["metadata"]["failure_episodes"] = total - success
    return s


def ab(merged: dict) -> dict:
    (entry,) = [e for e in merged["episode_transitions"] if (e["from"], e["to"]) == ("A", "B")]
    return entry


# ---------------------------------------------------------------------------------------------
# Ports of snapshot.rs tests
# ---------------------------------------------------------------------------------------------


def test_empty_snapshot_shape():
    s = empty_snapshot("test", "s1", 42)
    assert s["version"] == SNAPSHOT_VERSION
    assert s["metadata"]["scenario"] == "test"
    assert s["metadata"]["session_id"] == "s1"
    assert s["metadata"]["created_at_ms"] == 42
    assert s["metadata"]["session_count"] == 1
    assert all(s[section] == [] for section in SECTIONS)


def test_merge_additive():
    s1 = snap("s1", 5, total=10)
    s2 = snap("s2", 3, total=5)
    merged = merge_snapshots([s1, s2], MergeStrategy("additive"))
    assert ab(merged)["success"] == 8
    assert merged["metadata"]["total_episodes"] == 15


def test_merge_time_decay():
    s1 = snap("s1", 100)
    s2 = snap("s2", 100)
    merged = merge_snapshots([s1, s2], MergeStrategy("time_decay", 1))
    # the older session counts half: 100 * 0.5 + 100 * 1
    assert ab(merged)["success"] == 150


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def test_time_decay_weights():
    three = [snap(f"s{i}") for i in range(3)]
    assert MergeStrategy("time_decay", 1).weights(three) == pytest.approx([0.25, 0.5, 1.0])
    assert MergeStrategy("time_decay", 2).weights(three) == pytest.approx([0.5, 2 ** -0.5, 1.0])


def test_success_weighted_weights():
    snapshots = [snap("s1", total=4, success=3), snap("s2", total=0), snap("s3", total=5, success=0)]
    # 1 + success/total; 1 when there were no episodes
    assert MergeStrategy("success_weighted").weights(snapshots) == pytest.approx([1.75, 1.0, 1.0])


def test_additive_weights():
    assert MergeStrategy().weights([snap("a"), snap("b")]) == [1.0, 1.0]
    assert MergeStrategy().weights([]) == []


def test_merge_success_weighted_counts():
    s1 = snap("s1", 4, 2, total=4, success=3)  # weight 1.75: 4 -> 7, 2 -> 3.5 -> 4
    s2 = snap("s2", 1, 0, total=0)  # weight 1
    merged = merge_snapshots([s1, s2], MergeStrategy("success_weighted"))
    assert ab(merged) == {"from": "A", "to": "B", "success": 8, "failure": 4}


def test_weighted_counts_round_half_away_per_snapshot():
    # weights 0.5 and 1: the older 5 becomes 2.5 -> 3 (not banker's 2); the newer 1 stays 1
    merged = merge_snapshots([snap("s1", 5, 1), snap("s2", 1)], MergeStrategy("time_decay", 1))
    assert ab(merged)["success"] == 4
    assert ab(merged)["failure"] == 1  # 1 * 0.5 = 0.5 -> 1, and s2 has no failures


def test_rounding_happens_per_snapshot_before_summing():
    # half-life 2, three sessions: weights 0.5, 0.707, 1.0. Each 1 rounds to 1 (0.5 away from zero),
    # giving 3, where summing first would give round(2.207) = 2.
    merged = merge_snapshots([snap(f"s{i}", 1) for i in range(3)], MergeStrategy("time_decay", 2))
    assert ab(merged)["success"] == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2.5, 3), (0.5, 1), (1.4999, 1), (1.5, 2), (3.5, 4), (0.0, 0), (0.49, 0), (-2.5, -3), (-0.4, 0), (7.0, 7)],
)
def test_round_half_away(value, expected):
    assert round_half_away(value) == expected


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "half_life"),
    [
        ("additive", "additive", 1.0),
        ("success_weighted", "success_weighted", 1.0),
        ("time_decay", "time_decay", 1.0),
        ("time_decay:3", "time_decay", 3.0),
        ("time_decay:0.5", "time_decay", 0.5),
        ("  Time_Decay:2 ", "time_decay", 2.0),
        ("ADDITIVE", "additive", 1.0),
    ],
)
def test_merge_strategy_parse(text, name, half_life):
    strategy = MergeStrategy.parse(text)
    assert strategy.name == name
    assert strategy.half_life_sessions == half_life


@pytest.mark.parametrize("text", ["time_decay:0", "time_decay:-1", "time_decay:abc", "time_decay:inf", "time_decay:nan", "bogus", "additive:2", ""])
def test_merge_strategy_parse_errors_name_the_input(text):
    with pytest.raises(ValueError) as info:
        MergeStrategy.parse(text)
    assert repr(text) in str(info.value)


def test_describe():
    assert MergeStrategy.parse("time_decay:3").describe() == {"name": "time_decay", "half_life_sessions": 3.0}
    assert MergeStrategy.parse("additive").describe() == {"name": "additive"}


# ---------------------------------------------------------------------------------------------
# Merge semantics
# ---------------------------------------------------------------------------------------------


def test_additive_merge_does_not_depend_on_order():
    s1 = snap("s1", 5, 1, total=3, success=2)
    s2 = snap("s2", 2, 4, total=6, success=1)
    s2["action_stats"].append({"action": "X", "visits": 3, "successes": 2, "failures": 1, "total_duration_ms": 30})
    forward = merge_snapshots([s1, s2])
    backward = merge_snapshots([s2, s1])
    assert forward == backward
    assert ab(forward) == {"from": "A", "to": "B", "success": 7, "failure": 5}


def test_time_decay_merge_depends_on_order_through_weights():
    old_big, new_small = snap("s1", 100), snap("s2", 10)
    assert ab(merge_snapshots([old_big, new_small], MergeStrategy("time_decay", 1)))["success"] == 60  # 50 + 10
    assert ab(merge_snapshots([new_small, old_big], MergeStrategy("time_decay", 1)))["success"] == 105  # 5 + 100


def test_metadata_counts_are_summed_unweighted():
    s1 = snap("s1", 100, total=10, success=4, created=1000)
    s1["metadata"]["total_actions"] = 40
    s2 = snap("s2", 100, total=5, success=5, created=500)
    s2["metadata"]["total_actions"] = 7
    merged = merge_snapshots([s1, s2], MergeStrategy("time_decay", 1))
    meta = merged["metadata"]
    assert meta["session_count"] == 2
    assert meta["total_episodes"] == 15
    assert meta["success_episodes"] == 9
    assert meta["failure_episodes"] == 6
    assert meta["total_actions"] == 47
    assert meta["created_at_ms"] == 1000  # the newest time, not the last one's
    assert meta["session_id"] is None
    assert meta["scenario"] == "sc"
    assert merged["strategy"] == {"name": "time_decay", "half_life_sessions": 1.0}


def test_merge_entries_by_key_in_every_section():
    s1 = empty_snapshot("sc", "s1")
    s2 = empty_snapshot("sc", "s2")
    s1["ngrams"] = [{"n": 3, "gram": ["A", "B", "C"], "success": 2, "failure": 0}]
    s2["ngrams"] = [
        {"n": 3, "gram": ["A", "B", "C"], "success": 1, "failure": 1},
        {"n": 3, "gram": ["A", "B", "D"], "success": 0, "failure": 1},
    ]
    s1["contextual_stats"] = [{"prev": "A", "action": "B", "visits": 2, "successes": 1, "failures": 1}]
    s2["contextual_stats"] = [{"prev": "A", "action": "B", "visits": 1, "successes": 1, "failures": 0}]
    s1["selection_performance"] = [
        {"strategy": "UCB1", "visits": 4, "successes": 3, "failures": 1, "episodes_success": 1, "episodes_failure": 0}
    ]
    s2["selection_performance"] = [
        {"strategy": "Greedy", "visits": 1, "successes": 0, "failures": 1, "episodes_success": 0, "episodes_failure": 1}
    ]
    merged = merge_snapshots([s1, s2])
    assert merged["ngrams"] == [
        {"n": 3, "gram": ["A", "B", "C"], "success": 3, "failure": 1},
        {"n": 3, "gram": ["A", "B", "D"], "success": 0, "failure": 1},
    ]
    assert merged["contextual_stats"] == [{"prev": "A", "action": "B", "visits": 3, "successes": 2, "failures": 1}]
    assert [e["strategy"] for e in merged["selection_performance"]] == ["Greedy", "UCB1"]  # sorted by key


def test_merge_does_not_modify_inputs():
    s1, s2 = snap("s1", 5), snap("s2", 3)
    before = copy.deepcopy([s1, s2])
    merge_snapshots([s1, s2], MergeStrategy("success_weighted"))
    assert [s1, s2] == before


def test_merge_of_nothing_is_empty():
    merged = merge_snapshots([])
    assert merged["metadata"]["session_count"] == 0
    assert merged["metadata"]["created_at_ms"] == 0
    assert all(merged[section] == [] for section in SECTIONS)


def test_merge_replay_is_idempotent():
    # the merge is recomputed from snapshots, so merging the same inputs twice gives the same result
    snapshots = [snap("s1", 5, 1, total=2, success=1), snap("s2", 3, total=1, success=1)]
    assert merge_snapshots(snapshots, MergeStrategy("time_decay", 1)) == merge_snapshots(
        copy.deepcopy(snapshots), MergeStrategy("time_decay", 1)
    )


# ---------------------------------------------------------------------------------------------
# n-gram orders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[2], [11], [3, 11], [], [3.0], ["3"]])
def test_check_ngram_orders_rejects(bad):
    with pytest.raises(ValueError, match="3 to 10"):
        check_ngram_orders(bad)


def test_check_ngram_orders_accepts_3_to_10():
    assert check_ngram_orders(list(range(3, 11))) == tuple(range(3, 11))
    assert check_ngram_orders([4, 3, 4]) == (3, 4)  # sorted, distinct


def _scenario_model(name: str, sessions: list[str], actions: list[dict], episodes: tuple[int, int, int]) -> dict:
    merged = empty_snapshot(name, None)
    merged["action_stats"] = actions
    merged["metadata"].update(session_count=len(sessions), total_episodes=episodes[0], success_episodes=episodes[1],
                              failure_episodes=episodes[2], total_actions=sum(a["visits"] for a in actions))
    return {"scenario": name, "sessions": sessions, "merged": merged}


def test_the_global_model_adds_the_scenario_models_up():
    db = _scenario_model("db", ["s1", "s2"], [
        {"action": "CheckStatus", "visits": 3, "successes": 2, "failures": 1, "total_duration_ms": 30},
        {"action": "Failover", "visits": 1, "successes": 1, "failures": 0, "total_duration_ms": 200},
    ], (4, 3, 1))
    web = _scenario_model("web", ["s1"], [
        {"action": "CheckStatus", "visits": 2, "successes": 0, "failures": 2, "total_duration_ms": 12},
    ], (2, 0, 2))
    model = merge_scenario_models([web, db])  # any order in, scenarios by name out
    assert model["scenario"] == "global" and model["scenarios"] == ["db", "web"] and model["sessions"] == 3
    assert model["merged"]["action_stats"] == [
        {"action": "CheckStatus", "visits": 5, "successes": 2, "failures": 3, "total_duration_ms": 42},
        {"action": "Failover", "visits": 1, "successes": 1, "failures": 0, "total_duration_ms": 200},
    ]
    meta = model["merged"]["metadata"]
    assert (meta["scenario"], meta["session_count"], meta["total_episodes"], meta["success_episodes"],
            meta["failure_episodes"], meta["total_actions"]) == ("global", 3, 6, 3, 3, 6)
    assert merge_scenario_models([])["merged"]["metadata"]["total_episodes"] == 0
