"""Sessions decided by a policy: appended, recorded as llm_call rows, judged by the hidden order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.contract.validation import normalise, validate
from swarm_learn_assets.core.llm.policy import DecideAnswer, OfflinePolicy
from swarm_learn_assets.core.llm.prompts import decide_prompt, decide_response
from swarm_learn_assets.simulate import simulate
from swarm_learn_assets.simulate.policy_run import INVALID_ANSWER, simulate_with_policy
from swarm_learn_assets.simulate.swarm import CATALOGUE

ORDERS = {f.template.split("{host}")[0]: f.order for spec in CATALOGUE for f in spec.families}


def _order_of(context: str) -> tuple[str, ...]:
    return next(order for prefix, order in ORDERS.items() if context.startswith(prefix))


class Oracle:
    """Knows every family's hidden order: the policy a perfect adapter would be."""

    name, lora, model, endpoint, records_llm_calls = "oracle", "v0007", "oracle-model", "test", True

    def __init__(self) -> None:
        self.batches: list[int] = []

    def decide(self, requests):
        self.batches.append(len(requests))
        answers = []
        for r in requests:
            order = _order_of(r.context)
            action = order[0] if r.previous is None else order[order.index(r.previous) + 1]
            answers.append(DecideAnswer(decide_response(action, r.target), 3))
        return answers


class Babbler(Oracle):
    name, lora = "babbler", None

    def decide(self, requests):
        return [DecideAnswer("I am not sure what to do.", 2) for _ in requests]


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _tasks(rows: list[dict]) -> dict[str, str]:
    """task_id → context, the task a worker was given."""
    return {r["task_id"]: r["context"] for r in rows if r["kind"] == "action"}


def test_a_perfect_policy_succeeds_every_task_and_every_decision_is_an_llm_call(tmp_path: Path):
    oracle = Oracle()
    sessions = simulate_with_policy(tmp_path, lambda s: oracle, scenarios=3, sessions=2, seed=3)
    assert [s.path.name for s in sessions] == ["s0001.parquet", "s0002.parquet"] * 3
    assert all(s.tasks == 12 and s.succeeded == 12 for s in sessions)
    assert max(oracle.batches) == 4  # the workers of a tick are asked together
    rows = _rows(sessions[0].path)
    calls = [r for r in rows if r["kind"] == "llm_call"]
    actions = [r for r in rows if r["kind"] == "action" and r["action"] not in ("tick_start", "tick_end", "done")]
    assert len(calls) == len(actions) == sessions[0].decisions
    for call, action in zip(calls, actions):
        assert call["call_type"] == "decide" and call["model"] == "oracle-model" and call["latency_ms"] == 3
        assert call["prompt"] == decide_prompt(action["context"], CATALOGUE[0].actions, action["previous_action"])
        assert action["lora"] == "v0007" and action["success"] and action["target"] in call["response"]
    done = [r for r in rows if r["action"] == "done"]
    assert len(done) == 12 and all(r["success"] for r in done)
    result = validate([normalise(pq.read_table(sessions[0].path), "troubleshooting/s0001", "test")])
    assert result.rejected.num_rows == 0  # what a policy writes meets the landing contract


def test_an_unparseable_answer_is_a_wrong_action_and_fails_the_task(tmp_path: Path):
    sessions = simulate_with_policy(tmp_path, lambda s: Babbler(), scenarios=1, sessions=1, seed=3)
    rows = _rows(sessions[0].path)
    assert sessions[0].succeeded == 0 and sessions[0].tasks == 12
    assert not [r for r in rows if r["kind"] == "action" and r["action"] not in ("tick_start", "tick_end", "done")]
    done = [r for r in rows if r["action"] == "done"]
    assert len(done) == 12 and {r["error"] for r in done} == {INVALID_ANSWER} and not any(r["success"] for r in done)
    assert all(r["lora"] is None for r in rows)


def test_policies_face_the_same_tasks_on_the_same_seed(tmp_path: Path):
    a = simulate_with_policy(tmp_path / "a", lambda s: Oracle(), scenarios=1, sessions=2, seed=11)
    b = simulate_with_policy(tmp_path / "b", lambda s: Babbler(), scenarios=1, sessions=2, seed=11)
    for x, y in zip(a, b):
        assert _tasks(_rows(x.path)) == _tasks(_rows(y.path))
    c = simulate_with_policy(tmp_path / "c", lambda s: Babbler(), scenarios=1, sessions=1, seed=12)
    assert _tasks(_rows(c[0].path)) != _tasks(_rows(b[0].path))


def test_policy_sessions_are_appended_after_the_landed_ones_and_never_overwrite(tmp_path: Path):
    landed = simulate(tmp_path, scenarios=1, sessions=3, seed=7)
    before = {p: p.read_bytes() for p in landed}
    added = simulate_with_policy(tmp_path, lambda s: Oracle(), scenarios=1, sessions=2, seed=7)
    assert [s.path.name for s in added] == ["s0004.parquet", "s0005.parquet"]
    assert all(p.read_bytes() == data for p, data in before.items())
    first_new = min(r["timestamp_ms"] for r in _rows(added[0].path))
    assert first_new > max(r["timestamp_ms"] for r in _rows(landed[-1]))  # ids and times keep their order
    again = simulate_with_policy(tmp_path, lambda s: Oracle(), scenarios=1, sessions=1, seed=7)
    assert again[0].path.name == "s0006.parquet"


def test_writing_over_a_landed_file_is_refused(tmp_path: Path):
    from swarm_learn_assets.core.storage.atomic import write_parquet

    path = simulate(tmp_path, scenarios=1, sessions=1, seed=7)[0]
    data = path.read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_parquet(pq.read_table(path).slice(0, 1), path, overwrite=False)
    assert path.read_bytes() == data and [p.name for p in path.parent.iterdir()] == [path.name]


def test_the_offline_policy_follows_the_learned_order(tmp_path: Path):
    """A scenario model that learned one family's order makes the offline policy solve that family."""
    spec = CATALOGUE[2]  # db-recovery: the first family is `disk full`: CheckStatus ReadLogs FreeDisk
    order = spec.families[0].order
    model = {"recommended_paths": [{"actions": list(order), "success_rate": 1.0, "count": 10}],
             "action_order": {"discover": [order[0]], "not_discover": []}}
    offline = OfflinePolicy(model)
    sessions = simulate_with_policy(tmp_path, lambda s: offline, scenarios=3, sessions=1, seed=5)
    rows = _rows(sessions[2].path)
    done = [r for r in rows if r["action"] == "done"]
    for r in done:
        assert r["success"] == r["context"].startswith("disk full on")
    assert any(r["success"] for r in done) and not [r for r in rows if r["kind"] == "llm_call"]


def test_a_scripted_run_is_byte_identical_to_before_policies_existed(tmp_path: Path):
    """The hash of 3 x 2 sessions, seed 7, as the simulator wrote them before `--policy` existed
    (pyarrow as pinned in constraints.txt)."""
    digest = hashlib.sha256()
    for path in sorted(simulate(tmp_path, scenarios=3, sessions=2, seed=7)):
        digest.update(path.read_bytes())
    assert digest.hexdigest() == "bc635f6d086b6adb7b14e9730e0914befed76eec112f21277ec078d58f1b1089"
