"""Bad input at every door (DESIGN §4), one table per door, so the list is easy to extend: each case
gets one clear line naming the file / row / field and what was expected, the other sessions go on,
landing files are never changed, and nothing is written outside the data root."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.cli import main
from swarm_learn_assets.simulate import simulate

SESSION_STEPS = "raw_records,episodes,session_snapshot"


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> Path:
    """A data root of 1 scenario x 3 sessions inside a folder whose other contents are watched."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    simulate(tmp_path / "data", scenarios=1, sessions=3, seed=4)
    return tmp_path


def _outside(world: Path) -> dict[str, str]:
    """Every file outside the data root and the instance: nothing may appear or change there."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(world.rglob("*"))
            if p.is_file() and not p.is_relative_to(world / "data") and not p.is_relative_to(world / "home")}  # fmt: skip


def _landing(world: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((world / "data" / "landing").rglob("*"))
            if p.is_file()}  # fmt: skip


def _victim(world: Path) -> Path:
    return sorted((world / "data" / "landing").rglob("s0002.parquet"))[0]


def _set(path: Path, column: str, value, dtype: pa.DataType, row_kind: str = "action") -> None:
    """Put `value` into `column` of the first row of kind `row_kind`."""
    table = pq.read_table(path)
    first = table.column("kind").to_pylist().index(row_kind)
    values = table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows
    values[first] = value
    array = pa.array(values, dtype)
    table = (table.set_column(table.column_names.index(column), column, array) if column in table.column_names
             else table.append_column(column, array))  # fmt: skip
    pq.write_table(table, path)


# -- landing file contents: the file gets an error file, or its row is quarantined with a reason --

def _empty_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _zero_rows(path: Path) -> None:
    pq.write_table(pq.read_table(path).slice(0, 0), path)


def _nan_confidence(path: Path) -> None:
    _set(path, "confidence", float("nan"), pa.float64())


def _inf_failure_rate(path: Path) -> None:
    _set(path, "failure_rate", float("-inf"), pa.float64())


def _far_future(path: Path) -> None:
    _set(path, "timestamp_ms", int(time.time() * 1000) + 10 * 365 * 24 * 3600 * 1000, pa.int64())


def _megabyte_prompt(path: Path) -> None:
    _set(path, "context", "x" * 1_048_576, pa.string())


CONTENT_CASES: list[tuple[str, Callable[[Path], None], str, str]] = [
    # (case, how the file is broken, where the reason goes, what the reason says)
    ("0 bytes", _empty_bytes, "error", "cannot be read as parquet (ArrowInvalid: Parquet file size is 0 bytes)"),
    ("zero rows", _zero_rows, "error", "has no rows; expected at least one record"),
    ("NaN double", _nan_confidence, "quarantine", "confidence: expected a finite number, got nan"),
    ("inf double", _inf_failure_rate, "quarantine", "failure_rate: expected a finite number, got -inf"),
    ("future timestamp", _far_future, "quarantine", "timestamp_ms: expected at most a day after now, got "),
    ("1 MB string", _megabyte_prompt, "quarantine", "context: expected at most 262144 bytes, got 1048576"),
]


@pytest.mark.parametrize(("case", "breaks", "where", "says"), CONTENT_CASES, ids=[c[0] for c in CONTENT_CASES])
def test_landing_contents(world: Path, capsys, case, breaks, where, says):
    victim = _victim(world)
    breaks(victim)
    landing, outside = _landing(world), _outside(world)
    root = world / "data"
    assert main(["materialize", "--data-root", str(root), "--assets", SESSION_STEPS]) == 0
    scenario = victim.parent.name
    if where == "error":
        error = json.loads((root / "quarantine" / scenario / "s0002.error.json").read_text())
        assert error["file"] == str(victim) and says in error["error"]
        assert f"{victim}: {says}" in capsys.readouterr().err  # the run's log names it too
    else:
        rejected = pq.read_table(root / "quarantine" / scenario / "s0002.parquet")
        reasons = rejected.column("reject_reason").to_pylist()
        assert len(reasons) == 1 and reasons[0].startswith(says), reasons
        assert pc.sum(rejected.column("source_row")).as_py() is not None  # the row it came from
    for other in ("s0001", "s0003"):  # the other sessions go on
        assert (root / "snapshots" / scenario / f"{other}.json").is_file()
    assert _landing(world) == landing and _outside(world) == outside


# -- landing names: the file is refused by name, the others go on ---------------------------------

NAME_CASES: list[tuple[str, str]] = [
    # (path under landing/, the refused name as the message quotes it)
    ("bad scenario/s0001.parquet", "'bad scenario'"),
    (".hidden/s0001.parquet", "'.hidden'"),
    (f"{'x' * 65}/s0001.parquet", f"'{'x' * 65}'"),
    ("ünïcode/s0001.parquet", "'ünïcode'"),
    ("{scenario}/has space.parquet", "'has space'"),
    ("{scenario}/.dotted.parquet", "'.dotted'"),
    ("{scenario}/a.b.parquet", "'a.b'"),
    ("{scenario}/" + "s" * 65 + ".parquet", "'" + "s" * 65 + "'"),
    ("{scenario}/naïve.parquet", "'naïve'"),
]


@pytest.mark.parametrize(("where", "quoted"), NAME_CASES, ids=[c[0][:24] for c in NAME_CASES])
def test_landing_names(world: Path, capsys, where, quoted):
    root = world / "data"
    good = _victim(world)
    bad = root / "landing" / where.format(scenario=good.parent.name)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(good.read_bytes())
    outside = _outside(world)
    assert main(["materialize", "--data-root", str(root), "--assets", SESSION_STEPS]) == 0
    refused = [line for line in capsys.readouterr().err.splitlines() if line.startswith("refused: ")]
    assert len(refused) == 1 and quoted in refused[0] and "expected" in refused[0]
    assert len(list((root / "snapshots").rglob("*.json"))) == 3  # the good sessions, and only they
    assert _outside(world) == outside


# -- swarm-learn import: one line naming the file and line -------------------------------------------

ACTION = {"tick": 1, "worker_id": 0, "action": "CheckStatus", "timestamp_ms": 1_700_000_000_000}
IMPORT_CASES: list[tuple[str, str, str]] = [
    ("malformed JSON", json.dumps({"Action": ACTION}) + "\n{not json\n", "events.jsonl line 2: not valid JSON"),
    ("unknown variant", json.dumps({"Teleport": {"tick": 1}}) + "\n", "events.jsonl line 1: unknown record type 'Teleport'; expected one of Action, Llm"),
    ("empty file", "", "events.jsonl: contains no records; expected one JSON record per line"),
    ("blank lines only", "\n\n", "events.jsonl: contains no records; expected one JSON record per line"),
]


@pytest.mark.parametrize(("case", "text", "says"), IMPORT_CASES, ids=[c[0] for c in IMPORT_CASES])
def test_import(world: Path, capsys, case, text, says):
    source = world / "events.jsonl"
    source.write_text(text)
    outside = _outside(world)
    code = main(["import", str(source), "--scenario", "imported", "--session", "s9", "--data-root", str(world / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and says in err, err
    assert not (world / "data" / "landing" / "imported").exists()
    assert _outside(world) == outside


# -- names in CLI flags: refused before anything is read or written ----------------------------------

FLAG_NAMES = ["../etc", "a/b", "has space", ".hidden", "x" * 65, "ünï"]
FLAG_COMMANDS: list[tuple[str, Callable[[str, Path], list[str]]]] = [
    ("import --scenario", lambda name, w: ["import", str(w / "events.jsonl"), "--scenario", name, "--session", "s1"]),
    ("import --session", lambda name, w: ["import", str(w / "events.jsonl"), "--scenario", "sc", "--session", name]),
    ("adapters list", lambda name, w: ["adapters", "list", "--scenario", name]),
    ("adapters export-gguf", lambda name, w: ["adapters", "export-gguf", "--scenario", name]),
    ("train", lambda name, w: ["train", "--scenario", name]),
]


@pytest.mark.parametrize("name", FLAG_NAMES)
@pytest.mark.parametrize(("command", "argv"), FLAG_COMMANDS, ids=[c[0] for c in FLAG_COMMANDS])
def test_names_in_flags(world: Path, capsys, command, argv, name):
    (world / "events.jsonl").write_text(json.dumps({"Action": ACTION}) + "\n")
    outside, landing = _outside(world), _landing(world)
    code = main([*argv(name, world), "--data-root", str(world / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and repr(name) in err and "expected 1-64 characters" in err, err
    assert _outside(world) == outside and _landing(world) == landing
    assert not (world / "data" / "adapters").exists() and not (world / "data" / "datasets").exists()
