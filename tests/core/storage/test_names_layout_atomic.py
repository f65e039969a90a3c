"""Safe names, partition keys, the data layout's landing scan, and atomic writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.core.storage.atomic import (
    _write_atomically,
    remove_stale_temps,
    write_json,
    write_parquet,
    write_text,
)
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.core.storage.names import (
    InvalidNameError,
    session_partition_key,
    split_session_key,
    validate_name,
)

# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "troubleshooting", "A-1_b", "0abc", "x" * 64, "s-2024_01"])
def test_valid_names(name):
    assert validate_name("scenario", name) == name


@pytest.mark.parametrize(
    "name", ["../x", "a.b", "", "x" * 65, "-lead", "_lead", "a/b", "a b", "\na", "a\tb", "é", "a'b", 'a"b', None, 5]
)
def test_invalid_names(name):
    with pytest.raises(InvalidNameError) as info:
        validate_name("scenario", name)
    assert repr(name) in str(info.value)
    assert "scenario" in str(info.value)


@pytest.mark.parametrize("name", ["a\n", "x" * 64 + "\n"])
def test_trailing_newline_is_invalid(name):
    with pytest.raises(InvalidNameError):
        validate_name("session id", name)


def test_invalid_name_error_is_value_error():
    assert issubclass(InvalidNameError, ValueError)


def test_session_key_round_trip():
    key = session_partition_key("troubleshooting", "s-001")
    assert key == "troubleshooting.s-001"
    assert split_session_key(key) == ("troubleshooting", "s-001")


@pytest.mark.parametrize("key", ["nodot", "a.b.c", ".b", "a.", "../x.y", "a.-b"])
def test_split_session_key_refuses(key):
    with pytest.raises(InvalidNameError):
        split_session_key(key)


def test_session_partition_key_refuses_bad_parts():
    with pytest.raises(InvalidNameError, match="session id"):
        session_partition_key("sc", "a.b")
    with pytest.raises(InvalidNameError, match="scenario"):
        session_partition_key("../sc", "s1")


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


def test_layout_paths(tmp_path: Path):
    layout = DataLayout(tmp_path)
    assert layout.landing("sc.s1") == tmp_path / "landing" / "sc" / "s1.parquet"
    assert layout.records("sc.s1") == tmp_path / "records" / "sc" / "s1.parquet"
    assert layout.quarantine("sc.s1") == tmp_path / "quarantine" / "sc" / "s1.parquet"
    assert layout.error("sc.s1") == tmp_path / "quarantine" / "sc" / "s1.error.json"
    assert layout.episodes("sc.s1") == tmp_path / "episodes" / "sc" / "s1.parquet"
    assert layout.snapshot("sc.s1") == tmp_path / "snapshots" / "sc" / "s1.json"
    assert layout.scenario_model("sc") == tmp_path / "models" / "sc" / "scenario_model.json"
    with pytest.raises(InvalidNameError):
        layout.landing("../etc.passwd")
    with pytest.raises(InvalidNameError):
        layout.scenario_model("..")


def test_scan_landing_without_landing_dir(tmp_path: Path):
    assert DataLayout(tmp_path).scan_landing() == ([], [])


def test_scan_landing_keeps_good_refuses_bad(tmp_path: Path):
    base = tmp_path / "landing"
    for rel in ["good/s2.parquet", "good/s1.parquet", "good/bad.name.parquet", "bad scenario/s1.parquet",
                "other/s3.parquet"]:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(b"")
    (base / "good" / "notes.txt").write_text("ignored")
    (base / "stray.parquet").write_bytes(b"")  # not inside a scenario directory

    found, refused = DataLayout(tmp_path).scan_landing()

    assert [(f.scenario, f.session_id) for f in found] == [("good", "s1"), ("good", "s2"), ("other", "s3")]
    assert [f.key for f in found] == ["good.s1", "good.s2", "other.s3"]
    assert found[0].path == base / "good" / "s1.parquet"
    assert len(refused) == 2
    bad_file = next(m for m in refused if "bad.name" in m)
    assert str(base / "good" / "bad.name.parquet") in bad_file
    assert "invalid session id 'bad.name'" in bad_file
    bad_dir = next(m for m in refused if "bad scenario" in m)
    assert "invalid scenario 'bad scenario'" in bad_dir


def test_stale_sessions_are_those_without_outputs_newer_than_their_landing_file(tmp_path: Path):
    layout = DataLayout(tmp_path)
    assets = ("raw_records", "episodes", "session_snapshot")
    keys = ["sc.done", "sc.partial", "sc.relanded", "sc.unreadable", "sc.gone", "other.new"]

    def write(path: Path, at_ns: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, ns=(at_ns, at_ns))

    for key in keys[:4] + ["other.new"]:
        write(layout.landing(key), 0)  # its ctime is now: the outputs below are written one hour later
    later = time.time_ns() + 3600 * 10**9
    for key in ("sc.done", "sc.relanded"):
        for out in layout.session_outputs(key, assets):
            write(out, later)
    write(layout.records("sc.partial"), later)  # episodes and snapshot missing
    write(layout.error("sc.unreadable"), later)  # could not be read: its error report is its output
    write(layout.snapshot("sc.gone"), later)  # outputs of a landing file that is gone
    write(layout.snapshot_dir("sc").parent.parent / "episodes" / "sc" / ".done.123.tmp", later)  # a temporary
    earlier = time.time_ns() - 3600 * 10**9
    os.utime(layout.episodes("sc.relanded"), ns=(earlier, earlier))  # older than the landing file's change

    assert layout.stale_sessions(keys, assets) == ["sc.partial", "sc.relanded", "sc.gone", "other.new"]
    assert layout.stale_sessions(keys, ("raw_records",)) == ["sc.gone", "other.new"]
    assert layout.stale_sessions(["other.new"], ()) == []  # landed, and nothing asked of it


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_json_equal_payloads_give_equal_bytes(tmp_path: Path):
    a = write_json({"b": 1, "a": [1, 2], "c": {"y": 2, "x": "é"}}, tmp_path / "a.json")
    b = write_json({"c": {"x": "é", "y": 2}, "a": [1, 2], "b": 1}, tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text(encoding="utf-8")) == {"a": [1, 2], "b": 1, "c": {"x": "é", "y": 2}}
    assert a.read_bytes().endswith(b"\n")
    assert "é".encode() in a.read_bytes()  # not escaped
    assert leftovers(tmp_path) == []


def test_write_json_replaces_and_creates_parents(tmp_path: Path):
    path = tmp_path / "deep" / "dir" / "x.json"
    write_json({"n": 1, "long": "x" * 100}, path)
    write_json({"n": 2}, path)
    assert json.loads(path.read_text()) == {"n": 2}  # replaced, nothing of the longer old file left
    assert leftovers(path.parent) == []
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_write_parquet_round_trip_no_temp_files(tmp_path: Path):
    table = pa.table({"a": [1, 2, 3]})
    path = write_parquet(table, tmp_path / "t.parquet")
    assert pq.read_table(path).equals(table)
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path):
    path = tmp_path / "x.txt"
    write_text("old", path)

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _write_atomically(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_unserialisable_json_leaves_nothing(tmp_path: Path):
    with pytest.raises(TypeError):
        write_json({"x": object()}, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, file_mode: int, dir_mode: int):
    """The data root is read by other processes (the UI, containers): mkstemp's 0600 must not stick."""
    script = (
        "import os, sys; from pathlib import Path; os.umask(int(sys.argv[2], 8))\n"
        "from swarm_learn_assets.core.storage.atomic import make_temp_dir, write_json\n"
        "write_json({'a': 1}, Path(sys.argv[1]) / 'x.json')\n"
        "print(oct(make_temp_dir(Path(sys.argv[1]) / 'd').stat().st_mode & 0o777))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), oct(umask)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == file_mode
    assert out.strip() == oct(dir_mode)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path):
    dead, alive = _dead_pid(), os.getppid()
    (tmp_path / "x.json").write_text("{}")  # a final file
    (tmp_path / ".hidden").write_text("")  # not a temporary name
    (tmp_path / f".x.json.{dead}.k3j2.tmp").write_text("half")  # a killed writer's file
    (tmp_path / f".sft.{dead}.ab12.partial").mkdir()  # a killed writer's folder
    (tmp_path / f".sft.{dead}.ab12.partial" / "data.arrow").write_text("half")
    (tmp_path / f".adapter.gguf.{dead}.partial").write_text("half")
    (tmp_path / f".x.json.{alive}.q9.tmp").write_text("in progress")  # a live writer's: kept
    old = tmp_path / f".y.json.{alive}.q8.tmp"
    old.write_text("forgotten")
    os.utime(old, (time.time() - 7 * 3600,) * 2)  # older than any write takes: the pid was reused
    removed = remove_stale_temps(tmp_path, tmp_path / "missing")
    assert len(removed) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".hidden", f".x.json.{alive}.q9.tmp", "x.json"])


def test_a_session_run_removes_what_a_killed_run_left(tmp_path: Path):
    from swarm_learn_assets.core.stages.session_batch import process_sessions
    from swarm_learn_assets.simulate import simulate

    simulate(tmp_path, scenarios=1, sessions=1, seed=3)
    layout = DataLayout(tmp_path)
    (key,) = [f.key for f in layout.scan_landing()[0]]
    dead = _dead_pid()
    for folder in layout.session_folders(key.split(".")[0]):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f".s.parquet.{dead}.zz.tmp").write_text("half")
    process_sessions(layout, [key])
    left = [p for f in layout.session_folders(key.split(".")[0]) for p in f.iterdir() if p.name.startswith(".")]
    assert left == [] and layout.episodes(key).is_file()
