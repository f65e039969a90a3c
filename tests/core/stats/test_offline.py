"""The offline model: session selection, recommended paths, strategy choice, action order."""

from __future__ import annotations

import hashlib

from swarm_learn_assets.core.stats.merge import MergeStrategy
from swarm_learn_assets.core.stats.offline import (
    DependencyOrder,
    action_set_hash,
    analyze,
    build_scenario_model,
    latest_sessions,
)
from swarm_learn_assets.core.stats.snapshot import empty_snapshot


def snap(session_id: str, created: int, ngrams=(), strategies=(), actions=()) -> dict:
    """A snapshot with ngrams (gram, success, failure), strategies (name, ep_success, ep_failure) and
    action stats (name, visits, failures)."""
    s = empty_snapshot("sc", session_id, created)
    s["ngrams"] = [{"n": len(g), "gram": list(g), "success": ok, "failure": bad} for g, ok, bad in ngrams]
    s["selection_performance"] = [
        {"strategy": name, "visits": 0, "successes": 0, "failures": 0, "episodes_success": ok, "episodes_failure": bad}
        for name, ok, bad in strategies
    ]
    s["action_stats"] = [
        {"action": a, "visits": v, "successes": v - f, "failures": f, "total_duration_ms": 0} for a, v, f in actions
    ]
    return s


# ---------------------------------------------------------------------------------------------
# action_set_hash
# ---------------------------------------------------------------------------------------------


def test_action_set_hash_is_sha256_of_sorted_names():
    expected = hashlib.sha256("CheckStatus\nDiagnose\nReadLogs".encode()).hexdigest()
    assert action_set_hash(["ReadLogs", "CheckStatus", "Diagnose"]) == expected


def test_action_set_hash_is_order_independent():
    assert action_set_hash(["A", "B", "C"]) == action_set_hash(["C", "A", "B"])
    assert action_set_hash(["A", "B"]) != action_set_hash(["A", "C"])
    assert action_set_hash(["A", "B"]) != action_set_hash(["A", "B", "C"])


def test_action_set_hash_of_empty_set():
    assert action_set_hash([]) == hashlib.sha256(b"").hexdigest()


# ---------------------------------------------------------------------------------------------
# latest_sessions
# ---------------------------------------------------------------------------------------------


def test_latest_sessions_newest_returned_oldest_first():
    snapshots = [snap("c", 300), snap("a", 100), snap("d", 400), snap("b", 200)]
    assert [s["metadata"]["session_id"] for s in latest_sessions(snapshots, 2)] == ["c", "d"]
    assert [s["metadata"]["session_id"] for s in latest_sessions(snapshots, 10)] == ["a", "b", "c", "d"]


def test_latest_sessions_ties_break_by_session_id():
    snapshots = [snap("z", 100), snap("m", 100), snap("a", 100)]
    assert [s["metadata"]["session_id"] for s in latest_sessions(snapshots, 2)] == ["m", "z"]


def test_latest_sessions_zero_is_none():
    assert latest_sessions([snap("a", 1)], 0) == []
    assert latest_sessions([], 5) == []


# ---------------------------------------------------------------------------------------------
# analyze
# ---------------------------------------------------------------------------------------------


def test_analyze_sessions_and_update_time():
    model = analyze([snap("a", 100), snap("b", 300), snap("c", 200)])
    assert model["analyzed_sessions"] == 3
    assert model["updated_at_ms"] == 300
    assert model["action_order"] is None


def test_analyze_of_nothing():
    model = analyze([])
    assert model["analyzed_sessions"] == 0
    assert model["updated_at_ms"] == 0
    assert model["recommended_paths"] == []


def test_recommended_paths_sorted_and_filtered():
    s1 = snap("a", 100, ngrams=[(("A", "B", "C"), 2, 1), (("X", "Y", "Z"), 1, 0), (("P", "Q", "R"), 1, 3)])
    s2 = snap("b", 200, ngrams=[(("A", "B", "C"), 1, 0), (("A", "B", "D"), 2, 0)])
    paths = analyze([s1, s2], min_path_count=2)["recommended_paths"]
    # merged: ABC 3/1 (rate .75, count 4), ABD 2/0 (1.0, 2), XYZ 1/0 (count 1 < 2), PQR 1/3 (rate .25 < .5)
    assert paths == [
        {"actions": ["A", "B", "D"], "success_rate": 1.0, "count": 2},
        {"actions": ["A", "B", "C"], "success_rate": 0.75, "count": 4},
    ]


def test_recommended_paths_min_count_and_limit():
    s = snap("a", 100, ngrams=[(("A", "B", "C"), 3, 0), (("A", "B", "D"), 2, 0), (("X", "Y", "Z"), 1, 0)])
    assert [p["actions"] for p in analyze([s], min_path_count=1)["recommended_paths"]] == [
        ["A", "B", "C"],  # same rate: higher count first
        ["A", "B", "D"],
        ["X", "Y", "Z"],
    ]
    assert [p["actions"] for p in analyze([s], min_path_count=3)["recommended_paths"]] == [["A", "B", "C"]]
    assert len(analyze([s], min_path_count=1, max_paths=2)["recommended_paths"]) == 2


def test_recommended_paths_longer_path_breaks_ties():
    s = snap("a", 100, ngrams=[(("A", "B", "C"), 2, 0), (("A", "B", "C", "D"), 2, 0)])
    assert [p["actions"] for p in analyze([s])["recommended_paths"]] == [["A", "B", "C", "D"], ["A", "B", "C"]]


