"""Episodes: the unit of learning, cut from a session's record stream by a learn model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..contract.typed_records import ActionRecord
from .outcome import Outcome


def episode_id(scenario: str, session_id: str, learn_model: str, worker_id: int | None, first_seq: int | None) -> str:
    """A stable id: the same input always yields the same id, so re-runs replace instead of duplicating.

    The reference used wall-clock time plus a counter; that cannot be idempotent, so the id is a hash
    of where the episode starts instead. The batched path computes the same value (see `episode_table`).
    """
    key = f"{scenario}/{session_id}/{learn_model}/{worker_id}/{first_seq}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Episode:
    """A sequence of action records of one worker with its judged outcome."""

    learn_model: str = "unknown"
    records: list[ActionRecord] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome.unknown)
    scenario: str = ""
    session_id: str = ""
    id: str | None = None
    task_id: str | None = None
    group_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.id is None:
            first = self.records[0] if self.records else None
            self.id = episode_id(
                self.scenario, self.session_id, self.learn_model, self.worker_id(), first.seq if first else None
            )

    def is_success(self) -> bool:
        return self.outcome.is_success()

    def worker_id(self) -> int | None:
        return self.records[0].worker_id if self.records else None

    def get_task_id(self) -> str | None:
        """The explicit task id, else the first action's."""
        if self.task_id is not None:
            return self.task_id
        return self.records[0].task_id if self.records else None

    def get_group_id(self) -> str | None:
        if self.group_id is not None:
            return self.group_id
        return self.records[0].group_id if self.records else None

    def context(self) -> str | None:
        """The task context the worker was given (first action that carries one)."""
        return next((r.context for r in self.records if r.context), None)

    def actions(self) -> list[str]:
        return [r.action for r in self.records]

    def decision_actions(self) -> list[str]:
        """Actions without system events: what a decision model should learn to produce."""
        return [r.action for r in self.records if not r.is_system_event()]

    def selection_logic(self) -> str | None:
        """The strategy an episode counts for: its first decision's selection logic."""
        return next((r.selection_logic for r in self.records if not r.is_system_event()), None)

    def started_at_ms(self) -> int | None:
        times = [r.timestamp_ms for r in self.records if r.timestamp_ms is not None]
        return min(times) if times else None

    def ended_at_ms(self) -> int | None:
        times = [r.timestamp_ms for r in self.records if r.timestamp_ms is not None]
        return max(times) if times else None
