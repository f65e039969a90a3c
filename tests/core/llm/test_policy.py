"""Policy names, answers that count as wrong actions, and the offline policy's choices."""

from __future__ import annotations

import pytest

from swarm_learn_assets.core.llm.policy import DecideAnswer, DecideRequest, OfflinePolicy, PolicyError, parse_policy
from swarm_learn_assets.core.llm.prompts import parse_decision


@pytest.mark.parametrize(
    "text, kind, argument",
    [("scripted", "scripted", None), ("base", "base", None), ("current", "current", None),
     ("offline", "offline", None), ("adapter:v0003", "adapter", "v0003"),
     ("endpoint:http://127.0.0.1:8080/", "endpoint", "http://127.0.0.1:8080")],
)
def test_policy_names_parse(text, kind, argument):
    spec = parse_policy(text)
    assert (spec.kind, spec.argument) == (kind, argument)
    assert spec.uses_llm == (kind in ("base", "current", "adapter", "endpoint"))


@pytest.mark.parametrize(
    "text, says",
    [("greedy", "unknown policy 'greedy'"), ("adapter:", "adapter needs a version"),
     ("adapter", "adapter needs a version"), ("endpoint:localhost:8080", "endpoint needs a URL"),
     ("base:v1", "unknown policy")],
)
def test_bad_policy_names_are_one_clear_line(text, says):
    with pytest.raises(PolicyError) as err:
        parse_policy(text)
    assert says in str(err.value) and "\n" not in str(err.value)


OFFERED = ("CheckStatus", "ReadLogs", "Restart")


@pytest.mark.parametrize(
    "answer, action",
    [(DecideAnswer('{"action": "ReadLogs", "target": "h"}', 5), "ReadLogs"),
     (DecideAnswer('I would pick {"action": "Restart"} now', 5), "Restart"),
     (DecideAnswer('{"action": "Deploy", "target": "h"}', 5), None),  # not offered
     (DecideAnswer("CheckStatus", 5), None),  # not JSON
     (DecideAnswer('{"action": "ReadLogs"}', 5, error="timeout"), None)],  # the call failed
)
def test_only_a_parsed_offered_action_counts(answer, action):
    assert answer.action(OFFERED) == action


def test_the_request_prompt_is_the_recorded_decide_text():
    request = DecideRequest("disk full on db-3", "db-3", OFFERED, None)
    assert request.prompt.startswith("Current context: disk full on db-3\nAvailable actions: CheckStatus, ReadLogs")
    assert "Previous action: none" in request.prompt


def _offline(paths, order=None):
    return OfflinePolicy({"recommended_paths": paths, "action_order": order})


def test_offline_policy_follows_the_best_recommended_path():
    policy = _offline(
        [{"actions": ["CheckStatus", "ReadLogs", "Restart"], "success_rate": 1.0, "count": 5},
         {"actions": ["CheckStatus", "Restart"], "success_rate": 0.6, "count": 3}],
        {"discover": ["ReadLogs", "CheckStatus"], "not_discover": ["Restart"]},
    )
    answers = policy.decide([DecideRequest("x", "h", OFFERED, "CheckStatus"),
                             DecideRequest("x", "h", OFFERED, "ReadLogs"),
                             DecideRequest("x", "h", OFFERED, None)])
    chosen = [parse_decision(a.response).action for a in answers]
    # after CheckStatus: ReadLogs (1.0 x 5) beats Restart (0.6 x 3); at the start: the learned order
    assert chosen == ["ReadLogs", "Restart", "ReadLogs"]
    assert all(parse_decision(a.response).target == "h" for a in answers)


def test_offline_policy_without_an_order_starts_where_paths_start_and_offers_only_offered_actions():
    policy = _offline([{"actions": ["Deploy", "Promote"], "success_rate": 1.0, "count": 9},
                       {"actions": ["ReadLogs", "Restart"], "success_rate": 0.9, "count": 2}])
    start, after_deploy = policy.decide([DecideRequest("x", "h", OFFERED, None),
                                         DecideRequest("x", "h", OFFERED, "Deploy")])
    assert parse_decision(start.response).action == "ReadLogs"  # Deploy is not offered
    assert after_deploy.action(OFFERED) == "ReadLogs"  # Promote is not offered either: back to the order
