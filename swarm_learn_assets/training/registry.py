"""The adapter registry of one scenario: versions on disk, the `current` pointer, history, rollback.

Layout under `adapters/<scenario>/`: one folder per version (`v0001`, `v0002`, …) holding the PEFT
files, `training_metrics.json`, `eval.json`, `lineage.json` and the model card; `current` (the
applied version, one line) and `history.json` (the applied versions, oldest first, at most
`MAX_HISTORY`). Applying goes through an applicator (the serving side); the pointer moves only
when the applicator succeeded, so disk and server never disagree.

`history.json` is the record; `current` is a copy of its last entry for readers that want one line.
It is written second, so a crash between the two writes leaves `current` behind, and reading the
registry repairs it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.storage.atomic import write_json, write_text
from ..core.storage.names import validate_name
from .applicators import ApplicatorError, ModelApplicator

MAX_HISTORY = 5  # the reference ApplierConfig default
VERSION = re.compile(r"^v(\d{4,})$")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done, with what was expected."""


def _read_json(file: Path, expected: str) -> Any:
    """The file's JSON, None when it is missing; a broken file is an error naming it."""
    try:
        text = file.read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RegistryError(f"{file}: not valid JSON ({exc}); expected {expected}") from None


@dataclass(frozen=True)
class AdapterVersion:
    version: str
    path: Path

    def read(self, name: str) -> dict[str, Any] | None:
        return _read_json(self.path / name, "a JSON object written by the training")

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
        """The applied version: the last entry of `history.json` (a `current` file left behind by a
        crash is brought up to date)."""
        history, pointer = self.history(), self.root / "current"
        if not history:
            return None
        version = history[-1]
        if not pointer.is_file() or pointer.read_text().strip() != version:
            write_text(version + "\n", pointer)
        try:
            return self.get(version)
        except RegistryError:
            raise RegistryError(
                f"{self.root / 'history.json'}: the applied version {version} has no {self.root / version / 'eval.json'}; "
                f"expected a finished version (apply one with: swarm-learn adapters apply --scenario {self.scenario} "
                f"--version <version>)"
            ) from None

    def history(self) -> list[str]:
        """Applied versions, oldest first. A registry written before `history.json` existed (only a
        `current` file) counts that version as its history."""
        file = self.root / "history.json"
        history = _read_json(file, "a list of version names")
        if history is None:
            pointer = self.root / "current"
            version = pointer.read_text().strip() if pointer.is_file() else ""
            return [version] if version else []
        if not isinstance(history, list) or not all(isinstance(v, str) and VERSION.match(v) for v in history):
            raise RegistryError(f"{file}: expected a list of version names like \"v0001\", got {history!r:.200}")
        return history

    def _record(self, history: list[str]) -> None:
        """history.json first (the record), then its copy in `current`."""
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
