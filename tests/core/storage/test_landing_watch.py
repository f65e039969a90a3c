"""The landing folder watch: which files changed since the last look, with state that does not grow."""

from __future__ import annotations

from pathlib import Path

from swarm_learn_assets.core.storage.landing_watch import (
    LandedFile,
    ScenarioWatch,
    advance,
    changed_files,
    needs_scan,
    scan_scenario,
)


def landed(session: str, ctime: int) -> LandedFile:
    return LandedFile("sc", session, Path(f"/x/sc/{session}.parquet"), 10, ctime, ctime)


def test_a_first_look_takes_every_file_and_later_looks_only_newer_ones():
    files = [landed("s1", 100), landed("s2", 200), landed("s3", 200)]
    assert changed_files(files, None) == files
    watch = ScenarioWatch()
    advance(watch, files)
    assert (watch.watermark_ns, watch.at_watermark) == (200, ["sc.s2", "sc.s3"])
    assert changed_files(files, watch) == []
    later = [*files, landed("s4", 200), landed("s5", 300)]  # s4 shares the watermark's time (coarse clock)
    assert [f.session_id for f in changed_files(later, watch)] == ["s4", "s5"]
    advance(watch, [landed("s4", 200)])  # capped after s4: s5 waits
    assert (watch.watermark_ns, watch.at_watermark) == (200, ["sc.s2", "sc.s3", "sc.s4"])
    assert [f.session_id for f in changed_files(later, watch)] == ["s5"]
    advance(watch, [landed("s5", 300)])
    assert (watch.watermark_ns, watch.at_watermark) == (300, ["sc.s5"])  # the state stays small


def test_a_scan_is_needed_when_the_folder_moved_or_the_rescan_is_due():
    watch = ScenarioWatch(folder_mtime_ns=5, scanned_at=1000.0)
    assert needs_scan(None, 5, 1000.0, 300)
    assert not needs_scan(watch, 5, 1299.0, 300)
    assert needs_scan(watch, 6, 1001.0, 300) and needs_scan(watch, 5, 1300.0, 300)
    assert ScenarioWatch.from_json(watch.to_json()) == watch


def test_scan_lists_landing_files_by_change_time_and_refuses_bad_names(tmp_path: Path):
    import os

    folder = tmp_path / "sc"
    folder.mkdir()
    for name in ("b.parquet", "a.parquet"):
        (folder / name).write_bytes(b"x" * 3)
    os.utime(folder / "b.parquet")  # touching sets the change time: b is now the newest
    (folder / "bad name.parquet").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored")
    files, refused = scan_scenario(folder)
    assert [f.session_id for f in files] == ["a", "b"] and all(f.size == 3 for f in files)
    assert files[0].ctime_ns <= files[1].ctime_ns and files[0].version == f"3:{files[0].mtime_ns}"
    assert len(refused) == 1 and "bad name.parquet" in refused[0]
