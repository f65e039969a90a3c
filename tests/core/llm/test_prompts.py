"""The one home of prompt formats: what is built is what is parsed and scored."""

from __future__ import annotations

import pytest

from swarm_learn_assets.core.llm.prompts import (
    answer_kind,
    decide_prompt,
    decide_response,
    decision_prompt,
    decision_response,
    offered_actions,
    parse_decision,
    parse_sequence,
    score_answer,
)


@pytest.mark.parametrize("text, expected", [
    ("Based on the context, the optimal action sequence is: A -> B -> C", ["A", "B", "C"]),
    ("Execute the following sequence: Check", ["Check"]),
    ("I would first check the logs", None),
    ("sequence is: A -> -> B", None),
])
def test_parse_sequence(text, expected):
    assert parse_sequence(text) == expected


def test_decide_prompt_is_the_recorded_text():
    assert decide_prompt("disk full on db-3", ["A", "B"], None) == (
        "Current context: disk full on db-3\nAvailable actions: A, B\nPrevious action: none\n"
        "Choose the next action. Answer as JSON with keys action and target."
    )
    assert "Previous action: A\n" in decide_prompt("x", ["A", "B"], "A")


@pytest.mark.parametrize("text, action, target", [
    ('{"action": "FreeDisk", "target": "db-3"}', "FreeDisk", "db-3"),
    ('Sure: {"action": "FreeDisk"} done', "FreeDisk", None),
    ('{"action": ""}', None, None),
    ("FreeDisk", None, None),
    ('{"action": "FreeDisk", ', None, None),
    ('[1, 2]', None, None),
])
def test_parse_decision(text, action, target):
    parsed = parse_decision(text)
    assert (parsed.action if parsed else None) == action
    assert (parsed.target if parsed else None) == target


def test_offered_actions_read_the_available_line_of_either_prompt():
    assert offered_actions(decision_prompt("c", ["A", "B"])) == ["A", "B"]
    assert offered_actions(decide_prompt("c", ["X", "Y", "Z"], "X")) == ["X", "Y", "Z"]
    assert offered_actions("no list here") is None


def test_sequence_scoring():
    prompt, reference = decision_prompt("c", ["A", "B", "C"]), decision_response(["A", "B"])
    assert score_answer(prompt, reference, decision_response(["A", "B"])) == (True, True)
    assert score_answer(prompt, reference, decision_response(["B", "A"])) == (False, True)
    assert score_answer(prompt, reference, decision_response(["A", "Z"])) == (False, False)  # not offered
    assert score_answer(prompt, reference, "I do not know") == (False, False)


def test_decide_scoring_needs_the_target_only_when_the_reference_has_one():
    prompt = decide_prompt("disk full on db-3", ["FreeDisk", "ReadLogs"], None)
    with_target = decide_response("FreeDisk", "db-3")
    assert score_answer(prompt, with_target, '{"action": "FreeDisk", "target": "db-3"}') == (True, True)
    assert score_answer(prompt, with_target, '{"action": "FreeDisk", "target": "db-4"}') == (False, True)
    assert score_answer(prompt, with_target, '{"action": "Reboot", "target": "db-3"}') == (False, False)
    assert score_answer(prompt, decide_response("FreeDisk", None), '{"action": "FreeDisk", "target": "x"}') == (True, True)
    assert score_answer(prompt, with_target, "FreeDisk") == (False, False)


def test_answer_kind_is_the_previous_action_and_the_answer_without_the_host():
    decide = "Current context: x on db-3\nAvailable actions: A, B\nPrevious action: CheckStatus\nChoose the next action."
    assert answer_kind(decide, '{"action": "Failover", "target": "db-3"}') == ("CheckStatus", "Failover")
    assert answer_kind(decide, '{"action": "Failover", "target": "db-9"}') == ("CheckStatus", "Failover")
    sequence = "Current context: x on db-3\nAvailable actions: A, B\n\nWhat is the best sequence?"
    answer = "Based on the context, the optimal action sequence is: A -> B"
    assert answer_kind(sequence, answer) == (None, "A -> B")
    assert answer_kind(sequence, "no idea") == (None, "no idea")