def test_strategy_config_picks_best_episode_success_rate():
    s1 = snap("a", 100, strategies=[("UCB1", 1, 3), ("Thompson", 2, 1), ("Greedy", 0, 0)])
    s2 = snap("b", 200, strategies=[("Thompson", 1, 0)])
    config = analyze([s1, s2])["strategy_config"]
    # UCB1 1/4 = .25; Thompson 3/4 = .75; Greedy has no episodes and no rate
    assert config["initial_strategy"] == "Thompson"
    assert config["episode_success_rates"] == {"Thompson": 0.75, "UCB1": 0.25}


def test_strategy_config_defaults_to_ucb1_without_data():
    assert analyze([snap("a", 1)])["strategy_config"]["initial_strategy"] == "UCB1"


def test_strategy_config_tie_goes_to_name_order():
    s = snap("a", 1, strategies=[("UCB1", 1, 1), ("Greedy", 2, 2)])
    assert analyze([s])["strategy_config"]["initial_strategy"] == "Greedy"


def test_parameters_from_failure_rate_and_ngrams():
    s = snap(
        "a",
        1,
        ngrams=[(("A", "B", "C"), 3, 1), (("A", "B", "D"), 2, 0), (("X", "Y", "Z"), 1, 0), (("P", "Q", "R"), 1, 3)],
        actions=[("A", 8, 2), ("B", 2, 0)],
    )
    params = analyze([s])["parameters"]
    # failure rate 2/10 -> c = sqrt(2) * (0.5 + 0.2) = 1.41421 * 0.7 = 0.98995
    assert params["ucb1_c"] == 0.9899
    # one session -> 0.3 + 0.6 * (1 - e^(-1/20)) = 0.3 + 0.6 * 0.048771 = 0.329263
    assert params["learning_weight"] == 0.3293
    # decisive grams (rate >= .8 or <= .2): ABD (2) and XYZ (1) of 11 counted = 0.272727
    assert params["ngram_weight"] == 0.2727


def test_parameters_without_data_and_clamping():
    params = analyze([snap("a", 1)])["parameters"]
    assert params["ucb1_c"] == 1.4142  # unknown failure rate 0.5: sqrt(2) * 1.0
    assert params["ngram_weight"] == 0.5
    all_failed = analyze([snap("a", 1, actions=[("A", 5, 5)])])["parameters"]
    assert all_failed["ucb1_c"] == 2.1213  # sqrt(2) * 1.5 = 2.1213, under the 2.5 cap


# ---------------------------------------------------------------------------------------------
# build_scenario_model
# ---------------------------------------------------------------------------------------------


def five_sessions() -> list[dict]:
    old = [(("A", "B", "C"), 5, 0)]
    new = [(("D", "E", "F"), 2, 0)]
    return [
        snap("s3", 300),
        snap("s1", 100, ngrams=old),
        snap("s5", 500, ngrams=new),
        snap("s2", 200, ngrams=old),
        snap("s4", 400, ngrams=new),
    ]


def test_scenario_model_offline_uses_latest_merged_uses_all():
    model = build_scenario_model("sc", five_sessions(), max_sessions=2)
    assert model["scenario"] == "sc"
    assert model["sessions"] == ["s1", "s2", "s3", "s4", "s5"]
    assert model["merged"]["metadata"]["session_count"] == 5
    assert {tuple(g["gram"]) for g in model["merged"]["ngrams"]} == {("A", "B", "C"), ("D", "E", "F")}
    offline = model["offline_model"]
    assert offline["analyzed_sessions"] == 2
    assert offline["updated_at_ms"] == 500
    assert offline["recommended_paths"] == [{"actions": ["D", "E", "F"], "success_rate": 1.0, "count": 4}]


def test_scenario_model_merge_strategy_applies_to_merged():
    model = build_scenario_model("sc", five_sessions(), MergeStrategy("time_decay", 1), max_sessions=2)
    counts = {tuple(g["gram"]): g["success"] for g in model["merged"]["ngrams"]}
    # oldest first: s1 weight 1/16, s2 1/8 -> 5/16 -> 0 and 5/8 -> 1; s4 1/2, s5 1 -> 1 + 2
    assert counts == {("A", "B", "C"): 1, ("D", "E", "F"): 3}
    assert model["merged"]["strategy"]["name"] == "time_decay"


def test_scenario_model_action_order_from_newest_session():
    orders = {
        "s1": DependencyOrder(100, ["Old"], []),
        "s4": DependencyOrder(400, ["CheckStatus", "ReadLogs"], ["Restart"]),
        "s5": DependencyOrder(500, ["ReadLogs", "CheckStatus"], ["Diagnose"]),
    }
    order = build_scenario_model("sc", five_sessions(), max_sessions=2, dependency_orders=orders)["offline_model"][
        "action_order"
    ]
    assert order == {
        "discover": ["ReadLogs", "CheckStatus"],
        "not_discover": ["Diagnose"],
        "action_set_hash": hashlib.sha256(b"CheckStatus\nDiagnose\nReadLogs").hexdigest(),
        "source": "llm",
    }


def test_scenario_model_action_order_ignores_sessions_outside_window():
    orders = {"s1": DependencyOrder(100, ["Old"], [])}
    model = build_scenario_model("sc", five_sessions(), max_sessions=2, dependency_orders=orders)
    assert model["offline_model"]["action_order"] is None


def test_scenario_model_without_orders():
    assert build_scenario_model("sc", five_sessions())["offline_model"]["action_order"] is None
    assert build_scenario_model("sc", five_sessions(), dependency_orders={})["offline_model"]["action_order"] is None


def test_scenario_model_default_window_takes_all_five():
    assert build_scenario_model("sc", five_sessions())["offline_model"]["analyzed_sessions"] == 5
