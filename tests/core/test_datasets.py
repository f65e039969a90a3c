"""SFT/DPO rows from episodes: prompts, split stability, duplicates, chat format."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.datasets import (
    EVAL,
    TRAIN,
    DatasetConfig,
    build_training_rows,
    chat_format_problems,
    episode_from_row,
    response_actions,
    split_of,
)
from swarm_learn_assets.core.layout import DataLayout
from swarm_learn_assets.core.learn_models import DECISION_SYSTEM_PROMPT, WORKER_DECISION_SEQUENCE, WORKER_TASK
from swarm_learn_assets.core.stages import process_sessions


@pytest.fixture(scope="module")
def episode_rows(tmp_path_factory, small_landing):
    root = tmp_path_factory.mktemp("ds")
    shutil.copytree(small_landing / "landing", root / "landing")
    layout = DataLayout(root)
    keys = [f.key for f in layout.scan_landing()[0] if f.scenario == layout.scan_landing()[0][0].scenario]
    process_sessions(layout, keys)
    return [r for k in keys for r in pq.read_table(layout.episodes(k)).to_pylist()]


def test_split_is_a_stable_function_of_the_session():
    ids = [f"s{i:03d}" for i in range(400)]
    splits = [split_of(s, 0.25) for s in ids]
    assert splits == [split_of(s, 0.25) for s in reversed(ids)][::-1]
    assert 60 < splits.count(EVAL) < 140  # about a quarter
    assert {split_of(s, 0.0) for s in ids} == {TRAIN} and {split_of(s, 1.0) for s in ids} == {EVAL}


def test_sft_rows_are_the_reference_training_data_of_successful_episodes(episode_rows):
    rows = build_training_rows(episode_rows, DatasetConfig(eval_fraction=0.5))
    sft = rows.sft[TRAIN] + rows.sft[EVAL]
    successes = {r["episode_id"] for r in episode_rows if r["outcome"] == "success"}
    assert sft and {r["episode_id"] for r in sft} <= successes
    assert {r["learn_model"] for r in sft} == {WORKER_TASK, WORKER_DECISION_SEQUENCE}
    assert all(r["format"] == "sft" and r["rejected"] is None for r in sft)
    assert chat_format_problems(sft) == []
    decision = next(r for r in sft if r["learn_model"] == WORKER_DECISION_SEQUENCE)
    source = next(e for e in episode_rows if e["episode_id"] == decision["episode_id"])
    assert decision["system"] == DECISION_SYSTEM_PROMPT
    assert f"Current context: {source['context']}" in decision["prompt"]
    assert response_actions(decision["chosen"]) == [a for a in source["actions"] if a not in ("tick_start", "tick_end", "done")]
    assert decision["messages"][-1] == {"role": "assistant", "content": decision["chosen"]}


def test_rows_of_a_session_stay_in_its_split(episode_rows):
    rows = build_training_rows(episode_rows, DatasetConfig(eval_fraction=0.5))
    for part in (TRAIN, EVAL):
        sessions = rows.eval_sessions if part == EVAL else rows.train_sessions
        assert {r["session_id"] for r in rows.sft[part]} <= set(sessions)
    assert set(rows.eval_sessions).isdisjoint(rows.train_sessions)
    # Dropping the other sessions does not move a session between splits.
    one = rows.eval_sessions[0] if rows.eval_sessions else rows.train_sessions[0]
    alone = build_training_rows([r for r in episode_rows if r["session_id"] == one], DatasetConfig(eval_fraction=0.5))
    assert (one in alone.eval_sessions) == (one in rows.eval_sessions)


def test_dpo_rows_pair_a_success_with_a_failure_of_the_same_group(episode_rows):
    rows = build_training_rows(episode_rows, DatasetConfig(eval_fraction=0.0))
    dpo = rows.dpo[TRAIN]
    assert dpo, "the simulator repeats tasks under a group_id, so pairs must exist"
    by_id = {r["episode_id"]: r for r in episode_rows}
    for row in dpo:
        chosen = by_id[row["episode_id"]]
        assert chosen["outcome"] == "success" and row["format"] == "dpo"
        assert row["chosen"] != row["rejected"] and "messages" not in row


def test_exact_duplicates_are_dropped_and_counted(episode_rows):
    doubled = episode_rows + [{**r, "episode_id": r["episode_id"] + "x"} for r in episode_rows]
    once = build_training_rows(episode_rows, DatasetConfig(eval_fraction=0.0))
    twice = build_training_rows(doubled, DatasetConfig(eval_fraction=0.0))
    assert len(twice.sft[TRAIN]) == len(once.sft[TRAIN])
    # every row of the copy is a duplicate, plus twice the duplicates the original already had
    assert twice.duplicates["sft/train"] == len(once.sft[TRAIN]) + 2 * once.duplicates["sft/train"]


def test_chat_format_problems_name_the_row():
    good = {"episode_id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]}
    empty = {"episode_id": "b", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}
    wrong = {"episode_id": "c", "messages": [{"role": "assistant", "content": "x"}, {"role": "assistant", "content": "y"}]}
    problems = chat_format_problems([good, empty, wrong])
    assert len(problems) == 2 and "row 1 (b)" in problems[0] and "row 2 (c)" in problems[1]


@pytest.mark.parametrize("text, expected", [
    ("Based on the context, the optimal action sequence is: A -> B -> C", ["A", "B", "C"]),
    ("Execute the following sequence: Check", ["Check"]),
    ("I would first check the logs", None),
    ("sequence is: A -> -> B", None),
])
def test_response_actions(text, expected):
    assert response_actions(text) == expected


def test_episode_from_row_round_trips_the_learn_model_fields(episode_rows):
    row = next(r for r in episode_rows if r["learn_model"] == WORKER_TASK)
    episode = episode_from_row(row)
    assert episode.id == row["episode_id"] and episode.actions() == row["actions"]
    assert episode.context() == row["context"] and episode.get_group_id() == row["group_id"]
