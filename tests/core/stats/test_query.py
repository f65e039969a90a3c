"""Sessions over time: timestamps in, sessions picked by their time (never their name), the window
the scenario model is built from."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.stages.scenario_model import build_model_for_scenario
from swarm_learn_assets.core.stats.query import TimeWindow, format_sessions, parse_time, query_sessions
from swarm_learn_assets.core.stats.snapshot import empty_snapshot
from swarm_learn_assets.core.storage.layout import DataLayout

DAY_MS = 86_400_000
DEC_1 = 1_764_547_200_000  # 2025-12-01T00:00:00Z


@pytest.mark.parametrize("text, expected", [
    ("2025-12-01", DEC_1),
    ("2025-12-01T00:00:00Z", DEC_1),
    ("2025-12-01T08:00:00+08:00", DEC_1),
    ("2025-12-01T06:30:00", DEC_1 + 6 * 3_600_000 + 30 * 60_000),  # no offset: UTC
    ("1764547200000", DEC_1),
    (" 42 ", 42),
])
def test_parse_time_takes_iso_8601_and_epoch_milliseconds(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01", "12:00", " "])
def test_a_bad_time_is_one_clear_line(text):
    with pytest.raises(ValueError, match=rf"^since {text!r}: expected ISO 8601 .* or epoch milliseconds$"):
        TimeWindow.parse(text, None)


def test_a_window_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="since '2025-12-02' is after until '2025-12-01'"):
        TimeWindow.parse("2025-12-02", "2025-12-01")


def _land(layout: DataLayout, scenario: str, sessions: dict[str, tuple[int, int, int]]) -> None:
    """Snapshots (session → start time, task episodes, successes) and one episodes file per session."""
    layout.snapshot_dir(scenario).mkdir(parents=True)
    layout.episodes_dir(scenario).mkdir(parents=True)
    for session, (start, total, success) in sessions.items():
        snap = empty_snapshot(scenario, session, start)
        snap["metadata"].update(total_episodes=total, success_episodes=success, failure_episodes=total - success)
        snap["action_stats"] = [{"action": "CheckStatus", "visits": total, "successes": success,
                                 "failures": total - success, "total_duration_ms": 10 * total}]
        (layout.snapshot_dir(scenario) / f"{session}.json").write_text(json.dumps(snap))
        pq.write_table(pa.table({"session_id": [session, session], "ended_at_ms": [start + 500, start + 900]}),
                       layout.episodes_dir(scenario) / f"{session}.parquet")


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    layout = DataLayout(tmp_path)
    # names sort against time: the alphabetically first session is the newest
    _land(layout, "db", {"a-newest": (DEC_1 + 2 * DAY_MS, 4, 3), "m-middle": (DEC_1 + DAY_MS, 2, 0),
                         "z-oldest": (DEC_1, 5, 5)})
    return layout


def test_query_lists_sessions_oldest_first_with_time_range_episodes_and_success_rate(layout):
    rows = query_sessions(layout, "db")
    assert [r.session_id for r in rows] == ["z-oldest", "m-middle", "a-newest"]
    first = rows[0]
    assert (first.started_at_ms, first.ended_at_ms, first.episodes, first.success_rate) == (DEC_1, DEC_1 + 900, 5, 1.0)
    assert rows[2].success_rate == 0.75 and first.snapshot == str(layout.snapshot_dir("db") / "z-oldest.json")
    table = format_sessions(rows).splitlines()
    assert table[0].split()[:2] == ["session", "started"] and table[2].startswith("z-oldest  2025-12-01 00:00:00")


def test_query_filters_by_session_time_not_by_name(layout):
    window = TimeWindow.parse("2025-12-02", None)
    assert [r.session_id for r in query_sessions(layout, "db", window)] == ["m-middle", "a-newest"]
    window = TimeWindow.parse(None, str(DEC_1 + DAY_MS))  # inclusive
    assert [r.session_id for r in query_sessions(layout, "db", window)] == ["z-oldest", "m-middle"]
    assert [r.session_id for r in query_sessions(layout, "db", latest=2)] == ["m-middle", "a-newest"]
    assert [r.session_id for r in query_sessions(layout, "db", TimeWindow.parse(None, "2025-12-02"), latest=1)] == \
        ["m-middle"]
    assert query_sessions(layout, "db", TimeWindow.parse("2026-01-01", None)) == []
    assert query_sessions(layout, "nothing-here") == []
    with pytest.raises(ValueError, match="latest 0: expected a count >= 1"):
        query_sessions(layout, "db", latest=0)


def test_the_scenario_model_is_built_from_its_window_and_records_it(layout):
    everything = build_model_for_scenario(layout, "db").model
    assert everything["window"] == {"since_ms": None, "until_ms": None}
    assert everything["merged"]["metadata"]["total_episodes"] == 11
    window = TimeWindow.parse("2025-12-02", None)
    recent = build_model_for_scenario(layout, "db", window=window).model
    assert recent["sessions"] == ["m-middle", "a-newest"]  # by time, not by name
    assert recent["merged"]["metadata"]["total_episodes"] == 6
    assert recent["merged"]["action_stats"][0]["successes"] == 3
    assert recent["window"] == {"since_ms": DEC_1 + DAY_MS, "until_ms": None}
    assert json.loads(layout.scenario_model("db").read_text())["window"] == recent["window"]
