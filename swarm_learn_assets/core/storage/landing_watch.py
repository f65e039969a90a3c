"""Which landing files changed since the last look, at a cost that does not grow with history.

A discovery tick must stay cheap with 100,000 sessions landed (DESIGN §11). Landing files arrive by
rename (written under a temporary name, then moved into place), which changes their scenario
folder's modification time; so a tick looks inside a scenario folder only when that time moved,
and then picks the files whose inode change time (`ctime`, which a rename, a copy or a write sets
and no tool can set back) is not older than the last one it handled. A file rewritten in place
does not touch its folder: every scenario is also rescanned after `rescan_seconds` as a net.

The state per scenario is four numbers and the few keys that share the newest change time — not
an entry per session.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .layout import LANDING_SUFFIX, LandingFile
from .names import InvalidNameError, validate_name


@dataclass(frozen=True)
class LandedFile(LandingFile):
    """A landing file with what one `stat` said about it."""

    size: int
    mtime_ns: int
    ctime_ns: int

    @property
    def version(self) -> str:
        """Same bytes on disk, same version: what a processing request's run key is made of."""
        return f"{self.size}:{self.mtime_ns}"


@dataclass
class ScenarioWatch:
    """What the last look at one scenario's landing folder saw."""

    folder_mtime_ns: int = -1  # -1: look inside on the next tick
    watermark_ns: int = 0  # change time of the newest file handled
    at_watermark: list[str] = field(default_factory=list)  # keys handled whose change time is the watermark
    scanned_at: float = 0.0  # when the folder was last read (seconds since the epoch)
    snapshots_mtime_ns: int = -1  # the snapshot folder's time when its model was last requested

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ScenarioWatch:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def folder_mtime_ns(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except FileNotFoundError:
        return -1


def needs_scan(watch: ScenarioWatch | None, mtime_ns: int, now: float, rescan_seconds: float) -> bool:
    return watch is None or watch.folder_mtime_ns != mtime_ns or now - watch.scanned_at >= rescan_seconds


def scan_scenario(folder: Path) -> tuple[list[LandedFile], list[str]]:
    """Every landing file of one scenario folder with its size and times (one `stat` each, from the
    directory listing), sorted by change time; and one message per file whose name is refused."""
    found, refused = [], []
    try:
        scenario = validate_name("scenario", folder.name)
    except InvalidNameError as exc:
        return [], [f"{folder}: {exc}"]
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.endswith(LANDING_SUFFIX) or not entry.is_file():
                continue
            try:
                session_id = validate_name("session id", entry.name[: -len(LANDING_SUFFIX)])
            except InvalidNameError as exc:
                refused.append(f"{Path(entry.path)}: {exc}")
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:  # moved away between listing and stat
                continue
            found.append(LandedFile(scenario, session_id, Path(entry.path), st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    found.sort(key=lambda f: (f.ctime_ns, f.key))
    return found, sorted(refused)


def changed_files(files: list[LandedFile], watch: ScenarioWatch | None) -> list[LandedFile]:
    """The files not handled yet: newer than the watermark, or at it and not among the keys handled
    there (two files can share a change time on coarse clocks). All of them on a first look."""
    if watch is None:
        return list(files)
    handled = set(watch.at_watermark)
    return [f for f in files if f.ctime_ns > watch.watermark_ns
            or (f.ctime_ns == watch.watermark_ns and f.key not in handled)]


def advance(watch: ScenarioWatch, handled: list[LandedFile]) -> None:
    """Move the watermark over files handled (in change-time order)."""
    if not handled:
        return
    newest = handled[-1].ctime_ns
    keys = [f.key for f in handled if f.ctime_ns == newest]
    watch.at_watermark = sorted(set(keys) | (set(watch.at_watermark) if newest == watch.watermark_ns else set()))
    watch.watermark_ns = newest
