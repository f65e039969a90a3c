"""Training triggers (the reference `TrainTrigger`) as pure rules over a `TriggerContext`.

Sensors in `defs/` fill the context from Dagster's own records; the rules here only decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum


class TriggerError(ValueError):
    """The context lacks what a trigger needs (e.g. no episode count)."""


@dataclass(frozen=True)
class TriggerMetrics:
    recent_success_rate: float = 0.0
    overall_success_rate: float = 0.0
    recent_sample_size: int = 0


@dataclass(frozen=True)
class TriggerContext:
    """What a trigger may look at: episode count now and at the last training, time, quality."""

    now_ms: int
    event_count: int | None = None
    last_train_at: int | None = None
    last_train_count: int = 0
    metrics: TriggerMetrics | None = None

    def current_count(self) -> int:
        if self.event_count is None:
            raise TriggerError("trigger needs the current episode count, but the context has none")
        return self.event_count


class TrainTrigger:
    """Decides whether to train now; `describe` says why in words for the UI and the CLI."""

    name = "trigger"

    def should_train(self, ctx: TriggerContext) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class CountTrigger(TrainTrigger):
    """Fires when at least `n` new episodes arrived since the last training."""

    n: int
    name = "count"

    def should_train(self, ctx: TriggerContext) -> bool:
        return max(0, ctx.current_count() - ctx.last_train_count) >= self.n

    def describe(self) -> str:
        return f"every {self.n} new episodes"


@dataclass(frozen=True)
class TimeTrigger(TrainTrigger):
    """Fires when `interval_ms` passed since the last training, or if there never was one."""

    interval_ms: int
    name = "time"

    @classmethod
    def hours(cls, h: float) -> TimeTrigger:
        return cls(int(h * 3_600_000))

    @classmethod
    def minutes(cls, m: float) -> TimeTrigger:
        return cls(int(m * 60_000))

    def should_train(self, ctx: TriggerContext) -> bool:
        return ctx.last_train_at is None or ctx.now_ms - ctx.last_train_at >= self.interval_ms

    def describe(self) -> str:
        return f"every {self.interval_ms / 1000:g}s"


@dataclass(frozen=True)
class QualityTrigger(TrainTrigger):
    """Fires when the recent success rate is at or below `threshold` over at least `min_samples`."""

    threshold: float
    min_samples: int = 1
    name = "quality"

    def should_train(self, ctx: TriggerContext) -> bool:
        m = ctx.metrics
        return m is not None and m.recent_sample_size >= self.min_samples and m.recent_success_rate <= self.threshold

    def describe(self) -> str:
        return f"recent success rate <= {self.threshold:g}"


@dataclass(frozen=True)
class OrTrigger(TrainTrigger):
    triggers: Sequence[TrainTrigger] = field(default_factory=tuple)
    name = "or"

    def should_train(self, ctx: TriggerContext) -> bool:
        return any(t.should_train(ctx) for t in self.triggers)

    def describe(self) -> str:
        return " OR ".join(f"({t.describe()})" for t in self.triggers)


@dataclass(frozen=True)
class AndTrigger(TrainTrigger):
    """All children must fire; an empty AND never fires (training needs a positive reason)."""

    triggers: Sequence[TrainTrigger] = field(default_factory=tuple)
    name = "and"

    def should_train(self, ctx: TriggerContext) -> bool:
        return bool(self.triggers) and all(t.should_train(ctx) for t in self.triggers)

    def describe(self) -> str:
        return " AND ".join(f"({t.describe()})" for t in self.triggers)


class AlwaysTrigger(TrainTrigger):
    name = "always"

    def should_train(self, ctx: TriggerContext) -> bool:
        return True


class NeverTrigger(TrainTrigger):
    name = "never"

    def should_train(self, ctx: TriggerContext) -> bool:
        return False


class ManualTrigger(TrainTrigger):
    """Never fires by itself; a manual run bypasses triggers and resets the count like any training."""

    name = "manual"

    def should_train(self, ctx: TriggerContext) -> bool:
        return False


def default_watch() -> TrainTrigger:
    """The reference default: 100 new episodes or one hour."""
    return OrTrigger((CountTrigger(100), TimeTrigger.hours(1)))


class ProcessorMode(str, Enum):
    """Which scenario-level work a trigger runs: offline model, LoRA, or both."""

    OFFLINE = "offline"
    LORA = "lora"
    FULL = "full"

    @classmethod
    def parse(cls, text: str) -> ProcessorMode:
        aliases = {"offline": cls.OFFLINE, "offline_only": cls.OFFLINE, "lora": cls.LORA, "lora_only": cls.LORA,
                   "full": cls.FULL, "both": cls.FULL}
        try:
            return aliases[text.lower()]
        except KeyError:
            raise ValueError(f"Unknown processor mode: {text}") from None

    def __str__(self) -> str:
        return self.value
