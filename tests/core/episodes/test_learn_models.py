"""Learn models: ports of the reference learn_model.rs tests plus the Python-specific rules (DPO pairing)."""

from __future__ import annotations

import pytest

from swarm_learn_assets.core.contract.typed_records import (
    ActionRecord,
    DependencyGraphRecord,
    LearnStatsRecord,
    LlmCallRecord,
    RecordStream,
    StrategyAdviceRecord,
    worker_id_of,
)
from swarm_learn_assets.core.episodes.episode import Episode
from swarm_learn_assets.core.episodes.learn_models import (
    DECISION_SYSTEM_PROMPT,
    DEFAULT_AVAILABLE_ACTIONS,
    DpoConfig,
    LearnError,
    WorkerDecisionSequenceLearn,
    WorkerTaskLearn,
    build_dpo_pairs,
    convert_dpo_pair,
    decision_prompt,
)
from swarm_learn_assets.core.episodes.outcome import Outcome


def make_action(tick: int, worker_id: int, action: str, success: bool = True, **kw) -> ActionRecord:
    """The reference helper: 10 ms duration, an error text when the action failed."""
    return ActionRecord(
        tick, worker_id, action, seq=tick, success=success, error=None if success else "error", duration_ms=10, **kw
    )


# ---------------------------------------------------------------------------------------------
# Ports of learn_model.rs tests
# ---------------------------------------------------------------------------------------------


def test_record_accessors():
    record = make_action(1, 5, "CheckStatus", True)

    assert isinstance(record, ActionRecord)  # is_action / as_action
    assert not isinstance(record, LlmCallRecord)  # !is_llm / as_llm is none
    assert record.kind == "action"
    assert worker_id_of(record) == 5


def test_worker_id_of_other_kinds():
    assert worker_id_of(LlmCallRecord(worker_id=3)) == 3
    assert worker_id_of(LlmCallRecord()) is None
    assert worker_id_of(DependencyGraphRecord()) is None
    assert worker_id_of(StrategyAdviceRecord()) is None
    assert worker_id_of(LearnStatsRecord()) is None


def test_record_stream_group_by_worker():
    records = [
        make_action(1, 0, "A"),
        make_action(2, 1, "B"),
        make_action(3, 0, "C"),
        make_action(4, 1, "D"),
    ]
    groups = RecordStream(records).group_by_worker()

    assert len(groups) == 2
    assert len(groups[0]) == 2
    assert len(groups[1]) == 2
    # input order is kept inside a group
    assert [r.action for r in groups[0]] == ["A", "C"]
    assert [r.action for r in groups[1]] == ["B", "D"]


def test_record_stream_group_by_worker_skips_records_without_worker():
    records = [make_action(1, 0, "A"), LlmCallRecord(call_type="decide"), LearnStatsRecord(), LlmCallRecord(worker_id=0)]
    stream = RecordStream(records)
    groups = stream.group_by_worker()
    assert list(groups) == [0]
    assert len(groups[0]) == 2
    assert len(stream) == 4
    assert len(list(stream.actions())) == 1
    assert len(list(stream.llm_calls())) == 2


def test_worker_task_learn_build_episodes():
    learn = WorkerTaskLearn(min_actions=2)
    records = [
        make_action(1, 0, "CheckStatus", True),
        make_action(2, 0, "ReadLogs", True),
        make_action(3, 0, "done", True),
        make_action(4, 1, "Grep", True),
        make_action(5, 1, "done", False),
    ]

    episodes = learn.build_episodes(records)

    # Worker 0: success, Worker 1: failure
    assert len(episodes) == 2
    by_worker = {ep.worker_id(): ep for ep in episodes}
    assert set(by_worker) == {0, 1}
    assert by_worker[0].outcome.is_success()
    assert by_worker[0].actions() == ["CheckStatus", "ReadLogs", "done"]
    assert by_worker[1].outcome.is_failure()
    assert by_worker[1].outcome.reason == "Task failed"
    assert by_worker[1].actions() == ["Grep", "done"]


