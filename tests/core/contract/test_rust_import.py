"""Importing Rust FileRecordStore JSON Lines must give landing rows, or refuse with file + line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.contract.rust_import import RecordImportError, import_jsonl, records_from_jsonl
from swarm_learn_assets.core.contract.schema import SCHEMA
from swarm_learn_assets.core.storage.names import InvalidNameError

ACTION = {
    "task_id": "6f1c9a2e-0d4b-4c55-9a53-6f3c2a1b0e77",
    "group_id": None,
    "tick": 3,
    "worker_id": 1,
    "action": "CheckStatus",
    "target": "db-1",
    "success": True,
    "error": None,
    "duration_ms": 120,
    "selection_logic": "UCB1",
    "from_guidance": False,
    "previous_action": None,
    "lora": None,
}
LLM = {
    "call_type": "decide",
    "prompt": "Current context: disk full on db-1",
    "response": "ReadLogs",
    "model": "smollm2-135m",
    "endpoint": "http://localhost:8080",
    "lora": None,
    "latency_ms": 180,
    "timestamp_ms": 1767225600123,
    "worker_id": 1,
    "error": None,
}
GRAPH = {
    "prompt": "order these",
    "response": "{...}",
    "available_actions": ["CheckStatus", "ReadLogs", "Restart"],
    "discover_order": ["CheckStatus", "ReadLogs"],
    "not_discover_order": ["Restart"],
    "timestamp_ms": 1767225600000,
    "model": "smollm2-135m",
    "endpoint": "",
    "lora": None,
    "latency_ms": 900,
    "error": None,
}
ADVICE = {
    "timestamp_ms": 1767225601000,
    "tick": 10,
    "advisor": "llm",
    "current_strategy": "UCB1",
    "recommended": "Greedy",
    "should_change": True,
    "confidence": 1,
    "reason": "low failure rate",
    "frontier_count": 4,
    "total_visits": 40,
    "failure_rate": 0.1,
    "latency_ms": 300,
    "success": True,
    "error": None,
}
STATS = {
    "timestamp_ms": 1767225609000,
    "scenario": "troubleshooting",
    "session_id": "abc",
    "stats_json": "{\"episodes\":3}",
    "outcome": {"Success": {"score": 1.0}},
    "total_ticks": 12,
    "total_actions": 30,
}


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "events.jsonl",
        [
            {"DependencyGraph": GRAPH},
            {"Action": ACTION},
            "",
            {"Llm": LLM},
            {"Action": {**ACTION, "task_id": {"0": 42}, "group_id": 7, "action": "done", "success": False,
                        "error": "Task failed", "some_future_field": [1, 2]}},  # fmt: skip
            {"StrategyAdvice": ADVICE},
            {"LearnStats": STATS},
        ],
    )


def test_all_five_kinds_map_to_landing_rows(events: Path) -> None:
    table = records_from_jsonl(events)
    assert table.schema.equals(SCHEMA)
    rows = table.to_pylist()
    assert [r["kind"] for r in rows] == [
        "dependency_graph", "action", "llm_call", "action", "strategy_advice", "learn_stats",
    ]  # fmt: skip
    assert [r["seq"] for r in rows] == list(range(6))  # blank line skipped, not counted
    graph, action, llm, done, advice, stats = rows
    assert graph["discover_order"] == ["CheckStatus", "ReadLogs"] and graph["latency_ms"] == 900
    assert action["task_id"] == ACTION["task_id"] and action["group_id"] is None
    assert action["timestamp_ms"] is None and action["tick"] == 3 and action["success"] is True
    assert llm["call_type"] == "decide" and llm["worker_id"] == 1 and llm["timestamp_ms"] == 1767225600123
    assert done["task_id"] == '{"0":42}' and done["group_id"] == "7"
    assert done["success"] is False and done["error"] == "Task failed"
    assert advice["confidence"] == 1.0 and advice["should_change"] is True and advice["total_visits"] == 40
    assert stats["outcome"] == "success" and stats["total_actions"] == 30 and stats["stats_json"] == '{"episodes":3}'


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [("Success", "success"), ("Failure", "failure"), ({"Failure": {"reason": "x"}}, "failure"),
     ({"Timeout": {"partial_score": 0.3}}, "timeout"), ("timeout", "timeout")],
)  # fmt: skip
def test_learn_stats_outcome_is_normalised(tmp_path: Path, outcome: object, expected: str) -> None:
    path = _write(tmp_path / "s.jsonl", [{"LearnStats": {**STATS, "outcome": outcome}}])
    assert records_from_jsonl(path).column("outcome").to_pylist() == [expected]


def test_action_success_defaults_to_true(tmp_path: Path) -> None:
    body = {k: v for k, v in ACTION.items() if k != "success"}
    path = _write(tmp_path / "a.jsonl", [{"Action": body}])
    assert records_from_jsonl(path).column("success").to_pylist() == [True]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"Action": {"tick": 1,', "events.jsonl line 3: not valid JSON"),
        ({"Foo": {}}, "events.jsonl line 3: unknown record type 'Foo'; expected one of Action, Llm, "
                      "DependencyGraph, StrategyAdvice, LearnStats"),
        ({"Action": ACTION, "Llm": LLM},
         "events.jsonl line 3: got an object with 2 keys; expected an object with exactly one key"),
        ([1, 2], "events.jsonl line 3: got a JSON array; expected an object with exactly one key"),
        ({"Llm": "decide"}, "events.jsonl line 3: Llm record is a JSON string; expected an object"),
        ({"Action": {**ACTION, "tick": "three"}},
         "events.jsonl line 3: Action field 'tick' is \"three\"; expected an integer"),
    ],
)  # fmt: skip
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: object, message: str) -> None:
    path = _write(tmp_path / "events.jsonl", [{"Action": ACTION}, {"Llm": LLM}, line])
    with pytest.raises(RecordImportError) as info:
        records_from_jsonl(path)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_import_writes_landing_parquet(events: Path, tmp_path: Path) -> None:
    out = import_jsonl(events, tmp_path / "data", "troubleshooting", "s0001")
    assert out == tmp_path / "data" / "landing" / "troubleshooting" / "s0001.parquet"
    table = pq.read_table(out)
    assert table.schema.equals(SCHEMA) and table.num_rows == 6
    assert [p.name for p in out.parent.iterdir()] == ["s0001.parquet"]  # no temporary left behind


def test_import_refuses_bad_names(events: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError, match="scenario"):
        import_jsonl(events, tmp_path, "../etc", "s0001")
    with pytest.raises(InvalidNameError, match="session id"):
        import_jsonl(events, tmp_path, "troubleshooting", "s 1")
    assert not (tmp_path / "landing").exists()


def test_import_refuses_to_overwrite_unless_asked(events: Path, tmp_path: Path) -> None:
    out = import_jsonl(events, tmp_path, "troubleshooting", "s0001")
    before = out.read_bytes()
    small = _write(tmp_path / "small.jsonl", [{"Action": ACTION}])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        import_jsonl(small, tmp_path, "troubleshooting", "s0001")
    assert out.read_bytes() == before
    import_jsonl(small, tmp_path, "troubleshooting", "s0001", overwrite=True)
    assert pq.read_metadata(out).num_rows == 1


def test_import_refuses_an_empty_file(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(RecordImportError, match="no records"):
        import_jsonl(empty, tmp_path, "troubleshooting", "s0001")
    assert not (tmp_path / "landing" / "troubleshooting" / "s0001.parquet").exists()
