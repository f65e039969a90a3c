"""Validation of landing records: each quarantine reason, defaults, and unreadable landing files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.contract.schema import COLUMNS, REJECT_REASON, SOURCE_ROW
from swarm_learn_assets.core.contract.validation import (
    TYPE_ERROR,
    LandingFileError,
    normalise,
    read_landing,
    validate,
)
from swarm_learn_assets.core.storage.names import SESSION_KEY

KEY = "sc.s1"


def run(table: pa.Table, key: str = KEY):
    return validate([normalise(table, key, f"{key}.parquet")])


def actions(n: int, **overrides) -> dict:
    """Columns of `n` valid action rows, overridable per column."""
    cols = {
        "kind": ["action"] * n,
        "seq": list(range(n)),
        "tick": list(range(n)),
        "worker_id": [0] * n,
        "action": [f"A{i}" for i in range(n)],
    }
    cols.update(overrides)
    return cols


def reasons(result) -> dict[int, str]:
    """Rejected rows as source_row -> reason."""
    rows = result.rejected.select([SOURCE_ROW, REJECT_REASON]).to_pylist()
    return {r[SOURCE_ROW]: r[REJECT_REASON] for r in rows}


def kept(result) -> list[int]:
    return result.records.column(SOURCE_ROW).to_pylist()


# ---------------------------------------------------------------------------------------------
# Quarantine reasons
# ---------------------------------------------------------------------------------------------


def test_all_good_rows_pass():
    result = run(pa.table(actions(3)))
    assert kept(result) == [0, 1, 2]
    assert result.rejected.num_rows == 0


def test_unknown_kind():
    result = run(pa.table(actions(3, kind=["action", "telemetry", "action"])))
    assert reasons(result) == {
        1: "kind: expected one of action, llm_call, dependency_graph, strategy_advice, learn_stats, got 'telemetry'"
    }
    assert kept(result) == [0, 2]


def test_null_kind():
    result = run(pa.table(actions(2, kind=[None, "action"])))
    assert reasons(result) == {0: "kind: required, got null"}
    assert kept(result) == [1]


def test_action_row_needs_worker_id():
    result = run(pa.table(actions(2, worker_id=[0, None])))
    assert reasons(result) == {1: "worker_id: required for kind 'action'"}


def test_action_row_needs_action():
    result = run(pa.table(actions(2, action=[None, "B"])))
    assert reasons(result) == {0: "action: required for kind 'action'"}


def test_other_kinds_do_not_need_worker_or_action():
    table = pa.table({"kind": ["llm_call", "learn_stats", "dependency_graph", "strategy_advice"], "seq": [0, 1, 2, 3]})
    result = run(table)
    assert result.rejected.num_rows == 0
    assert result.records.num_rows == 4


@pytest.mark.parametrize("column", ["tick", "worker_id", "duration_ms", "latency_ms"])
def test_negative_counters(column):
    cols = actions(3)
    cols[column] = [1, -5, 2]
    result = run(pa.table(cols))
    assert reasons(result) == {1: f"{column}: expected >= 0, got -5"}
    assert kept(result) == [0, 2]


def test_zero_is_not_negative():
    cols = actions(1, duration_ms=[0], latency_ms=[0], tick=[0], worker_id=[0])
    assert run(pa.table(cols)).rejected.num_rows == 0


def test_wrong_type_names_column_and_value():
    result = run(pa.table(actions(3, tick=["1", "x", "3"])))
    assert reasons(result) == {1: "tick: expected int64, got 'x'"}
    # the good values of the same column are converted, not lost
    assert result.records.column("tick").to_pylist() == [1, 3]
    assert result.records.schema.field("tick").type == pa.int64()


def test_wrong_type_in_bool_column():
    result = run(pa.table(actions(2, success=["true", "sometimes"])))
    (reason,) = reasons(result).values()
    assert reason.startswith("success: expected bool")
    assert "'sometimes'" in reason


def test_duplicate_seq_keeps_first():
    result = run(pa.table(actions(4, seq=[0, 1, 1, 2])))
    assert reasons(result) == {2: "seq: duplicate value 1, expected unique within the session"}
    assert kept(result) == [0, 1, 3]


def test_invalid_first_row_does_not_make_valid_duplicate_rejected():
    # row 0 is rejected for its kind, so row 1 is the first valid row with seq 0
    result = run(pa.table(actions(2, seq=[0, 0], kind=["bogus", "action"])))
    assert list(reasons(result)) == [0]
    assert kept(result) == [1]


def test_invalid_learn_stats_outcome():
    table = pa.table(
        {"kind": ["learn_stats", "learn_stats", "learn_stats"], "seq": [0, 1, 2], "outcome": ["success", "meh", None]}
    )
    result = run(table)
    assert reasons(result) == {1: "outcome: expected one of success, failure, timeout, got 'meh'"}
    assert kept(result) == [0, 2]


def test_outcome_only_checked_for_learn_stats():
    result = run(pa.table(actions(1, outcome=["whatever"])))
    assert result.rejected.num_rows == 0


def test_bad_rows_do_not_take_good_rows_of_the_session_with_them():
    cols = actions(5, kind=["action", "bogus", "action", "action", "action"], tick=[0, 1, -1, 3, 4])
    result = run(pa.table(cols))
    assert set(reasons(result)) == {1, 2}
    assert kept(result) == [0, 3, 4]
    assert set(result.records.column(SESSION_KEY).to_pylist()) == {KEY}


def test_rejected_rows_carry_session_and_source_row():
    result = run(pa.table(actions(2, kind=["action", None])), key="sc.s9")
    row = result.rejected.to_pylist()[0]
    assert row[SESSION_KEY] == "sc.s9"
    assert row[SOURCE_ROW] == 1
    assert REJECT_REASON not in result.records.column_names


# ---------------------------------------------------------------------------------------------
# Defaults, ordering and column handling
# ---------------------------------------------------------------------------------------------


def test_seq_filled_from_row_order_when_absent():
    cols = actions(3)
    del cols["seq"]
    result = run(pa.table(cols))
    assert result.records.column("seq").to_pylist() == [0, 1, 2]


def test_records_sorted_by_seq():
    result = run(pa.table(actions(3, seq=[20, 0, 10])))
    assert result.records.column("seq").to_pylist() == [0, 10, 20]
    assert kept(result) == [1, 2, 0]


def test_action_success_defaults_to_true_only_for_actions():
    table = pa.table({"kind": ["action", "action", "llm_call"], "seq": [0, 1, 2], "worker_id": [0, 0, None],
                      "action": ["A", "B", None], "success": [None, False, None]})
    result = run(table)
    assert result.records.column("success").to_pylist() == [True, False, None]


def test_success_defaults_to_true_when_column_absent():
    result = run(pa.table(actions(2)))
    assert result.records.column("success").to_pylist() == [True, True]


def test_extra_columns_preserved():
    session = normalise(pa.table(actions(2, note=["n0", "n1"])), KEY, "x")
    assert session.extra_columns == ["note"]
    result = validate([session])
    assert result.records.column("note").to_pylist() == ["n0", "n1"]


def test_all_contract_columns_present_with_contract_types():
    result = run(pa.table(actions(1)))
    for name, dtype in COLUMNS.items():
        assert result.records.schema.field(name).type == dtype, name


def test_int32_columns_widened():
    cols = actions(2)
    table = pa.table({**cols, "tick": pa.array([1, 2], pa.int32()), "worker_id": pa.array([3, 4], pa.int16())})
    session = normalise(table, KEY, "x")
    assert session.table.schema.field("tick").type == pa.int64()
    assert session.table.schema.field("worker_id").type == pa.int64()
    result = validate([session])
    assert result.records.column("tick").to_pylist() == [1, 2]
    assert result.records.column("worker_id").to_pylist() == [3, 4]


def test_normalise_never_drops_a_row():
    session = normalise(pa.table(actions(3, kind=[None, "x", "action"], tick=["a", "b", "1"])), KEY, "x")
    assert session.table.num_rows == 3
    assert session.table.column(TYPE_ERROR).to_pylist()[:2] == ["tick: expected int64, got 'a'",
                                                                "tick: expected int64, got 'b'"]


def test_reserved_column_names_are_renamed():
    session = normalise(pa.table(actions(1, _session=["evil"])), KEY, "x")
    assert session.table.column(SESSION_KEY).to_pylist() == [KEY]
    assert session.table.column("landing__session").to_pylist() == ["evil"]


def test_two_sessions_do_not_share_duplicate_seq_detection():
    a = normalise(pa.table(actions(2)), "sc.a", "a")
    b = normalise(pa.table(actions(2)), "sc.b", "b")
    result = validate([a, b])
    assert result.rejected.num_rows == 0
    assert result.records.num_rows == 4
    assert result.records.column(SESSION_KEY).to_pylist() == ["sc.a", "sc.a", "sc.b", "sc.b"]


def test_sessions_with_different_columns_validate_together():
    a = normalise(pa.table(actions(1, note=["x"])), "sc.a", "a")
    b = normalise(pa.table(actions(1)), "sc.b", "b")
    result = validate([a, b])
    assert result.records.column("note").to_pylist() == ["x", None]


def test_validate_nothing():
    result = validate([])
    assert result.records.num_rows == 0
    assert result.rejected.num_rows == 0


def test_fractional_tick_is_a_type_error():
    result = run(pa.table(actions(2, tick=[1.0, 1.5])))
    assert reasons(result) == {1: "tick: expected int64, got '1.5'"}
    assert result.records.column("tick").to_pylist() == [1]


# ---------------------------------------------------------------------------------------------
# read_landing
# ---------------------------------------------------------------------------------------------


def test_read_landing_ok(tmp_path: Path):
    path = tmp_path / "s1.parquet"
    pq.write_table(pa.table(actions(2)), path)
    assert read_landing(path).num_rows == 2


def test_read_landing_not_parquet(tmp_path: Path):
    path = tmp_path / "s1.parquet"
    path.write_text("kind,seq\naction,0\n")
    with pytest.raises(LandingFileError) as info:
        read_landing(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert "cannot be read as parquet" in info.value.problem


def test_read_landing_truncated(tmp_path: Path):
    path = tmp_path / "s2.parquet"
    pq.write_table(pa.table(actions(50)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LandingFileError) as info:
        read_landing(path)
    assert str(path) in str(info.value)


def test_read_landing_without_kind(tmp_path: Path):
    path = tmp_path / "s3.parquet"
    pq.write_table(pa.table({"seq": [0], "action": ["A"]}), path)
    with pytest.raises(LandingFileError) as info:
        read_landing(path)
    assert str(path) in str(info.value)
    assert "'kind'" in str(info.value)


def test_read_landing_missing_file(tmp_path: Path):
    path = tmp_path / "missing.parquet"
    with pytest.raises(LandingFileError, match="missing.parquet"):
        read_landing(path)


def test_landing_file_error_is_value_error():
    assert issubclass(LandingFileError, ValueError)
