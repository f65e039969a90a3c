"""The batched episode table on hand-made edge cases, against the per-record learn models."""

from __future__ import annotations

import pyarrow as pa
import pytest

from swarm_learn_assets.core.contract.schema import COLUMNS
from swarm_learn_assets.core.contract.typed_records import records_from_table
from swarm_learn_assets.core.episodes.episode_table import EPISODE_SCHEMA, build_episode_table
from swarm_learn_assets.core.episodes.learn_models import WorkerDecisionSequenceLearn, WorkerTaskLearn
from swarm_learn_assets.core.storage.names import SESSION_KEY


def _records(session: str, rows: list[dict]) -> pa.Table:
    """Validated-record rows (defaults: kind action, success true) of one session."""
    filled = [{"kind": "action", "success": True, **r} for r in rows]
    table = pa.table({name: pa.array([r.get(name) for r in filled], dtype) for name, dtype in COLUMNS.items()})
    return table.append_column(SESSION_KEY, pa.array([session] * len(rows), pa.string()))


def _expected(table: pa.Table, min_task: int, min_decision: int) -> dict:
    out = {}
    for session in sorted(set(table.column(SESSION_KEY).to_pylist())):
        scenario, session_id = session.split(".")
        part = table.filter(pa.compute.equal(table.column(SESSION_KEY), session))
        part = part.sort_by("seq")
        records = records_from_table(part.drop_columns([SESSION_KEY]))
        episodes = WorkerTaskLearn(min_actions=min_task).build_episodes(records, scenario, session_id)
        episodes += WorkerDecisionSequenceLearn(min_actions=min_decision).build_episodes(records, scenario, session_id)
        for e in episodes:
            out[e.id] = (e.learn_model, scenario, session_id, e.worker_id(), e.outcome.kind, e.outcome.score(),
                         e.actions(), [r.seq for r in e.records], e.get_task_id(), e.get_group_id(), e.context(),
                         e.selection_logic(), e.started_at_ms(), e.ended_at_ms())
    return out


def _got(table: pa.Table) -> dict:
    return {
        r["episode_id"]: (r["learn_model"], r["scenario"], r["session_id"], r["worker_id"], r["outcome"], r["score"],
                          r["actions"], r["record_seqs"], r["task_id"], r["group_id"], r["context"],
                          r["selection_logic"], r["started_at_ms"], r["ended_at_ms"])
        for r in table.to_pylist()
    }


EDGE_CASES = pa.concat_tables([
    _records("s1.a", [
        # worker 0: two tasks; the first has a null timestamp and an empty context before a real one
        {"seq": 0, "worker_id": 0, "action": "tick_start", "timestamp_ms": None, "selection_logic": "Greedy"},
        {"seq": 1, "worker_id": 0, "action": "Check", "timestamp_ms": 10, "context": "", "selection_logic": "UCB1",
         "task_id": "t1", "group_id": "g1"},
        {"seq": 2, "worker_id": 0, "action": "Fix", "timestamp_ms": 12, "context": "disk full"},
        {"seq": 3, "worker_id": 0, "action": "done", "timestamp_ms": 15},
        {"seq": 4, "worker_id": 0, "action": "Check", "success": False, "timestamp_ms": 20},
        {"seq": 5, "worker_id": 0, "action": "done", "success": False, "timestamp_ms": 21},
        # worker 1, interleaved: a lone `done` (too short), then an unterminated tail
        {"seq": 6, "worker_id": 1, "action": "done", "timestamp_ms": 22},
        {"seq": 7, "worker_id": 1, "action": "Check", "timestamp_ms": 23},
        {"seq": 8, "worker_id": 1, "action": "Fix", "timestamp_ms": 24},
        {"seq": 9, "kind": "llm_call", "worker_id": 1, "timestamp_ms": 25},
        # worker 2: every timestamp missing
        {"seq": 10, "worker_id": 2, "action": "Probe"},
        {"seq": 11, "worker_id": 2, "action": "Probe"},
        {"seq": 12, "worker_id": 2, "action": "done"},
    ]),
    # rows out of seq order, a second session with the same worker ids
    _records("s1.b", [
        {"seq": 3, "worker_id": 0, "action": "done", "timestamp_ms": 5},
        {"seq": 1, "worker_id": 0, "action": "Check", "timestamp_ms": 3, "context": "cpu"},
        {"seq": 2, "worker_id": 0, "action": "Scale", "timestamp_ms": 4},
        {"seq": 0, "worker_id": 0, "action": "Look", "timestamp_ms": 2, "success": False},
    ]),
])


@pytest.mark.parametrize("min_task, min_decision", [(2, 3), (1, 1), (4, 2), (10, 10)])
def test_edge_cases_match_the_per_record_learn_models(min_task: int, min_decision: int):
    got = build_episode_table(EDGE_CASES, min_task, min_decision)
    assert got.schema == EPISODE_SCHEMA
    assert _got(got) == _expected(EDGE_CASES, min_task, min_decision)


def test_the_edge_cases_cover_what_they_claim():
    got = _got(build_episode_table(EDGE_CASES, 2, 3))
    tasks = [v for v in got.values() if v[0] == "worker_task"]
    assert {v[4] for v in tasks} == {"success", "failure"}
    first = next(v for v in tasks if v[7] == [0, 1, 2, 3])
    assert first[10] == "disk full" and first[11] == "UCB1" and (first[12], first[13]) == (10, 15)
    assert next(v for v in tasks if v[3] == 2)[12:] == (None, None)


def test_rows_are_ordered_by_session_model_worker_and_start():
    table = build_episode_table(EDGE_CASES, 1, 1)
    keys = [(r["scenario"], r["session_id"], r["learn_model"], r["worker_id"], r["record_seqs"][0])
            for r in table.to_pylist()]
    assert keys == sorted(keys)


def test_no_actions_gives_an_empty_table():
    table = build_episode_table(_records("s.x", [{"seq": 0, "kind": "llm_call", "worker_id": 0}]))
    assert table.num_rows == 0 and table.schema == EPISODE_SCHEMA
    assert build_episode_table(EDGE_CASES.slice(0, 0)).num_rows == 0