def test_worker_task_learn_convert_success_only():
    learn = WorkerTaskLearn()

    failed = Episode(learn_model="worker_task", outcome=Outcome.failure("test"))
    with pytest.raises(LearnError):
        learn.convert(failed)

    success = Episode(
        learn_model="worker_task",
        records=[ActionRecord(1, 0, "Check"), ActionRecord(2, 0, "Fix"), ActionRecord(3, 0, "done")],
        outcome=Outcome.success_binary(),
    )
    data = learn.convert(success)
    # `done` is a system event: not part of the prompt or the answer
    assert data.prompt == "Diagnose and resolve the issue.\nAvailable actions: Check, Fix"
    assert data.chosen == "Execute the following sequence: Check -> Fix"
    assert data.rejected is None
    assert data.format == "sft"
    assert data.episode_id == success.id
    assert data.outcome_score == 1.0
    assert data.learn_model == "worker_task"


def test_worker_decision_sequence_learn_build_episodes():
    learn = WorkerDecisionSequenceLearn(min_actions=3)
    records = [
        make_action(1, 0, "CheckStatus"),
        make_action(2, 0, "ReadLogs"),
        make_action(3, 0, "Restart"),
        make_action(4, 0, "tick_end"),  # system event, filtered
        make_action(5, 0, "done"),  # system event, filtered
    ]

    episodes = learn.build_episodes(records)

    assert len(episodes) == 1
    assert episodes[0].outcome.is_success()
    assert len(episodes[0].records) == 3
    assert episodes[0].actions() == ["CheckStatus", "ReadLogs", "Restart"]


def test_worker_decision_sequence_learn_filters_failed_actions():
    learn = WorkerDecisionSequenceLearn(min_actions=3)
    records = [
        make_action(1, 0, "CheckStatus", True),
        make_action(2, 0, "ReadLogs", False),  # failed, filtered
        make_action(3, 0, "Restart", True),
    ]
    # only 2 successful actions: no episode
    assert learn.build_episodes(records) == []


def test_worker_decision_sequence_learn_convert():
    learn = WorkerDecisionSequenceLearn(available_actions=["A", "B", "C"])
    episode = Episode(
        learn_model="worker_decision_sequence",
        records=[ActionRecord(1, 0, "A"), ActionRecord(2, 0, "B"), ActionRecord(3, 0, "C")],
        outcome=Outcome.success(1.0),
    )

    data = learn.convert(episode)

    assert "Available actions: A, B, C" in data.prompt
    assert "A -> B -> C" in data.chosen
    assert data.system == DECISION_SYSTEM_PROMPT


# ---------------------------------------------------------------------------------------------
# Worker task: boundaries
# ---------------------------------------------------------------------------------------------


def test_worker_task_min_actions_counts_done():
    learn = WorkerTaskLearn(min_actions=2)
    records = [
        make_action(1, 0, "done"),  # a 1-action task (just `done`): below min_actions, dropped
        make_action(2, 1, "A"),
        make_action(3, 1, "done"),  # 2 actions counting `done`: kept
    ]
    episodes = learn.build_episodes(records)
    assert [(ep.worker_id(), ep.actions()) for ep in episodes] == [(1, ["A", "done"])]


def test_worker_task_dropped_task_does_not_leak_into_next():
    learn = WorkerTaskLearn(min_actions=2)
    records = [make_action(1, 0, "done"), make_action(2, 0, "A"), make_action(3, 0, "done")]
    episodes = learn.build_episodes(records)
    assert [ep.actions() for ep in episodes] == [["A", "done"]]


def test_worker_task_min_actions_three():
    learn = WorkerTaskLearn(min_actions=3)
    short = [make_action(1, 0, "A"), make_action(2, 0, "done")]
    exact = [make_action(3, 1, "A"), make_action(4, 1, "B"), make_action(5, 1, "done")]
    episodes = learn.build_episodes(short + exact)
    assert [ep.worker_id() for ep in episodes] == [1]


