"""The adapter registry of one scenario: versions on disk, the `current` pointer, history, rollback.

Layout under `adapters/<scenario>/`: one folder per version (`v0001`, `v0002`, …) holding the PEFT
files, `training_metrics.json`, `eval.json`, `lineage.json` and the model card; `current` (the
applied version, one line) and `history.json` (the applied versions, oldest first, at most
`MAX_HISTORY`). Applying goes through an applicator (the serving side); the pointer moves only
when the applicator succeeded, so disk and server never disagree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.atomic import write_json, write_text
from ..core.names import validate_name
from .applicators import ApplicatorError, ModelApplicator

MAX_HISTORY = 5  # the reference ApplierConfig default
VERSION = re.compile(r"^v(\d{4,})$")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done, with what was expected."""


@dataclass(frozen=True)
class AdapterVersion:
    version: str
    path: Path

    def read(self, name: str) -> dict[str, Any] | None:
        file = self.path / name
        return json.loads(file.read_text()) if file.is_file() else None

    @property
    def eval(self) -> dict[str, Any] | None:
        return self.read("eval.json")

    @property
    def exact_match(self) -> float | None:
        """The adapter's exact match on the eval rows of the sources it was trained on."""
        scores = self.eval
        return None if scores is None else scores["models"]["adapter"]["exact_match"]

    @property
    def passed_gate(self) -> bool:
        """Whether this version passed its gate (recorded in its `eval.json` when it was evaluated)."""
        scores = self.eval
        return bool(scores and scores.get("gate", {}).get("passed"))


class AdapterRegistry:
    """Versions of one scenario's adapter and which one is applied."""

    def __init__(self, root: Path, scenario: str):
        self.scenario = validate_name("scenario", scenario)
        self.root = Path(root) / scenario

    # -- versions -------------------------------------------------------------------------------

    def version_dirs(self) -> list[Path]:
        """Every version folder, finished or not (a crashed training has no `eval.json`), oldest first."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if p.is_dir() and VERSION.match(p.name)),
                      key=lambda p: int(VERSION.match(p.name).group(1)))

    def versions(self) -> list[AdapterVersion]:
        """Complete versions (those with an `eval.json`), oldest first."""
        return [AdapterVersion(p.name, p) for p in self.version_dirs() if (p / "eval.json").is_file()]

    def get(self, version: str) -> AdapterVersion:
        match = next((v for v in self.versions() if v.version == version), None)
        if match is None:
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise RegistryError(f"scenario {self.scenario}: no adapter version {version!r}; known: {known}")
        return match

    def newest_passed(self) -> AdapterVersion | None:
        """The newest version that passed its gate: the only one `applied_adapter` may apply."""
        return next((v for v in reversed(self.versions()) if v.passed_gate), None)

    def new_version_dir(self) -> AdapterVersion:
        """The folder for the next version; numbers never repeat, even after a failed training."""
        self.root.mkdir(parents=True, exist_ok=True)
        taken = [int(m.group(1)) for p in self.root.iterdir() if (m := VERSION.match(p.name))]
        version = f"v{max(taken, default=0) + 1:04d}"
        path = self.root / version
        path.mkdir()
        return AdapterVersion(version, path)

    # -- applied state --------------------------------------------------------------------------

    @property
    def current(self) -> AdapterVersion | None:
        pointer = self.root / "current"
        if not pointer.is_file():
            return None
        return self.get(pointer.read_text().strip())

    def history(self) -> list[str]:
        file = self.root / "history.json"
        return json.loads(file.read_text()) if file.is_file() else []

    def _record(self, history: list[str]) -> None:
        write_json(history[-MAX_HISTORY:], self.root / "history.json")
        if history:
            write_text(history[-1] + "\n", self.root / "current")
        else:
            (self.root / "current").unlink(missing_ok=True)

    def apply(self, version: str, applicator: ModelApplicator) -> str | None:
        """Serve `version` through the applicator, then move the pointer. Returns the previous version."""
        target = self.get(version)
        previous = self.current
        if previous is not None and previous.version == version:
            return version
        applicator.apply(self.scenario, target.version, target.path, None if previous is None else previous.version)
        self._record([*[v for v in self.history() if v != version], version])
        return None if previous is None else previous.version

    def rollback(self, applicator: ModelApplicator) -> str:
        """Re-apply the version applied before the current one; returns it."""
        history = self.history()
        if len(history) < 2:
            raise RegistryError(
                f"scenario {self.scenario}: nothing to roll back to; history is {history or 'empty'}"
            )
        current, previous = history[-1], history[-2]
        target = self.get(previous)
        try:
            applicator.apply(self.scenario, target.version, target.path, current)
        except ApplicatorError as exc:
            raise RegistryError(f"scenario {self.scenario}: rollback to {previous} failed: {exc}") from exc
        self._record(history[:-1])
        return previous
