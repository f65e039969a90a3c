"""Training rows from episodes and decide calls: sources, consensus labels, linking, splits, the
unseen-context flag, eval sampling, chat format."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.episodes.learn_models import WORKER_DECISION_SEQUENCE, WORKER_TASK
from swarm_learn_assets.core.llm.dataset_rows import (
    EVAL,
    LLM_DECISION,
    TASK_DECISION,
    TASK_STEP,
    TRAIN,
    DatasetConfig,
    build_training_rows,
    chat_format_problems,
    consensus,
    episode_from_row,
    link_decide_calls,
    sample_rows,
    split_of,
)
from swarm_learn_assets.core.llm.prompts import DECISION_SYSTEM_PROMPT, parse_decision, parse_sequence
from swarm_learn_assets.core.stages.session_batch import process_sessions
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.core.storage.readers import read_decision_records, read_session_actions

SYSTEM_EVENTS = ("tick_start", "tick_end", "done")


@pytest.fixture(scope="module")
def scenario_data(tmp_path_factory, small_landing):
    root = tmp_path_factory.mktemp("ds")
    shutil.copytree(small_landing / "landing", root / "landing")
    layout = DataLayout(root)
    files = layout.scan_landing()[0]
    scenario = files[0].scenario
    keys = [f.key for f in files if f.scenario == scenario]
    process_sessions(layout, keys)
    episodes = [r for k in keys for r in pq.read_table(layout.episodes(k)).to_pylist()]
    sessions = sorted({e["session_id"] for e in episodes})
    return (episodes, read_decision_records(layout, scenario, sessions),
            read_session_actions(layout, scenario, sessions))


def _build(scenario_data, eval_fraction=0.5):
    episodes, records, actions = scenario_data
    return build_training_rows(episodes, DatasetConfig(eval_fraction=eval_fraction), records, actions)


def test_split_is_a_stable_function_of_the_session():
    ids = [f"s{i:03d}" for i in range(400)]
    splits = [split_of(s, 0.25) for s in ids]
    assert splits == [split_of(s, 0.25) for s in reversed(ids)][::-1]
    assert 60 < splits.count(EVAL) < 140  # about a quarter
    assert {split_of(s, 0.0) for s in ids} == {TRAIN} and {split_of(s, 1.0) for s in ids} == {EVAL}


def test_every_source_is_present_and_chat_formatted(scenario_data):
    rows = _build(scenario_data)
    sft = rows.sft[TRAIN] + rows.sft[EVAL]
    assert {r["source"] for r in sft} == {TASK_DECISION, LLM_DECISION, WORKER_TASK, WORKER_DECISION_SEQUENCE}
    assert all(r["format"] == "sft" and r["rejected"] is None for r in sft)
    assert chat_format_problems(sft) == []
    assert all(r["messages"][-1] == {"role": "assistant", "content": r["chosen"]} for r in sft)


def test_task_decision_rows_are_a_successful_tasks_context_and_order(scenario_data):
    episodes, _, actions = scenario_data
    rows = _build(scenario_data)
    by_id = {e["episode_id"]: e for e in episodes}
    task_rows = [r for r in rows.sft[TRAIN] + rows.sft[EVAL] if r["source"] == TASK_DECISION]
    assert task_rows
    for row in task_rows:
        episode = by_id[row["episode_id"]]
        assert episode["learn_model"] == WORKER_TASK and episode["outcome"] == "success"
        assert row["system"] == DECISION_SYSTEM_PROMPT
        assert row["prompt"].startswith(f"Current context: {episode['context']}\n")
        # the session's dependency graph lists the actions, in its order; the answer is not in the prompt's order
        assert f"Available actions: {', '.join(actions[episode['session_id']])}\n" in row["prompt"]
        assert parse_sequence(row["chosen"]) == [a for a in episode["actions"] if a not in SYSTEM_EVENTS]
        assert row["context"] == episode["context"]


def test_llm_decision_rows_are_recorded_calls_of_successful_tasks(scenario_data):
    episodes, records, _ = scenario_data
    rows = _build(scenario_data)
    by_id = {e["episode_id"]: e for e in episodes}
    calls = {(r["session_id"], r["prompt"], r["response"]) for r in records if r["kind"] == "llm_call"}
    decided = [r for r in rows.sft[TRAIN] + rows.sft[EVAL] if r["source"] == LLM_DECISION]
    assert decided
    for row in decided:
        assert by_id[row["episode_id"]]["outcome"] == "success"
        assert (row["session_id"], row["prompt"], row["chosen"]) in calls  # as the swarm sent and got it
        assert row["system"] is None and [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert parse_decision(row["chosen"]).target in row["prompt"]


def _call(session, worker, seq, response='{"action": "A"}', error=None):
    return {"session_id": session, "kind": "llm_call", "seq": seq, "worker_id": worker, "call_type": "decide",
            "prompt": f"p{seq}", "response": response, "error": error}


def _action(session, worker, seq):
    return {"session_id": session, "kind": "action", "seq": seq, "worker_id": worker, "call_type": None,
            "prompt": None, "response": None, "error": None}


def test_a_decide_call_belongs_to_the_task_of_its_workers_next_action():
    records = [
        _action("s1", 0, 1), _action("s1", 1, 2),
        _call("s1", 0, 3), _call("s1", 1, 4),        # interleaved workers
        _action("s1", 1, 5), _action("s1", 0, 6),    # worker 1 acts first, then worker 0
        _call("s1", 0, 7, error="connection reset"),  # errored: left out
        _call("s1", 0, 8, response=""),               # no answer: left out
        _action("s1", 0, 9),
        _call("s1", 1, 10),                           # no following action of worker 1: left out
        _action("s1", 0, 11),
        _call("s2", 0, 3), _action("s2", 0, 4),       # same seqs, other session
    ]
    episodes = [
        {"episode_id": "e0", "session_id": "s1", "record_seqs": [1, 6, 9]},
        {"episode_id": "e1", "session_id": "s1", "record_seqs": [2, 5]},
        {"episode_id": "e2", "session_id": "s2", "record_seqs": [4]},
    ]
    linked = sorted((call["session_id"], call["seq"], episode["episode_id"])
                    for call, episode in link_decide_calls(list(reversed(records)), episodes))
    assert linked == [("s1", 3, "e0"), ("s1", 4, "e1"), ("s2", 3, "e2")]
    # a next action that is in no (successful) episode links to nothing, not to a later episode
    assert link_decide_calls(records, [{"episode_id": "e", "session_id": "s1", "record_seqs": [11]}]) == []


def _row(prompt, chosen, score=1.0, source=TASK_DECISION, system="sys", episode="e"):
    return {"source": source, "system": system, "prompt": prompt, "chosen": chosen, "outcome_score": score,
            "episode_id": episode}


def test_consensus_keeps_the_most_frequent_answer_with_count_and_agreement():
    rows = [_row("p", "A", episode="1"), _row("p", "B", episode="2"), _row("p", "A", episode="3"),
            _row("q", "C", episode="4"), _row("p", "A", source=LLM_DECISION, episode="5")]
    out, folded = consensus(rows)
    assert folded == 2
    assert [(r["source"], r["prompt"], r["chosen"], r["count"], r["agreement"], r["episode_id"]) for r in out] == [
        (TASK_DECISION, "p", "A", 2, pytest.approx(2 / 3), "1"),
        (TASK_DECISION, "q", "C", 1, 1.0, "4"),
        (LLM_DECISION, "p", "A", 1, 1.0, "5"),   # another source is another vote
    ]


def test_consensus_ties_go_to_the_higher_mean_score_then_the_lexically_first_answer():
    by_score, _ = consensus([_row("p", "A", 0.5), _row("p", "B", 1.0), _row("p", "A", 0.5), _row("p", "B", 1.0)])
    assert by_score[0]["chosen"] == "B" and by_score[0]["agreement"] == 0.5
    lexical, _ = consensus([_row("p", "Z"), _row("p", "M")])
    assert lexical[0]["chosen"] == "M" and lexical[0]["count"] == 1


def test_rows_of_a_session_stay_in_its_split(scenario_data):
    episodes, records, actions = scenario_data
    rows = _build(scenario_data)
    for part in (TRAIN, EVAL):
        sessions = rows.eval_sessions if part == EVAL else rows.train_sessions
        assert {r["session_id"] for r in rows.sft[part]} <= set(sessions)
    assert set(rows.eval_sessions).isdisjoint(rows.train_sessions)
    one = rows.eval_sessions[0] if rows.eval_sessions else rows.train_sessions[0]
    alone = build_training_rows([r for r in episodes if r["session_id"] == one], DatasetConfig(eval_fraction=0.5),
                                records, actions)
    assert (one in alone.eval_sessions) == (one in rows.eval_sessions)


def test_unseen_context_flags_eval_rows_whose_context_no_train_row_has(scenario_data):
    rows = _build(scenario_data)
    train_contexts = {r["context"] for r in rows.sft[TRAIN]}
    assert rows.sft[EVAL], "the fixture holds eval sessions"
    for row in rows.sft[EVAL]:
        assert row["unseen_context"] == (row["context"] not in train_contexts)
    assert any(r["unseen_context"] for r in rows.sft[EVAL]), "hosts are drawn per task: some contexts are new"
    assert not any(r["unseen_context"] for r in rows.sft[TRAIN])


def test_doubled_episodes_only_raise_the_counts(scenario_data):
    episodes, records, actions = scenario_data
    once = build_training_rows(episodes, DatasetConfig(eval_fraction=0.0), records, actions)
    doubled = episodes + [{**r, "episode_id": r["episode_id"] + "x", "session_id": r["session_id"]} for r in episodes]
    twice = build_training_rows(doubled, DatasetConfig(eval_fraction=0.0), records, actions)
    task = lambda rows: [r for r in rows.sft[TRAIN] if r["source"] == TASK_DECISION]  # noqa: E731
    assert [r["prompt"] for r in task(twice)] == [r["prompt"] for r in task(once)]
    assert [r["count"] for r in task(twice)] == [2 * r["count"] for r in task(once)]


def test_dpo_rows_pair_a_success_with_a_failure_of_the_same_group(scenario_data):
    episodes, records, actions = scenario_data
    rows = build_training_rows(episodes, DatasetConfig(eval_fraction=0.0), records, actions)
    dpo = rows.dpo[TRAIN]
    assert dpo, "the simulator repeats task families under a group_id, so pairs must exist"
    by_id = {r["episode_id"]: r for r in episodes}
    for row in dpo:
        chosen = by_id[row["episode_id"]]
        assert chosen["outcome"] == "success" and row["format"] == "dpo"
        assert row["chosen"] != row["rejected"] and "messages" not in row
        assert row["prompt"].startswith(f"Current context: {chosen['context']}\n")


def test_eval_sample_is_shared_between_sources_and_chosen_by_prompt_hash():
    rows = [_row(f"task {i}", "A", source=TASK_DECISION) for i in range(30)]
    rows += [_row(f"call {i}", "A", source=LLM_DECISION) for i in range(5)]
    sample = sample_rows(rows, 12)
    assert len(sample) == 12
    assert sum(r["source"] == LLM_DECISION for r in sample) == 5       # the small source keeps all its rows
    assert [r["prompt"] for r in sample] != [f"task {i}" for i in range(7)]  # not the first N
    assert sample == sample_rows(list(reversed(rows)), 12)[::-1] or \
        {r["prompt"] for r in sample} == {r["prompt"] for r in sample_rows(list(reversed(rows)), 12)}
    assert sample_rows(rows, 100) == rows


def _task_episode(episode_id, context, outcome="success", session="s1"):
    """A worker_task episode row: CheckStatus, ReadLogs, FreeDisk, then the `done` system event."""
    return {"episode_id": episode_id, "session_id": session, "scenario": "db", "learn_model": WORKER_TASK,
            "outcome": outcome, "score": 1.0 if outcome == "success" else 0.0,
            "reason": None if outcome == "success" else "task failed", "worker_id": 0,
            "actions": ["CheckStatus", "ReadLogs", "FreeDisk", "done"], "record_seqs": [1, 4, 7, 9],
            "task_id": f"t-{episode_id}", "group_id": "g-db", "context": context, "selection_logic": "ucb1"}


def _target_records(session, host):
    rows = [{**_action(session, 0, seq), "target": host} for seq in (1, 4, 7)]
    return rows + [{**_action(session, 0, 9), "target": None}]


def test_task_step_rows_ask_the_decide_question_of_every_step_of_a_successful_task():
    episodes = [_task_episode("e1", "disk full on db-3"), _task_episode("e2", "disk full on db-4", "failure", "s2")]
    records = _target_records("s1", "db-3") + _target_records("s2", "db-4")
    actions = {"s1": ["CheckStatus", "ReadLogs", "FreeDisk", "Restart"], "s2": ["CheckStatus", "ReadLogs", "FreeDisk", "Restart"]}
    rows = build_training_rows(episodes, DatasetConfig(eval_fraction=0.0, task_steps=True), records, actions)
    steps = [r for r in rows.sft[TRAIN] if r["source"] == TASK_STEP]
    head = "Current context: disk full on db-3\nAvailable actions: CheckStatus, ReadLogs, FreeDisk, Restart\n"
    tail = "\nChoose the next action. Answer as JSON with keys action and target."
    assert [(r["prompt"], r["chosen"]) for r in steps] == [
        (head + "Previous action: none" + tail, '{"action": "CheckStatus", "target": "db-3"}'),
        (head + "Previous action: CheckStatus" + tail, '{"action": "ReadLogs", "target": "db-3"}'),
        (head + "Previous action: ReadLogs" + tail, '{"action": "FreeDisk", "target": "db-3"}'),
    ]  # the failed task on db-4 gives none, and `done` is not a decision
    assert all(r["system"] is None and r["episode_id"] == "e1" and r["context"] == "disk full on db-3" for r in steps)
    assert [m["role"] for m in steps[0]["messages"]] == ["user", "assistant"]
    # opt-in: the default dataset is what it was without the source
    default = build_training_rows(episodes, DatasetConfig(eval_fraction=0.0), records, actions)
    assert not [r for r in default.sft[TRAIN] if r["source"] == TASK_STEP]
    assert {r["source"] for r in default.sft[TRAIN]} == {r["source"] for r in rows.sft[TRAIN]} - {TASK_STEP}


def test_task_step_rows_of_the_same_step_reach_consensus():
    episodes = [_task_episode("e1", "disk full on db-3"), _task_episode("e2", "disk full on db-3", session="s2")]
    records = _target_records("s1", "db-3") + _target_records("s2", "db-3")
    rows = build_training_rows(episodes, DatasetConfig(eval_fraction=0.0, task_steps=True), records)
    steps = [r for r in rows.sft[TRAIN] if r["source"] == TASK_STEP]
    assert len(steps) == 3 and [r["count"] for r in steps] == [2, 2, 2]


def _decide(host, previous, action):
    prompt = f"Current context: deploy of {host}\nAvailable actions: A, B\nPrevious action: {previous}\nChoose."
    return _row(prompt, f'{{"action": "{action}", "target": "{host}"}}', source=TASK_STEP, system=None)


def test_a_spread_training_sample_keeps_the_rows_of_a_rare_step():
    common = [_decide(f"web-{i}", "CheckStatus", "ReadLogs") for i in range(40)]
    rare = [_decide("billing-1", "CheckStatus", "Promote"), _decide("billing-2", "CheckStatus", "Promote")]
    rows = common[:20] + rare + common[20:]
    plain = sample_rows(rows, 6)
    assert not all(r in plain for r in rare)  # by hash alone, this rare step loses rows
    spread = sample_rows(rows, 6, spread=True)
    assert len(spread) == 6 and all(r in spread for r in rare)
    assert [r for r in spread if r not in rare] == [r for r in rows if r in spread and r not in rare]  # input order
    assert sample_rows(rows, 100, spread=True) == rows


def test_chat_format_problems_name_the_row():
    good = {"episode_id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]}
    empty = {"episode_id": "b", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}
    wrong = {"episode_id": "c", "messages": [{"role": "assistant", "content": "x"}, {"role": "assistant", "content": "y"}]}
    alone = {"episode_id": "d", "messages": [{"role": "assistant", "content": "x"}]}
    problems = chat_format_problems([good, empty, wrong, alone])
    assert len(problems) == 3 and "row 1 (b)" in problems[0] and "row 2 (c)" in problems[1]
    assert "row 3 (d)" in problems[2]
    odd = [{"episode_id": "e", "messages": ["hello", {"role": "assistant", "content": "x"}]},
           {"episode_id": "f", "messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}]},
           {"episode_id": "g", "messages": "user: hi"}]
    problems = chat_format_problems(odd)  # reasons, not an AttributeError
    assert [p.split(":")[0] for p in problems] == ["row 0 (e)", "row 1 (f)", "row 2 (g)"]
    assert all("expected messages as a list of {role, content: text}" in p for p in problems)


def test_episode_from_row_round_trips_the_learn_model_fields(scenario_data):
    row = next(r for r in scenario_data[0] if r["learn_model"] == WORKER_TASK)
    episode = episode_from_row(row)
    assert episode.id == row["episode_id"] and episode.actions() == row["actions"]
    assert episode.context() == row["context"] and episode.get_group_id() == row["group_id"]