def test_worker_task_unterminated_tail_is_not_an_episode():
    learn = WorkerTaskLearn()
    records = [
        make_action(1, 0, "A"),
        make_action(2, 0, "B"),
        make_action(3, 0, "done"),
        make_action(4, 0, "C"),
        make_action(5, 0, "D"),  # never reaches `done`
    ]
    episodes = learn.build_episodes(records)
    assert [ep.actions() for ep in episodes] == [["A", "B", "done"]]


def test_worker_task_never_terminated_gives_nothing():
    learn = WorkerTaskLearn()
    assert learn.build_episodes([make_action(1, 0, "A"), make_action(2, 0, "B")]) == []
    # judged on its own, an unterminated sequence is neither success nor failure
    assert learn.evaluate([make_action(1, 0, "A"), make_action(2, 0, "B")]).is_unknown()
    assert learn.evaluate([]).is_failure()


def test_worker_task_two_tasks_of_one_worker():
    learn = WorkerTaskLearn()
    records = [
        make_action(1, 0, "A"),
        make_action(2, 0, "done"),
        make_action(3, 0, "B"),
        make_action(4, 0, "done", False),
    ]
    episodes = learn.build_episodes(records, scenario="sc", session_id="s1")
    assert [(ep.actions(), ep.outcome.is_success()) for ep in episodes] == [
        (["A", "done"], True),
        (["B", "done"], False),
    ]
    assert all(ep.scenario == "sc" and ep.session_id == "s1" and ep.learn_model == "worker_task" for ep in episodes)
    # each episode starts at a different record, so ids differ
    assert episodes[0].id != episodes[1].id


def test_worker_task_ignores_non_action_records():
    learn = WorkerTaskLearn()
    records = [make_action(1, 0, "A"), LlmCallRecord(worker_id=0, response="x"), make_action(2, 0, "done")]
    episodes = learn.build_episodes(records)
    assert [ep.actions() for ep in episodes] == [["A", "done"]]


def test_worker_task_convert_refuses_too_few_actions():
    learn = WorkerTaskLearn(min_actions=2)
    episode = Episode(records=[ActionRecord(1, 0, "done")], outcome=Outcome.success())
    with pytest.raises(LearnError, match="Too few actions"):
        learn.convert(episode)


# ---------------------------------------------------------------------------------------------
# Decision sequence: per-worker episodes and prompts
# ---------------------------------------------------------------------------------------------


def test_decision_sequence_one_episode_per_worker():
    learn = WorkerDecisionSequenceLearn(min_actions=2)
    records = [
        make_action(1, 1, "X"),
        make_action(2, 0, "A"),
        make_action(3, 1, "Y"),
        make_action(4, 0, "B"),
        make_action(5, 2, "Z"),  # worker 2 has only one decision
    ]
    episodes = learn.build_episodes(records)
    assert [(ep.worker_id(), ep.actions()) for ep in episodes] == [(0, ["A", "B"]), (1, ["X", "Y"])]


def test_decision_sequence_evaluate_counts_only_successful_decisions():
    learn = WorkerDecisionSequenceLearn(min_actions=3)
    records = [make_action(1, 0, "A"), make_action(2, 0, "B", False), make_action(3, 0, "C"), make_action(4, 0, "done")]
    outcome = learn.evaluate(records)
    assert outcome.is_failure()
    assert outcome.reason == "Insufficient successful actions: 2 < 3"


def test_decision_sequence_convert_uses_default_actions_and_context():
    learn = WorkerDecisionSequenceLearn()
    records = [ActionRecord(1, 0, "A"), ActionRecord(2, 0, "B", context="disk full on db-1"), ActionRecord(3, 0, "C")]
    data = learn.convert(Episode(records=records, outcome=Outcome.success()))
    assert data.prompt.startswith("Current context: disk full on db-1\n")
    assert "default" not in data.prompt
    assert f"Available actions: {', '.join(DEFAULT_AVAILABLE_ACTIONS)}" in data.prompt
    assert data.chosen == "Based on the context, the optimal action sequence is: A -> B -> C"


