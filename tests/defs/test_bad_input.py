"""Bad input is quarantined with a reason, an unreadable file does not stop the others, nothing in landing/ changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.cli import main
from swarm_learn_assets.runner import materialize


def _landing_digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "landing").rglob("*")) if p.is_file()}


def _check_passed(asset: str, check: str) -> bool:
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    record = dg.DagsterInstance.get().event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    return record.event.dagster_event.event_specific_data.passed


def test_bad_rows_go_to_quarantine_and_the_rest_is_processed(data_root: Path):
    path = next((data_root / "landing").rglob("s0001.parquet"))
    table = pq.read_table(path)
    n = table.num_rows
    kinds = table["kind"].to_pylist()
    kinds[3] = "telepathy"
    ticks = table["tick"].to_pylist()
    first_action = kinds.index("action")
    ticks[first_action] = -5
    seqs = table["seq"].to_pylist()
    seqs[10] = seqs[9]
    table = table.set_column(table.schema.get_field_index("kind"), "kind", pa.array(kinds))
    table = table.set_column(table.schema.get_field_index("tick"), "tick", pa.array(ticks, pa.int64()))
    table = table.set_column(table.schema.get_field_index("seq"), "seq", pa.array(seqs, pa.int64()))
    pq.write_table(table, path)
    before = _landing_digests(data_root)

    materialize(data_root, log_level="WARNING")

    scenario = path.parent.name
    quarantine = pq.read_table(data_root / "quarantine" / scenario / "s0001.parquet").to_pylist()
    reasons = {row["source_row"]: row["reject_reason"] for row in quarantine}
    assert "kind: expected one of" in reasons[3] and "'telepathy'" in reasons[3]
    assert reasons[first_action] == "tick: expected >= 0, got -5"
    assert reasons[10].startswith("seq: duplicate value")
    assert all(row["source_file"] == str(path) for row in quarantine)
    assert pq.ParquetFile(data_root / "records" / scenario / "s0001.parquet").metadata.num_rows == n - 3
    assert (data_root / "snapshots" / scenario / "s0001.json").is_file()
    assert _landing_digests(data_root) == before
    assert _check_passed("raw_records", "quarantine_share_below_threshold") == (3 / n <= 0.05)


def test_quarantine_share_above_threshold_warns(data_root: Path):
    path = next((data_root / "landing").rglob("s0002.parquet"))
    table = pq.read_table(path)
    kinds = ["nonsense" if i % 2 else k for i, k in enumerate(table["kind"].to_pylist())]
    pq.write_table(table.set_column(0, "kind", pa.array(kinds)), path)
    materialize(data_root, ["raw_records"], log_level="WARNING")
    assert not _check_passed("raw_records", "quarantine_share_below_threshold")


@pytest.mark.parametrize(
    "content,problem",
    [(b"this is not parquet", "cannot be read as parquet"), (None, "cannot be read as parquet"), ("nokind", "no 'kind' column")],
)
def test_unreadable_file_gets_an_error_file_and_others_go_on(data_root: Path, content, problem):
    path = next((data_root / "landing").rglob("s0003.parquet"))
    if content is None:  # truncated: a real parquet file cut in half
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "nokind":
        pq.write_table(pq.read_table(path).drop_columns(["kind"]), path)
    else:
        path.write_bytes(content)
    before = _landing_digests(data_root)

    sessions, _, _ = materialize(data_root, log_level="WARNING")

    scenario = path.parent.name
    error = json.loads((data_root / "quarantine" / scenario / "s0003.error.json").read_text())
    assert problem in error["error"] and error["file"] == str(path)
    assert not (data_root / "records" / scenario / "s0003.parquet").exists()
    assert not (data_root / "snapshots" / scenario / "s0003.json").exists()
    others = [k for k in sessions if not k.endswith(".s0003") or not k.startswith(scenario)]
    for key in others:
        sc, sid = key.split(".")
        assert (data_root / "snapshots" / sc / f"{sid}.json").is_file()
    assert _landing_digests(data_root) == before


def test_fixing_a_file_clears_its_error_and_quarantine(data_root: Path, small_landing: Path):
    path = next((data_root / "landing").rglob("s0004.parquet"))
    good = path.read_bytes()
    path.write_bytes(b"garbage")
    materialize(data_root, ["raw_records"], log_level="WARNING")
    error = data_root / "quarantine" / path.parent.name / "s0004.error.json"
    assert error.is_file()
    path.write_bytes(good)
    materialize(data_root, ["raw_records"], log_level="WARNING")
    assert not error.exists()
    assert (data_root / "records" / path.parent.name / "s0004.parquet").is_file()


def test_badly_named_landing_files_are_refused_by_name(data_root: Path, capsys):
    bad_dir = data_root / "landing" / "bad scenario"
    bad_dir.mkdir()
    src = next((data_root / "landing").rglob("s0001.parquet"))
    (bad_dir / "s0001.parquet").write_bytes(src.read_bytes())
    (src.parent / "has.dot.parquet").write_bytes(src.read_bytes())
    sessions, _, refused = materialize(data_root, ["raw_records"], log_level="WARNING")
    assert any("'bad scenario'" in r for r in refused)
    assert any("'has.dot'" in r for r in refused)
    assert all(" " not in k and "has.dot" not in k for k in sessions)
    assert not (data_root / "records" / "bad scenario").exists()


def test_import_refuses_a_bad_session_name_with_one_line(tmp_path: Path, capsys):
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text('{"Action": {"tick": 1, "worker_id": 0, "action": "CheckStatus"}}\n')
    code = main(["import", str(jsonl), "--scenario", "ok", "--session", "../etc", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "'../etc'" in err and "\n" not in err and "Traceback" not in err
