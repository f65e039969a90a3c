"""The simulator must produce landing files that honour DESIGN §4 and behave like a learning swarm."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.contract.schema import DONE, SCHEMA, SYSTEM_EVENTS, TICK_END, TICK_START
from swarm_learn_assets.core.storage.names import NAME_PATTERN
from swarm_learn_assets.simulate import simulate


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One default run shared by the read-only tests (it is deterministic, so sharing is safe)."""
    return simulate(tmp_path_factory.mktemp("sim"), scenarios=3, sessions=20, seed=7)


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _tasks(rows: list[dict]) -> dict[str, list[dict]]:
    tasks: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "action":
            tasks[row["task_id"]].append(row)
    return tasks


def _task_outcome(task_rows: list[dict]) -> str:
    done = [r for r in task_rows if r["action"] == DONE]
    if not done:
        return "timeout"
    return "success" if done[0]["success"] else "failure"


def test_layout_names_and_schema(landing: list[Path]) -> None:
    assert len(landing) == 60
    scenarios = {p.parent.name for p in landing}
    assert scenarios == {"troubleshooting", "deploy-rollout", "db-recovery"}
    for path in landing:
        assert path.parent.parent.name == "landing"
        assert NAME_PATTERN.match(path.stem) and NAME_PATTERN.match(path.parent.name)
        assert pq.read_schema(path).equals(SCHEMA)
    ids = sorted(p.stem for p in landing if p.parent.name == "troubleshooting")
    assert ids[0] == "s0001" and ids[-1] == "s0020"


def test_seq_and_timestamps(landing: list[Path]) -> None:
    for path in landing:
        table = pq.read_table(path, columns=["seq", "timestamp_ms"])
        assert table.column("seq").to_pylist() == list(range(table.num_rows))
        ts = table.column("timestamp_ms").to_pylist()
        assert all(a < b for a, b in zip(ts, ts[1:]))
        assert 1_767_225_600_000 <= ts[0] < 1_767_225_600_000 + 2 * 365 * 86_400_000


def test_sessions_are_in_time_order(landing: list[Path]) -> None:
    for scenario in {p.parent.name for p in landing}:
        paths = sorted(p for p in landing if p.parent.name == scenario)
        bounds = [pq.read_table(p, columns=["timestamp_ms"]).column(0).to_pylist() for p in paths]
        assert all(a[-1] < b[0] for a, b in zip(bounds, bounds[1:]))


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = simulate(tmp_path / "a", scenarios=2, sessions=3, seed=11)
    b = simulate(tmp_path / "b", scenarios=2, sessions=3, seed=11)
    c = simulate(tmp_path / "c", scenarios=2, sessions=3, seed=12)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]


def test_session_does_not_depend_on_how_many_were_generated(tmp_path: Path) -> None:
    few = simulate(tmp_path / "few", scenarios=1, sessions=2, seed=3)
    many = simulate(tmp_path / "many", scenarios=2, sessions=5, seed=3)
    assert few[1].read_bytes() == many[1].read_bytes()


def test_every_task_ends_with_done_or_is_an_unterminated_tail(landing: list[Path]) -> None:
    for path in landing:
        rows = _rows(path)
        by_worker: dict[int, list[dict]] = defaultdict(list)
        for row in rows:
            if row["kind"] == "action":
                by_worker[row["worker_id"]].append(row)
        for worker_rows in by_worker.values():
            task_order = list(dict.fromkeys(r["task_id"] for r in worker_rows))
            for n, task_id in enumerate(task_order):
                task_rows = [r for r in worker_rows if r["task_id"] == task_id]
                # tasks of a worker do not interleave
                first = worker_rows.index(task_rows[0])
                assert worker_rows[first : first + len(task_rows)] == task_rows
                done = [r for r in task_rows if r["action"] == DONE]
                if n < len(task_order) - 1:
                    assert len(done) == 1 and task_rows[-1]["action"] == DONE
                else:
                    assert len(done) <= 1
                    if done:
                        assert task_rows[-1]["action"] == DONE
                    else:
                        assert task_rows[-1]["action"] == TICK_END


def test_ticks_wrap_each_step(landing: list[Path]) -> None:
    rows = _rows(landing[0])
    for task_rows in _tasks(rows).values():
        steps = [r for r in task_rows if r["action"] != DONE]
        for i in range(0, len(steps), 3):
            start, action, end = steps[i : i + 3]
            assert start["action"] == TICK_START and end["action"] == TICK_END
            assert action["action"] not in SYSTEM_EVENTS
            assert start["tick"] == action["tick"] == end["tick"]


def test_actions_carry_context_and_previous_action(landing: list[Path]) -> None:
    rows = _rows(landing[5])
    for task_rows in _tasks(rows).values():
        real = [r for r in task_rows if r["action"] not in SYSTEM_EVENTS]
        assert real[0]["previous_action"] is None
        for prev, row in zip(real, real[1:]):
            assert row["previous_action"] == prev["action"]
        for row in real:
            assert row["context"] and row["target"] and row["target"] in row["context"]
            assert row["task_id"].startswith(f"t-{landing[5].stem}-")
            assert row["group_id"].startswith(f"g-{landing[5].parent.name}-")
            assert row["duration_ms"] > 0 and row["lora"] is None
            assert (row["error"] is None) == bool(row["success"])