def test_decision_prompt_without_context_says_default():
    learn = WorkerDecisionSequenceLearn(available_actions=["A"])
    records = [ActionRecord(1, 0, "A"), ActionRecord(2, 0, "A"), ActionRecord(3, 0, "A")]
    data = learn.convert(Episode(records=records, outcome=Outcome.success()))
    assert data.prompt.startswith("Current context: default\n")


def test_decision_prompt_text():
    assert decision_prompt(None, ["A", "B"]) == (
        "Current context: default\nAvailable actions: A, B\n\nWhat is the best sequence of actions to resolve this issue?"
    )
    assert decision_prompt("", ["A"]).startswith("Current context: default\n")
    assert decision_prompt("db down", ["A"]).startswith("Current context: db down\n")


def test_decision_sequence_convert_refuses_failure_and_short():
    learn = WorkerDecisionSequenceLearn(min_actions=3)
    records = [ActionRecord(1, 0, "A"), ActionRecord(2, 0, "B"), ActionRecord(3, 0, "C")]
    with pytest.raises(LearnError):
        learn.convert(Episode(records=records, outcome=Outcome.failure("no")))
    with pytest.raises(LearnError, match="Too few actions: 2 < 3"):
        learn.convert(Episode(records=records[:2], outcome=Outcome.success()))


# ---------------------------------------------------------------------------------------------
# DPO pairing
# ---------------------------------------------------------------------------------------------


def ep(group: str | None, outcome: Outcome, actions=("A", "B"), seq: int = 0, context: str | None = None) -> Episode:
    """An episode of one worker whose first record has `seq` (so ids differ per seq)."""
    records = [
        ActionRecord(i, 0, a, seq=seq + i, group_id=group, context=context if i == 0 else None)
        for i, a in enumerate([*actions, "done"])
    ]
    return Episode("worker_task", records, outcome, "sc", "s1")


def test_dpo_pairs_success_with_failure_of_same_group():
    win = ep("g1", Outcome.success(1.0), seq=0)
    loss = ep("g1", Outcome.failure("x"), seq=10)
    other_loss = ep("g2", Outcome.failure("x"), seq=20)  # no success in g2
    pairs = build_dpo_pairs([loss, other_loss, win])
    assert len(pairs) == 1
    assert pairs[0].chosen is win
    assert pairs[0].rejected is loss
    assert pairs[0].group_id == "g1"


def test_dpo_quality_gap_is_score_difference():
    win = ep("g", Outcome.success(0.9), seq=0)
    loss = ep("g", Outcome.timeout(0.25), seq=10)
    (pair,) = build_dpo_pairs([win, loss])
    assert pair.quality_gap == pytest.approx(0.9 - 0.25)


def test_dpo_timeout_counts_as_failure_unknown_does_not():
    win = ep("g", Outcome.success(), seq=0)
    timeout = ep("g", Outcome.timeout(), seq=10)
    unknown = ep("g", Outcome.unknown(), seq=20)
    pairs = build_dpo_pairs([win, unknown, timeout])
    assert [(p.chosen, p.rejected) for p in pairs] == [(win, timeout)]
    assert pairs[0].quality_gap == 1.0


def test_dpo_min_quality_gap_filters():
    win = ep("g", Outcome.success(1.0), seq=0)
    close = ep("g", Outcome.timeout(0.7), seq=10)  # gap 0.3
    assert len(build_dpo_pairs([win, close], DpoConfig(min_quality_gap=0.3))) == 1
    assert build_dpo_pairs([win, close], DpoConfig(min_quality_gap=0.31)) == []


def test_dpo_max_pairs_caps():
    eps = []
    for i, group in enumerate(["g3", "g1", "g2"]):
        eps += [ep(group, Outcome.success(), seq=100 * i), ep(group, Outcome.failure("x"), seq=100 * i + 50)]
    assert len(build_dpo_pairs(eps)) == 3
    capped = build_dpo_pairs(eps, DpoConfig(max_pairs=2))
    assert [p.group_id for p in capped] == ["g1", "g2"]  # groups in name order, cap keeps the first
    assert build_dpo_pairs(eps, DpoConfig(max_pairs=0)) == []


