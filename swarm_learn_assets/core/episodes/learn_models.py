"""Learn models: what counts as an episode, how it is judged, and how it becomes training data.

These are the per-record implementations of the reference's `LearnModel`s. They define the rules;
`episode_table` applies the same rules to whole batches of sessions at once, and a test checks that
both agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..contract.schema import SYSTEM_EVENTS
from ..contract.typed_records import ActionRecord, Record, RecordStream
from ..llm.prompts import (
    DECISION_SYSTEM_PROMPT,
    TASK_SYSTEM_PROMPT,
    decision_prompt,
    decision_response,
    task_prompt,
    task_response,
)
from ..llm.training_data import TrainingData
from .episode import Episode
from .outcome import Outcome

WORKER_TASK = "worker_task"
WORKER_DECISION_SEQUENCE = "worker_decision_sequence"
DEFAULT_AVAILABLE_ACTIONS = ("CheckStatus", "ReadLogs", "AnalyzeMetrics", "Diagnose", "Restart")


class LearnError(ValueError):
    """An episode that cannot become training data, with the reason."""


class LearnModel(Protocol):
    """What to learn: episode cutting, judging and conversion, as one pluggable unit."""

    name: str
    objective: str

    def build_episodes(self, records: Sequence[Record], scenario: str = "", session_id: str = "") -> list[Episode]: ...

    def evaluate(self, records: Sequence[ActionRecord]) -> Outcome: ...

    def convert(self, episode: Episode) -> TrainingData: ...


@dataclass
class WorkerTaskLearn:
    """Per worker, the actions from a task's start up to its `done` event form one episode."""

    min_actions: int = 2
    system_prompt: str = TASK_SYSTEM_PROMPT
    name: str = WORKER_TASK
    objective: str = "Learn complete worker task sequences from start to done"

    def evaluate(self, records: Sequence[ActionRecord]) -> Outcome:
        if not records:
            return Outcome.failure("Empty context: no actions to evaluate")
        last = records[-1]
        if last.is_terminal():
            return Outcome.success_binary() if last.success else Outcome.failure("Task failed")
        return Outcome.unknown()

    def build_episodes(self, records: Sequence[Record], scenario: str = "", session_id: str = "") -> list[Episode]:
        episodes = []
        by_worker: dict[int, list[ActionRecord]] = defaultdict(list)
        for action in RecordStream(records).actions():
            by_worker[action.worker_id].append(action)
        for worker in sorted(by_worker):
            current: list[ActionRecord] = []
            for action in by_worker[worker]:
                current.append(action)
                if action.is_terminal():
                    if len(current) >= self.min_actions:
                        episodes.append(
                            Episode(self.name, list(current), self.evaluate(current), scenario, session_id)
                        )
                    current = []
        return episodes

    def convert(self, episode: Episode) -> TrainingData:
        if not episode.is_success():
            raise LearnError("Episode is not successful")
        if len(episode.records) < self.min_actions:
            raise LearnError(f"Too few actions: {len(episode.records)} < {self.min_actions}")
        actions = episode.decision_actions()
        prompt, response = task_prompt(actions), task_response(actions)
        return TrainingData.sft(
            self.system_prompt,
            prompt,
            response,
            episode_id=episode.id,
            outcome_score=episode.outcome.score(),
            learn_model=self.name,
        )


@dataclass
class WorkerDecisionSequenceLearn:
    """Per worker, all successful decisions (system events left out) form one episode."""

    min_actions: int = 3
    available_actions: Sequence[str] = DEFAULT_AVAILABLE_ACTIONS
    system_events: Sequence[str] = SYSTEM_EVENTS
    system_prompt: str = DECISION_SYSTEM_PROMPT
    name: str = WORKER_DECISION_SEQUENCE
    objective: str = "Learn successful action sequences for problem resolution"

    def _decisions(self, records: Iterable[ActionRecord]) -> list[ActionRecord]:
        return [r for r in records if r.success and r.action not in self.system_events]

    def evaluate(self, records: Sequence[ActionRecord]) -> Outcome:
        if not records:
            return Outcome.failure("Empty context: no actions to evaluate")
        count = len(self._decisions(records))
        if count >= self.min_actions:
            return Outcome.success(1.0)
        return Outcome.failure(f"Insufficient successful actions: {count} < {self.min_actions}")

    def build_episodes(self, records: Sequence[Record], scenario: str = "", session_id: str = "") -> list[Episode]:
        by_worker: dict[int, list[ActionRecord]] = defaultdict(list)
        for action in self._decisions(RecordStream(records).actions()):
            by_worker[action.worker_id].append(action)
        return [
            Episode(self.name, actions, self.evaluate(actions), scenario, session_id)
            for worker, actions in sorted(by_worker.items())
            if len(actions) >= self.min_actions
        ]

    def convert(self, episode: Episode) -> TrainingData:
        if not episode.is_success():
            raise LearnError("Episode is not successful")
        actions = episode.actions()
        if len(actions) < self.min_actions:
            raise LearnError(f"Too few actions: {len(actions)} < {self.min_actions}")
        return TrainingData.sft(
            self.system_prompt,
            decision_prompt(episode.context(), self.available_actions),
            decision_response(actions),
            episode_id=episode.id,
            outcome_score=episode.outcome.score(),
            learn_model=self.name,
        )


@dataclass(frozen=True)
class DpoConfig:
    """Pairing limits; defaults keep every pair with a non-negative gap, each episode used once."""

    min_quality_gap: float = 0.0
    max_pairs: int | None = None
    allow_reuse: bool = False


@dataclass(frozen=True)
class DpoPair:
    chosen: Episode
    rejected: Episode
    group_id: str

    @property
    def quality_gap(self) -> float:
        return self.chosen.outcome.score() - self.rejected.outcome.score()


def build_dpo_pairs(episodes: Iterable[Episode], config: DpoConfig = DpoConfig()) -> list[DpoPair]:
    """Pair successes with failures of the same `group_id` (the same task run again).

    Best successes meet the worst failures first so the strongest preference signal survives a cap;
    ties break by episode id so the result does not depend on input order.
    """
    groups: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        group = episode.get_group_id()
        if group is not None:
            groups[group].append(episode)
    pairs: list[DpoPair] = []
    for group in sorted(groups):
        members = groups[group]
        wins = sorted((e for e in members if e.outcome.is_success()), key=lambda e: (-e.outcome.score(), e.id))
        losses = sorted((e for e in members if e.outcome.is_failure()), key=lambda e: (e.outcome.score(), e.id))
        if config.allow_reuse:
            candidates = [DpoPair(w, l, group) for w in wins for l in losses]
        else:
            candidates = [DpoPair(w, l, group) for w, l in zip(wins, losses)]
        pairs.extend(p for p in candidates if p.quality_gap >= config.min_quality_gap)
    return pairs[: config.max_pairs] if config.max_pairs is not None else pairs


def convert_dpo_pair(
    pair: DpoPair, available_actions: Sequence[str], system_prompt: str = DECISION_SYSTEM_PROMPT
) -> TrainingData:
    """The decision prompt of the chosen episode, its actions as chosen, the failed ones as rejected."""
    chosen, rejected = pair.chosen.decision_actions(), pair.rejected.decision_actions()
    if not chosen or not rejected:
        raise LearnError(f"DPO pair in group {pair.group_id} has an episode without decisions")
    return TrainingData.dpo(
        decision_prompt(pair.chosen.context(), available_actions),
        decision_response(chosen),
        decision_response(rejected),
        system=system_prompt,
        episode_id=pair.chosen.id,
        outcome_score=pair.quality_gap,
        learn_model="dpo",
    )
