"""Episodes and outcomes: ports of the reference episode.rs tests that apply to the Python model."""

from __future__ import annotations

import hashlib

import pytest

from swarm_learn_assets.core.contract.typed_records import ActionRecord, LlmCallRecord
from swarm_learn_assets.core.episodes.episode import Episode, episode_id
from swarm_learn_assets.core.episodes.outcome import Outcome


def make_action(tick: int, worker_id: int, action: str, success: bool = True, seq: int | None = None) -> ActionRecord:
    """The reference helper: 50 ms, UCB1 selection, previous action `PrevAction`."""
    return ActionRecord(
        tick,
        worker_id,
        action,
        seq=tick if seq is None else seq,
        success=success,
        error=None if success else "test error",
        duration_ms=50,
        selection_logic="UCB1",
        previous_action="PrevAction",
    )


# ---------------------------------------------------------------------------------------------
# Ports of episode.rs tests
# ---------------------------------------------------------------------------------------------


def test_action_record_fields():
    record = make_action(10, 1, "CheckStatus", True)
    assert record.tick == 10
    assert record.worker_id == 1
    assert record.action == "CheckStatus"
    assert record.success
    assert record.duration_ms == 50
    assert record.selection_logic == "UCB1"
    assert record.previous_action == "PrevAction"


def test_action_record_defaults_and_system_events():
    record = ActionRecord(1, 0, "A")
    assert record.success is True  # default, as in the reference
    assert record.duration_ms == 0
    assert not record.is_terminal()
    assert not record.is_system_event()
    assert ActionRecord(1, 0, "done").is_terminal()
    assert ActionRecord(1, 0, "done").is_system_event()
    assert ActionRecord(1, 0, "tick_start").is_system_event()
    assert not ActionRecord(1, 0, "tick_start").is_terminal()
    assert ActionRecord(1, 0, "tick_end").is_system_event()


def test_episode_with_actions():
    episode = Episode(
        learn_model="worker_task",
        records=[make_action(1, 0, "Grep"), make_action(2, 0, "Read"), make_action(3, 0, "done")],
        outcome=Outcome.success_binary(),
        scenario="troubleshooting",
    )
    assert episode.learn_model == "worker_task"
    assert len(episode.records) == 3
    assert episode.actions() == ["Grep", "Read", "done"]
    assert episode.decision_actions() == ["Grep", "Read"]
    assert episode.is_success()
    assert episode.scenario == "troubleshooting"
    assert episode.worker_id() == 0


def test_llm_call_record_fields():
    # The Python Episode holds action records only; the LLM record is checked on its own.
    record = LlmCallRecord(
        call_type="decide", model="qwen2.5", prompt="What action?", response="CheckStatus", latency_ms=150, worker_id=0
    )
    assert record.call_type == "decide"
    assert record.model == "qwen2.5"
    assert record.prompt == "What action?"
    assert record.response == "CheckStatus"
    assert record.latency_ms == 150
    assert record.worker_id == 0
    assert record.kind == "llm_call"


def test_outcome_variants():
    assert Outcome.success(1.0).is_success()
    assert not Outcome.success(1.0).is_failure()
    assert Outcome.success(0.8).score() == 0.8

    assert not Outcome.failure("test").is_success()
    assert Outcome.failure("test").is_failure()
    assert Outcome.failure("test").score() == 0.0
    assert Outcome.failure("test").reason == "test"

    assert not Outcome.timeout(0.5).is_success()
    assert Outcome.timeout(0.5).is_failure()
    assert Outcome.timeout(0.5).score() == 0.5

    assert not Outcome.unknown().is_success()
    assert not Outcome.unknown().is_failure()
    assert Outcome.unknown().is_unknown()


def test_outcome_scores_edge_cases():
    assert Outcome.success_binary().score() == 1.0
    assert Outcome.success().score() == 1.0
    assert Outcome.timeout().score() == 0.0  # no partial score
    assert Outcome.unknown().score() == 0.0
    assert Outcome().is_unknown()  # default is Unknown
    assert Outcome.success(1) == Outcome.success(1.0)
    assert Outcome.failure("a") != Outcome.failure("b")


def test_episode_records_iteration():
    episode = Episode(records=[ActionRecord(1, 0, "A"), ActionRecord(2, 0, "B"), ActionRecord(3, 0, "C", success=False)])
    assert len(episode.records) == 3
    assert sum(1 for r in episode.records if r.success) == 2
    assert episode.actions() == ["A", "B", "C"]