def test_dpo_without_reuse_uses_each_episode_once():
    wins = [ep("g", Outcome.success(), seq=s) for s in (0, 10)]
    losses = [ep("g", Outcome.failure("x"), seq=s) for s in (20, 30, 40)]
    pairs = build_dpo_pairs(wins + losses, DpoConfig(allow_reuse=False))
    assert len(pairs) == 2  # min(2 wins, 3 losses)
    assert len({p.chosen.id for p in pairs}) == 2
    assert len({p.rejected.id for p in pairs}) == 2


def test_dpo_with_reuse_gives_cross_product():
    wins = [ep("g", Outcome.success(), seq=s) for s in (0, 10)]
    losses = [ep("g", Outcome.failure("x"), seq=s) for s in (20, 30, 40)]
    pairs = build_dpo_pairs(wins + losses, DpoConfig(allow_reuse=True))
    assert len(pairs) == 6
    assert {(p.chosen.id, p.rejected.id) for p in pairs} == {(w.id, l.id) for w in wins for l in losses}


def test_dpo_best_success_meets_worst_failure_first():
    best = ep("g", Outcome.success(1.0), seq=0)
    weaker = ep("g", Outcome.success(0.6), seq=10)
    worst = ep("g", Outcome.failure("x"), seq=20)  # score 0.0
    partial = ep("g", Outcome.timeout(0.5), seq=30)
    pairs = build_dpo_pairs([weaker, partial, best, worst])
    assert [(p.chosen, p.rejected) for p in pairs] == [(best, worst), (weaker, partial)]
    assert [p.quality_gap for p in pairs] == pytest.approx([1.0, 0.1])


def test_dpo_pairs_do_not_depend_on_input_order():
    eps = [ep("g", Outcome.success(), seq=s) for s in (0, 10)] + [ep("g", Outcome.failure("x"), seq=s) for s in (20, 30)]
    forward = [(p.chosen.id, p.rejected.id) for p in build_dpo_pairs(eps)]
    backward = [(p.chosen.id, p.rejected.id) for p in build_dpo_pairs(list(reversed(eps)))]
    assert forward == backward


def test_dpo_skips_episodes_without_group():
    win = ep(None, Outcome.success(), seq=0)
    loss = ep(None, Outcome.failure("x"), seq=10)
    assert build_dpo_pairs([win, loss]) == []


def test_dpo_explicit_group_id_overrides_records():
    win = ep(None, Outcome.success(), seq=0)
    loss = ep("other", Outcome.failure("x"), seq=10)
    win.group_id = "g"
    loss.group_id = "g"
    (pair,) = build_dpo_pairs([win, loss])
    assert pair.group_id == "g"


def test_convert_dpo_pair():
    win = ep("g", Outcome.success(0.8), actions=("A", "B"), seq=0, context="db down")
    loss = ep("g", Outcome.failure("x"), actions=("X", "Y"), seq=10)
    (pair,) = build_dpo_pairs([win, loss])
    data = convert_dpo_pair(pair, ["A", "B", "X", "Y"])
    assert data.format == "dpo"
    assert data.prompt.startswith("Current context: db down\n")
    assert "Available actions: A, B, X, Y" in data.prompt
    assert data.chosen == "Based on the context, the optimal action sequence is: A -> B"  # `done` left out
    assert data.rejected == "Based on the context, the optimal action sequence is: X -> Y"
    assert data.outcome_score == pytest.approx(0.8)
    assert data.episode_id == win.id
    assert data.system == DECISION_SYSTEM_PROMPT


def test_convert_dpo_pair_refuses_episode_without_decisions():
    win = ep("g", Outcome.success(), actions=("A",), seq=0)
    loss = ep("g", Outcome.failure("x"), actions=(), seq=10)  # only `done`
    (pair,) = build_dpo_pairs([win, loss])
    with pytest.raises(LearnError, match="group g"):
        convert_dpo_pair(pair, ["A"])
