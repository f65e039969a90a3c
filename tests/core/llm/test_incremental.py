"""Incremental training decisions: where a new adapter starts, and which rows it trains on."""

from __future__ import annotations

import random

import pytest

from swarm_learn_assets.core.llm.incremental import choose_init, select_training_rows

BASE = {"id": "org/model", "revision": "aaaa1111bbbb2222"}
LORA = {"rank": 16, "alpha": 32.0, "target_modules": ["q_proj", "v_proj"], "trainable_layers": 8, "epochs": 2}


def lineage(**changes) -> dict:
    parent = {"base_model": {**BASE, "path": "/models/x"}, "config": dict(LORA), "format": "sft",
              "train_sessions": ["s0001", "s0002"]}
    parent.update(changes)
    return parent


def choose(requested="applied", parent=None, version="v0003", base=BASE, lora=LORA, train_format="sft",
           sessions=("s0001", "s0002", "s0004")):
    return choose_init(requested, version if parent is not None else None, parent, base, lora, train_format,
                       list(sessions))


def test_continues_from_the_applied_adapter_on_the_sessions_it_has_not_seen():
    choice = choose(parent=lineage())
    assert (choice.init_from, choice.parent) == ("applied", "v0003")
    assert choice.seen_sessions == ("s0001", "s0002")
    assert "continuing from the applied v0003 on 1 new sessions" in choice.reason
    assert choice.to_json() == {"init_from": "applied", "parent": "v0003", "reason": choice.reason}


def test_the_same_shape_written_differently_still_continues():
    # JSON keeps 32.0 as 32, and the target modules' order is not part of the shape
    parent = lineage(config={**LORA, "alpha": 32, "target_modules": ["v_proj", "q_proj"], "epochs": 5})
    assert choose(parent=parent).init_from == "applied"


def test_base_requested_or_nothing_applied_starts_from_the_base():
    assert choose("base", parent=lineage()).init_from == "base"
    assert "requested" in choose("base", parent=lineage()).reason
    fresh = choose(parent=None)
    assert (fresh.init_from, fresh.parent) == ("base", None) and "no adapter is applied" in fresh.reason


@pytest.mark.parametrize("changed", [
    {"id": "org/other-model", "revision": BASE["revision"]},
    {"id": BASE["id"], "revision": "cccc3333dddd4444"},
])
def test_a_base_model_change_forces_base_with_the_reason(changed):
    choice = choose(parent=lineage(), base=changed)
    assert (choice.init_from, choice.parent, choice.seen_sessions) == ("base", None, ())
    assert "base model changed since v0003" in choice.reason
    assert "aaaa1111bbbb" in choice.reason and changed["revision"][:12] in choice.reason


def test_a_lora_shape_change_forces_base_and_names_the_change():
    choice = choose(parent=lineage(), lora={**LORA, "rank": 8, "trainable_layers": 0})
    assert choice.init_from == "base"
    assert "rank 16 → 8" in choice.reason and "trainable_layers 8 → 0" in choice.reason


def test_no_new_session_retrains_from_the_base():
    choice = choose(parent=lineage(), sessions=("s0001", "s0002"))
    assert choice.init_from == "base" and "no training sessions since v0003" in choice.reason


def test_dpo_after_an_sft_parent_continues_on_every_session():
    choice = choose(parent=lineage(), train_format="dpo", sessions=("s0001", "s0002"))
    assert (choice.init_from, choice.seen_sessions) == ("applied", ())
    assert "all 2 sessions" in choice.reason
    # a parent without a recorded format was trained before DPO existed: SFT
    legacy = {k: v for k, v in lineage().items() if k != "format"}
    assert choose(parent=legacy, train_format="sft").seen_sessions == ("s0001", "s0002")


def test_unknown_choices_are_refused():
    with pytest.raises(ValueError, match="init_from 'parent'"):
        choose("parent")
    with pytest.raises(ValueError, match="format 'ppo'"):
        choose(train_format="ppo")


def rows_of(session: str, n: int) -> list[dict]:
    return [{"session_id": session, "source": "task_decision", "system": "sys",
             "prompt": f"Current context: c{i} on {session}\nAvailable actions: A, B",
             "chosen": "Based on the context, the optimal action sequence is: A -> B"} for i in range(n)]


ROWS = rows_of("s0001", 3) + rows_of("s0002", 3) + rows_of("s0003", 2)


def test_new_sessions_plus_a_replay_share_of_older_rows():
    picked = select_training_rows(ROWS, ["s0001", "s0002"], replay_fraction=0.6)
    new = [r for r in picked.rows if r["session_id"] == "s0003"]
    replayed = [r for r in picked.rows if r["session_id"] != "s0003"]
    # 2 new rows; 0.6 of the result replayed: 2 × 0.6 / 0.4 = 3 older rows
    assert (picked.new_rows, picked.replay_rows, len(new), len(replayed)) == (2, 3, 2, 3)
    again = select_training_rows(random.Random(1).sample(ROWS, len(ROWS)), ["s0001", "s0002"], 0.6)
    assert sorted(r["prompt"] for r in again.rows) == sorted(r["prompt"] for r in picked.rows)


def test_replay_is_bounded_by_history_and_zero_replays_nothing():
    assert select_training_rows(ROWS, ["s0001", "s0002"], 0.9).replay_rows == 6  # wants 18, has 6
    none = select_training_rows(ROWS, ["s0001", "s0002"], 0.0)
    assert (none.new_rows, none.replay_rows) == (2, 0) and {r["session_id"] for r in none.rows} == {"s0003"}


def test_without_a_parent_every_row_trains_and_the_cap_applies():
    assert select_training_rows(ROWS, [], 0.5).rows == ROWS
    capped = select_training_rows(ROWS, [], 0.5, max_rows=5)
    assert (capped.new_rows, capped.replay_rows, len(capped.rows)) == (5, 0, 5)


def test_the_cap_splits_between_new_and_replayed_rows():
    rows = ROWS + rows_of("s0004", 6)
    picked = select_training_rows(rows, ["s0001", "s0002"], 0.5, max_rows=4)
    assert (picked.new_rows, picked.replay_rows) == (2, 2)
    assert all(r["session_id"] in ("s0003", "s0004") for r in picked.rows[:2])


def test_a_replay_fraction_of_one_or_more_is_refused():
    with pytest.raises(ValueError, match="replay_fraction 1.0"):
        select_training_rows(ROWS, ["s0001"], 1.0)
