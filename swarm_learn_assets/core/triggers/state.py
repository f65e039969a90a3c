"""What the training triggers look at, folded from the pipeline's own records, and their verdicts.

The training sensor reads new `episodes` and `lora_adapter` materializations since its cursor and
folds them in here; the state is small (counts per scenario and a bounded window of recent
outcomes), so a tick costs the same however long the history is, and it lives in the sensor's
cursor, so a daemon restart loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from ..storage.names import split_session_key
from .rules import (
    AndTrigger,
    CountTrigger,
    OrTrigger,
    QualityTrigger,
    TimeTrigger,
    TrainTrigger,
    TriggerContext,
    TriggerMetrics,
)

RECENT_WINDOW = 1000  # episodes of recent outcomes kept per scenario for quality rules


@dataclass
class ScenarioState:
    episodes: int = 0  # judged worker_task episodes seen, ever
    successes: int = 0
    at_last_training: int = 0  # `episodes` when the last training happened
    last_training_ms: int | None = None
    recent: list[list[int]] = field(default_factory=list)  # [episodes, successes] per batch, newest last

    def add(self, episodes: int, successes: int, window: int = RECENT_WINDOW) -> None:
        """Count a batch; keep only as many recent batches as cover `window` episodes."""
        self.episodes += episodes
        self.successes += successes
        self.recent.append([episodes, successes])
        while len(self.recent) > 1 and sum(e for e, _ in self.recent[1:]) >= window:
            self.recent.pop(0)

    def trained(self, at_ms: int) -> None:
        self.at_last_training = self.episodes
        self.last_training_ms = at_ms

    def metrics(self, window: int) -> TriggerMetrics:
        """Success rate over at least the last `window` episodes (whole batches), and overall."""
        seen = wins = 0
        for episodes, successes in reversed(self.recent):
            if seen >= window:
                break
            seen, wins = seen + episodes, wins + successes
        return TriggerMetrics(
            recent_success_rate=wins / seen if seen else 0.0,
            overall_success_rate=self.successes / self.episodes if self.episodes else 0.0,
            recent_sample_size=seen,
        )

    def context(self, now_ms: int, window: int) -> TriggerContext:
        return TriggerContext(now_ms=now_ms, event_count=self.episodes, last_train_at=self.last_training_ms,
                              last_train_count=self.at_last_training, metrics=self.metrics(window))


@dataclass
class TrainingState:
    scenarios: dict[str, ScenarioState] = field(default_factory=dict)
    episodes_cursor: str | None = None
    training_cursor: str | None = None

    def scenario(self, name: str) -> ScenarioState:
        return self.scenarios.setdefault(name, ScenarioState())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> TrainingState:
        if not text:
            return cls()
        data = json.loads(text)
        return cls({k: ScenarioState(**v) for k, v in data["scenarios"].items()},
                   data.get("episodes_cursor"), data.get("training_cursor"))


@dataclass(frozen=True)
class SessionCount:
    """One session's judged worker-task episodes and successes, as the session stage last saw it."""

    episodes: int
    successes: int

    def added_since(self, before: SessionCount | None) -> SessionCount:
        """What this observation adds to the trigger counts, given the session's previous one:
        everything for a first observation, nothing for the same content again (a re-run, a
        backfill, a retry), only the growth for a re-landed session."""
        if before is None:
            return self
        episodes = max(0, self.episodes - before.episodes)
        return SessionCount(episodes, min(episodes, max(0, self.successes - before.successes)))


def fold_session_counts(state: TrainingState, observations: Iterable[tuple[str, SessionCount, SessionCount | None]],
                        window_for: Callable[[str], int]) -> None:
    """Add each session observation `(session key, count, the session's previous count or None)`
    to its scenario, once per distinct content (see `SessionCount.added_since`)."""
    for key, count, before in observations:
        added = count.added_since(before)
        if added.episodes:
            scenario = split_session_key(key)[0]
            state.scenario(scenario).add(added.episodes, added.successes, window_for(scenario))


def quality_window(trigger: TrainTrigger) -> int:
    """How many recent episodes the trigger's quality rules want to see (1 without any)."""
    if isinstance(trigger, QualityTrigger):
        return trigger.min_samples
    return max([1, *(quality_window(t) for t in getattr(trigger, "triggers", ()))])


def explain(trigger: TrainTrigger, ctx: TriggerContext) -> str:
    """Why the trigger fires or not, rule by rule, with the numbers it looked at."""
    fired = "yes" if trigger.should_train(ctx) else "no"
    if isinstance(trigger, (OrTrigger, AndTrigger)):
        joiner = " | " if isinstance(trigger, OrTrigger) else " & "
        return f"{fired}: (" + joiner.join(explain(t, ctx) for t in trigger.triggers) + ")"
    if isinstance(trigger, CountTrigger):
        new = max(0, (ctx.event_count or 0) - ctx.last_train_count)
        return f"{fired}: {new} new episodes since the last training, needs {trigger.n}"
    if isinstance(trigger, TimeTrigger):
        if ctx.last_train_at is None:
            return f"{fired}: never trained (every {trigger.interval_ms / 1000:g}s)"
        return (f"{fired}: {(ctx.now_ms - ctx.last_train_at) / 1000:.0f}s since the last training, "
                f"needs {trigger.interval_ms / 1000:g}s")
    if isinstance(trigger, QualityTrigger):
        m = ctx.metrics
        if m is None or m.recent_sample_size == 0:
            return f"{fired}: no recent episodes to judge quality"
        return (f"{fired}: recent success rate {m.recent_success_rate:.3f} over {m.recent_sample_size} episodes, "
                f"fires at <= {trigger.threshold:g} over >= {trigger.min_samples}")
    return f"{fired}: {trigger.name}"
