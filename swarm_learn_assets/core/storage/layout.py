"""Where everything lives under the data root (DESIGN §3). No other module builds these paths; the
folder listings that many sessions are judged by (`file_stats`) live here too."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .names import (
    PARTITION_SEPARATOR,
    InvalidNameError,
    session_partition_key,
    split_session_key,
    validate_name,
)

DATA_ROOT_ENV = "SWARM_LEARN_DATA"
LANDING_SUFFIX = ".parquet"


def default_data_root() -> Path:
    """`$SWARM_LEARN_DATA`, else `./data` of the current directory."""
    return Path(os.environ.get(DATA_ROOT_ENV) or "data").resolve()


@dataclass(frozen=True)
class LandingFile:
    scenario: str
    session_id: str
    path: Path

    @property
    def key(self) -> str:
        return session_partition_key(self.scenario, self.session_id)


# The data areas under the root (DESIGN §3), each holding one folder per scenario.
AREAS = ("landing", "records", "quarantine", "episodes", "snapshots", "models", "datasets", "adapters")
# What each session asset writes per session: (area, file suffix).
SESSION_OUTPUTS = {"raw_records": ("records", ".parquet"), "episodes": ("episodes", ".parquet"),
                   "session_snapshot": ("snapshots", ".json")}


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def folder(self, area: str, scenario: str | None = None) -> Path:
        """An area (`records`, …), or one scenario's folder in it."""
        if area not in AREAS:
            raise ValueError(f"unknown data area {area!r}; expected one of {', '.join(AREAS)}")
        return self.root / area if scenario is None else self.root / area / validate_name("scenario", scenario)

    def _session_file(self, area: str, suffix: str, key: str) -> Path:
        scenario, session_id = split_session_key(key)
        return self.root / area / scenario / f"{session_id}{suffix}"

    def landing(self, key: str) -> Path:
        return self._session_file("landing", LANDING_SUFFIX, key)

    def records(self, key: str) -> Path:
        return self._session_file("records", ".parquet", key)

    def quarantine(self, key: str) -> Path:
        return self._session_file("quarantine", ".parquet", key)

    def error(self, key: str) -> Path:
        return self._session_file("quarantine", ".error.json", key)

    def episodes(self, key: str) -> Path:
        return self._session_file("episodes", ".parquet", key)

    def snapshot(self, key: str) -> Path:
        return self._session_file("snapshots", ".json", key)

    def session_outputs(self, key: str, assets: Sequence[str]) -> list[Path]:
        """What each session asset writes for one session (DESIGN §3)."""
        return [self._session_file(*SESSION_OUTPUTS[a], key) for a in assets if a in SESSION_OUTPUTS]

    def stale_sessions(self, keys: Sequence[str], assets: Sequence[str]) -> list[str]:
        """The sessions among `keys` (in their order) whose outputs of `assets` are missing or older
        than their landing file's last change (its `ctime`: set by the rename that landed it, and by
        any rewrite). A file that could not be read is current once its error report is newer. What
        `swarm-learn materialize` skips the rest by, so that its cost follows the new sessions, not
        the history: each folder is listed once (one `stat` per file), not asked per session."""
        by_scenario: dict[str, list[tuple[str, str]]] = {}
        for key in keys:
            scenario, session_id = split_session_key(key)
            by_scenario.setdefault(scenario, []).append((key, session_id))
        stale: set[str] = set()
        for scenario, sessions in by_scenario.items():
            landed = file_times(self.folder("landing", scenario), LANDING_SUFFIX, ctime=True)
            errors = file_times(self.folder("quarantine", scenario), ".error.json")
            outputs = [file_times(self.folder(area, scenario), suffix)
                       for area, suffix in (SESSION_OUTPUTS[a] for a in assets if a in SESSION_OUTPUTS)]
            for key, session_id in sessions:
                changed = landed.get(session_id)
                current = changed is not None and (
                    errors.get(session_id, -1) >= changed or all(o.get(session_id, -1) >= changed for o in outputs))
                if not current:
                    stale.add(key)
        return [k for k in keys if k in stale]

    def session_folders(self, scenario: str) -> list[Path]:
        """The folders the session stages write into for one scenario (landing is never written)."""
        return [self.folder(area, scenario) for area in ("records", "quarantine", "episodes", "snapshots")]

    def scenario_model(self, scenario: str) -> Path:
        return self.folder("models", scenario) / "scenario_model.json"

    @property
    def state_dir(self) -> Path:
        """`.swarm-learn/`: the pipeline's own bookkeeping, not data — what it can rebuild from the
        data areas when it is missing (and so left out of every byte-for-byte comparison)."""
        return self.root / ".swarm-learn"

    def merge_index(self, scenario: str) -> Path:
        """`.swarm-learn/models/<scenario>.json`: which snapshot files the scenario model holds."""
        return self.state_dir / "models" / f"{validate_name('scenario', scenario)}.json"

    def summary_cache(self, scenario: str) -> Path:
        """`.swarm-learn/summary/<scenario>.json`: row and episode counts per file, for `status`."""
        return self.state_dir / "summary" / f"{validate_name('scenario', scenario)}.json"

    @property
    def global_model(self) -> Path:
        """`models/global_model.json`: every scenario's statistics added up (DESIGN §3)."""
        return self.root / "models" / "global_model.json"

    def scenario_models(self) -> list[Path]:
        """The scenario models on disk, by scenario name."""
        folder = self.root / "models"
        return sorted(folder.glob("*/scenario_model.json")) if folder.is_dir() else []

    def snapshot_dir(self, scenario: str) -> Path:
        return self.folder("snapshots", scenario)

    def episodes_dir(self, scenario: str) -> Path:
        return self.folder("episodes", scenario)

    def dataset_dir(self, scenario: str) -> Path:
        """`datasets/<scenario>/` holding `sft/`, `dpo/` and `manifest.json`."""
        return self.folder("datasets", scenario)

    @property
    def adapters_root(self) -> Path:
        return self.folder("adapters")

    def scan_landing(self) -> tuple[list[LandingFile], list[str]]:
        """Landing files with valid names (sorted), and one message per file whose name is refused."""
        keys, refused = self.landing_keys()
        return [LandingFile(*split_session_key(key), self.landing(key)) for key in keys], refused

    def landing_keys(self) -> tuple[list[str], list[str]]:
        """The session keys of the landing files with valid names (sorted), and one message per file
        whose name is refused: names only, one listing per scenario folder (what registering
        100,000 sessions needs, without a path object or a `stat` per file)."""
        keys: list[str] = []
        refused: list[str] = []
        base = self.folder("landing")
        if not base.is_dir():
            return keys, refused
        for scenario_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            try:
                validate_name("scenario", scenario_dir.name)
            except InvalidNameError as exc:
                refused += [f"{scenario_dir / name}: {exc}"
                            for name in sorted(os.listdir(scenario_dir)) if name.endswith(LANDING_SUFFIX)]
                continue
            with os.scandir(scenario_dir) as entries:
                names = sorted(e.name for e in entries if e.name.endswith(LANDING_SUFFIX) and e.is_file())
            prefix = scenario_dir.name + PARTITION_SEPARATOR
            for name in names:
                try:
                    keys.append(prefix + validate_name("session id", name[: -len(LANDING_SUFFIX)]))
                except InvalidNameError as exc:
                    refused.append(f"{scenario_dir / name}: {exc}")
        return keys, refused


def file_stats(folder: Path, suffix: str) -> dict[str, os.stat_result]:
    """Name without `suffix` → `stat` of each file in `folder` ending with it (hidden temporaries left
    out), from one listing; empty when there is no such folder."""
    stats: dict[str, os.stat_result] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(suffix) and not name.startswith("."):
                    try:
                        stats[name[: -len(suffix)]] = entry.stat()
                    except FileNotFoundError:  # replaced or removed since the listing
                        continue
    except (FileNotFoundError, NotADirectoryError):
        pass
    return stats


def file_times(folder: Path, suffix: str, ctime: bool = False) -> dict[str, int]:
    """Name without `suffix` → modification (or inode change) time in ns, as `file_stats`."""
    return {name: st.st_ctime_ns if ctime else st.st_mtime_ns for name, st in file_stats(folder, suffix).items()}