def test_some_tasks_fail_and_some_time_out(landing: list[Path]) -> None:
    outcomes: dict[str, int] = defaultdict(int)
    for path in landing:
        for task_rows in _tasks(_rows(path)).values():
            outcomes[_task_outcome(task_rows)] += 1
    assert outcomes["success"] > 0 and outcomes["failure"] > 0 and outcomes["timeout"] > 0
    assert sum(outcomes.values()) == 60 * 4 * 3


def test_failed_actions_carry_errors(landing: list[Path]) -> None:
    failed = [r for p in landing for r in _rows(p) if r["kind"] == "action" and r["success"] is False]
    real = [r for r in failed if r["action"] != DONE]
    assert real and all(r["error"] for r in real)


def test_group_ids_repeat_across_sessions(landing: list[Path]) -> None:
    sessions_per_group: dict[str, set[str]] = defaultdict(set)
    for path in landing:
        for row in _rows(path):
            if row["kind"] == "action":
                sessions_per_group[row["group_id"]].add(path.stem)
    assert max(len(s) for s in sessions_per_group.values()) > 1
    # and a group holds both outcomes somewhere, so DPO pairs exist
    outcomes_per_group: dict[str, set[str]] = defaultdict(set)
    for path in landing:
        for task_rows in _tasks(_rows(path)).values():
            outcomes_per_group[task_rows[0]["group_id"]].add(_task_outcome(task_rows))
    assert any({"success", "failure"} <= o for o in outcomes_per_group.values())


def test_all_selection_logics_appear(landing: list[Path]) -> None:
    logics = set(pq.read_table(landing[0], columns=["selection_logic"]).column(0).drop_null().to_pylist())
    assert logics == {"UCB1", "Thompson", "Greedy"}


def test_one_dependency_graph_and_learn_stats_per_session(landing: list[Path]) -> None:
    for path in landing:
        rows = _rows(path)
        kinds = [r["kind"] for r in rows]
        assert kinds.count("dependency_graph") == 1 and kinds.count("learn_stats") == 1
        graph = rows[kinds.index("dependency_graph")]
        assert set(graph["discover_order"]) | set(graph["not_discover_order"]) == set(graph["available_actions"])
        assert graph["prompt"] and graph["response"] and graph["model"]
        stats = rows[-1]
        assert stats["kind"] == "learn_stats"
        assert stats["outcome"] in {"success", "failure", "timeout"}
        actions = [r for r in rows if r["kind"] == "action" and r["action"] not in SYSTEM_EVENTS]
        assert stats["total_actions"] == len(actions)
        assert stats["total_ticks"] == max(r["tick"] for r in actions) + 1


def test_llm_calls_and_strategy_advice(landing: list[Path]) -> None:
    rows = [r for p in landing for r in _rows(p)]
    calls = [r for r in rows if r["kind"] == "llm_call"]
    assert calls and all(r["call_type"] == "decide" and r["worker_id"] is not None for r in calls)
    ok = [r for r in calls if r["error"] is None]
    assert all(r["response"] and r["latency_ms"] > 0 and "Current context:" in r["prompt"] for r in ok)
    advice = [r for r in rows if r["kind"] == "strategy_advice"]
    assert advice and all(r["tick"] is not None and 0.0 <= r["failure_rate"] <= 1.0 for r in advice)
    assert any(r["from_guidance"] for r in rows if r["kind"] == "action")


def test_later_sessions_succeed_more(landing: list[Path]) -> None:
    def rate(paths: list[Path]) -> float:
        done = [r for p in paths for r in _rows(p) if r["kind"] == "action" and r["action"] == DONE]
        return sum(bool(r["success"]) for r in done) / len(done)

    early = [p for p in landing if int(p.stem[1:]) <= 5]
    late = [p for p in landing if int(p.stem[1:]) > 15]
    assert rate(late) > rate(early) + 0.1


@pytest.mark.parametrize("target", [200, 1000, 3000])
def test_records_per_session_is_honoured(tmp_path: Path, target: int) -> None:
    paths = simulate(tmp_path, scenarios=3, sessions=3, records_per_session=target)
    for path in paths:
        rows = pq.read_metadata(path).num_rows
        assert 0.75 * target <= rows <= 1.25 * target, (path, rows)


def test_progress_is_called_once_per_session(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    simulate(tmp_path, scenarios=2, sessions=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 6) for i in range(1, 7)]


def test_more_scenarios_than_the_catalogue_get_suffixed_names(tmp_path: Path) -> None:
    paths = simulate(tmp_path, scenarios=5, sessions=1)
    assert [p.parent.name for p in paths] == [
        "troubleshooting", "deploy-rollout", "db-recovery", "troubleshooting-2", "deploy-rollout-2",
    ]  # fmt: skip
    groups = pa.concat_tables([pq.read_table(p, columns=["group_id"]) for p in paths[3:]]).column(0)
    assert all(g.startswith(("g-troubleshooting-2-", "g-deploy-rollout-2-")) for g in groups.drop_null().to_pylist())


def test_rejects_nonsense_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        simulate(tmp_path, workers=0)
    with pytest.raises(ValueError, match="records_per_session"):
        simulate(tmp_path, records_per_session=0)
