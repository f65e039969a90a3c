"""Where everything lives under the data root (DESIGN §3). No other module builds these paths."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .names import InvalidNameError, session_partition_key, split_session_key, validate_name

DATA_ROOT_ENV = "SWARM_LEARN_DATA"


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


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def _session_file(self, area: str, key: str, suffix: str) -> Path:
        scenario, session_id = split_session_key(key)
        return self.root / area / scenario / f"{session_id}{suffix}"

    def landing(self, key: str) -> Path:
        return self._session_file("landing", key, ".parquet")

    def records(self, key: str) -> Path:
        return self._session_file("records", key, ".parquet")

    def quarantine(self, key: str) -> Path:
        return self._session_file("quarantine", key, ".parquet")

    def error(self, key: str) -> Path:
        return self._session_file("quarantine", key, ".error.json")

    def episodes(self, key: str) -> Path:
        return self._session_file("episodes", key, ".parquet")

    def snapshot(self, key: str) -> Path:
        return self._session_file("snapshots", key, ".json")

    def session_outputs(self, key: str, assets: Sequence[str]) -> list[Path]:
        """What each session asset writes for one session (DESIGN §3)."""
        writers = {"raw_records": self.records, "episodes": self.episodes, "session_snapshot": self.snapshot}
        return [writers[a](key) for a in assets if a in writers]

    def outputs_current(self, key: str, assets: Sequence[str]) -> bool:
        """Whether the session's outputs of `assets` exist and were written after its landing file
        last changed (its `ctime`: set by the rename that landed it, and by any rewrite). A file that
        could not be read counts as current once its error report is newer. What `swarm-learn
        materialize` skips, so that its cost follows the new sessions, not the history."""
        try:
            landed = self.landing(key).stat().st_ctime_ns
            error = self.error(key)
            if error.is_file() and error.stat().st_mtime_ns >= landed:
                return True
            return all(out.stat().st_mtime_ns >= landed for out in self.session_outputs(key, assets))
        except OSError:  # missing, or something in the way: the stage says what, when it runs
            return False

    def session_folders(self, scenario: str) -> list[Path]:
        """The folders the session stages write into for one scenario (landing is never written)."""
        name = validate_name("scenario", scenario)
        return [self.root / area / name for area in ("records", "quarantine", "episodes", "snapshots")]

    def scenario_model(self, scenario: str) -> Path:
        return self.root / "models" / validate_name("scenario", scenario) / "scenario_model.json"

    @property
    def global_model(self) -> Path:
        """`models/global_model.json`: every scenario's statistics added up (DESIGN §3)."""
        return self.root / "models" / "global_model.json"

    def scenario_models(self) -> list[Path]:
        """The scenario models on disk, by scenario name."""
        folder = self.root / "models"
        return sorted(folder.glob("*/scenario_model.json")) if folder.is_dir() else []

    def snapshot_dir(self, scenario: str) -> Path:
        return self.root / "snapshots" / validate_name("scenario", scenario)

    def episodes_dir(self, scenario: str) -> Path:
        return self.root / "episodes" / validate_name("scenario", scenario)

    def dataset_dir(self, scenario: str) -> Path:
        """`datasets/<scenario>/` holding `sft/`, `dpo/` and `manifest.json`."""
        return self.root / "datasets" / validate_name("scenario", scenario)

    @property
    def adapters_root(self) -> Path:
        return self.root / "adapters"

    def scan_landing(self) -> tuple[list[LandingFile], list[str]]:
        """Landing files with valid names (sorted), and one message per file whose name is refused."""
        found: list[LandingFile] = []
        refused: list[str] = []
        base = self.root / "landing"
        if not base.is_dir():
            return found, refused
        for scenario_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for path in sorted(scenario_dir.glob("*.parquet")):
                try:
                    found.append(
                        LandingFile(
                            validate_name("scenario", scenario_dir.name), validate_name("session id", path.stem), path
                        )
                    )
                except InvalidNameError as exc:
                    refused.append(f"{path}: {exc}")
        return found, refused