def test_llm_call_record_builder():
    record = LlmCallRecord(
        call_type="decide",
        model="qwen2.5",
        prompt="prompt",
        response="response",
        endpoint="http://localhost:11434",
        lora="adapter1",
        latency_ms=100,
        worker_id=5,
    )
    assert record.call_type == "decide"
    assert record.model == "qwen2.5"
    assert record.prompt == "prompt"
    assert record.response == "response"
    assert record.endpoint == "http://localhost:11434"
    assert record.lora == "adapter1"
    assert record.worker_id == 5
    assert record.is_success()

    assert not LlmCallRecord(call_type="decide", model="model", error="timeout").is_success()


@pytest.mark.parametrize(
    ("response", "error", "expected"),
    [("ok", None, True), ("", None, False), ("ok", "boom", False), ("", "boom", False), ("ok", "", False)],
)
def test_llm_call_success_needs_no_error_and_a_response(response, error, expected):
    assert LlmCallRecord(response=response, error=error).is_success() is expected


def test_episode_with_id_and_metadata():
    episode = Episode(
        id="custom-id",
        learn_model="test",
        scenario="custom-scenario",
        tags={"key": "value"},
        outcome=Outcome.unknown(),
    )
    assert episode.id == "custom-id"  # an explicit id is not replaced
    assert episode.scenario == "custom-scenario"
    assert episode.tags["key"] == "value"
    assert not episode.is_success()


# ---------------------------------------------------------------------------------------------
# Stable ids
# ---------------------------------------------------------------------------------------------


def _episode(first_seq: int, scenario: str = "sc", session: str = "s1", model: str = "worker_task") -> Episode:
    return Episode(model, [make_action(1, 2, "A", seq=first_seq), make_action(2, 2, "done", seq=first_seq + 1)],
                   Outcome.success(), scenario, session)


def test_episode_id_is_stable():
    assert _episode(5).id == _episode(5).id


def test_episode_id_depends_on_where_it_starts():
    base = _episode(5).id
    assert _episode(6).id != base
    assert _episode(5, scenario="other").id != base
    assert _episode(5, session="s2").id != base
    assert _episode(5, model="worker_decision_sequence").id != base


def test_episode_id_does_not_depend_on_outcome_or_later_records():
    a = Episode("worker_task", [make_action(1, 2, "A", seq=5)], Outcome.success(), "sc", "s1")
    b = Episode("worker_task", [make_action(1, 2, "A", seq=5), make_action(2, 2, "B", seq=9)], Outcome.failure("x"),
                "sc", "s1")
    assert a.id == b.id


def test_episode_id_is_16_hex_of_sha256_of_its_start():
    # documented key: <scenario>/<session>/<learn model>/<worker>/<first seq>
    expected = hashlib.sha256(b"sc/s1/worker_task/2/5").hexdigest()[:16]
    assert _episode(5).id == expected
    assert episode_id("sc", "s1", "worker_task", 2, 5) == expected


# ---------------------------------------------------------------------------------------------
# Accessors with fallbacks
# ---------------------------------------------------------------------------------------------


def test_task_and_group_id_fall_back_to_first_record():
    records = [ActionRecord(1, 0, "A", task_id="t1", group_id="g1"), ActionRecord(2, 0, "B", task_id="t2", group_id="g2")]
    episode = Episode(records=records)
    assert episode.get_task_id() == "t1"
    assert episode.get_group_id() == "g1"


def test_explicit_task_and_group_id_win():
    records = [ActionRecord(1, 0, "A", task_id="t1", group_id="g1")]
    episode = Episode(records=records, task_id="T", group_id="G")
    assert episode.get_task_id() == "T"
    assert episode.get_group_id() == "G"


def test_task_and_group_id_of_empty_episode():
    episode = Episode()
    assert episode.get_task_id() is None
    assert episode.get_group_id() is None
    assert episode.worker_id() is None
    assert episode.context() is None
    assert episode.selection_logic() is None
    assert episode.started_at_ms() is None
    assert episode.ended_at_ms() is None


def test_context_is_first_non_empty():
    records = [ActionRecord(1, 0, "A"), ActionRecord(2, 0, "B", context=""), ActionRecord(3, 0, "C", context="ctx"),
               ActionRecord(4, 0, "D", context="later")]
    assert Episode(records=records).context() == "ctx"


def test_selection_logic_skips_system_events():
    records = [ActionRecord(1, 0, "tick_start", selection_logic="Greedy"), ActionRecord(2, 0, "A", selection_logic="UCB1"),
               ActionRecord(3, 0, "B", selection_logic="Thompson")]
    assert Episode(records=records).selection_logic() == "UCB1"


def test_start_and_end_times_ignore_missing():
    records = [ActionRecord(1, 0, "A", timestamp_ms=300), ActionRecord(2, 0, "B"), ActionRecord(3, 0, "C", timestamp_ms=100)]
    episode = Episode(records=records)
    assert episode.started_at_ms() == 100
    assert episode.ended_at_ms() == 300
