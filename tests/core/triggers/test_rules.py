"""Training triggers as pure rules over a TriggerContext, and the processor mode."""

from __future__ import annotations

import pytest

from swarm_learn_assets.core.triggers.rules import (
    AlwaysTrigger,
    AndTrigger,
    CountTrigger,
    ManualTrigger,
    NeverTrigger,
    OrTrigger,
    ProcessorMode,
    QualityTrigger,
    TimeTrigger,
    TriggerContext,
    TriggerError,
    TriggerMetrics,
    default_watch,
)

MINUTE = 60_000
HOUR = 60 * MINUTE
NOW = 10 * HOUR


def ctx(count: int | None = 0, last_count: int = 0, last_at: int | None = NOW, now: int = NOW, metrics=None):
    return TriggerContext(now_ms=now, event_count=count, last_train_at=last_at, last_train_count=last_count,
                          metrics=metrics)


# ---------------------------------------------------------------------------------------------
# Count
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "last", "n", "fires"),
    [
        (10, 0, 10, True),  # exactly n new
        (9, 0, 10, False),
        (150, 50, 100, True),
        (149, 50, 100, False),
        (5, 10, 1, False),  # count went down (e.g. replaced sessions): no negative "new" episodes
        (5, 10, 0, True),  # saturates at 0, and 0 >= 0
    ],
)
def test_count_trigger(current, last, n, fires):
    assert CountTrigger(n).should_train(ctx(current, last)) is fires


def test_count_trigger_needs_a_count():
    with pytest.raises(TriggerError):
        CountTrigger(1).should_train(ctx(count=None))


def test_current_count_raises_without_count():
    with pytest.raises(TriggerError, match="episode count"):
        ctx(count=None).current_count()
    assert ctx(count=7).current_count() == 7
    assert ctx(count=0).current_count() == 0  # zero is a count, not a missing one


# ---------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------


def test_time_trigger_fires_if_never_trained():
    assert TimeTrigger.hours(1).should_train(ctx(last_at=None))


@pytest.mark.parametrize(("elapsed", "fires"), [(0, False), (HOUR - 1, False), (HOUR, True), (HOUR + 1, True)])
def test_time_trigger_after_interval(elapsed, fires):
    assert TimeTrigger.hours(1).should_train(ctx(last_at=NOW - elapsed)) is fires


def test_time_trigger_constructors():
    assert TimeTrigger.hours(1).interval_ms == 3_600_000
    assert TimeTrigger.hours(0.5).interval_ms == 1_800_000
    assert TimeTrigger.minutes(2).interval_ms == 120_000


def test_time_trigger_does_not_need_a_count():
    assert TimeTrigger(1).should_train(ctx(count=None, last_at=NOW - 5))


# ---------------------------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------------------------


def metrics(rate: float, samples: int) -> TriggerMetrics:
    return TriggerMetrics(recent_success_rate=rate, overall_success_rate=0.9, recent_sample_size=samples)


@pytest.mark.parametrize(
    ("rate", "samples", "fires"),
    [(0.5, 10, True), (0.49, 10, True), (0.51, 10, False), (0.1, 9, False), (0.1, 11, True)],
)
def test_quality_trigger(rate, samples, fires):
    assert QualityTrigger(0.5, min_samples=10).should_train(ctx(metrics=metrics(rate, samples))) is fires


def test_quality_trigger_without_metrics_does_not_fire():
    assert QualityTrigger(1.0).should_train(ctx(metrics=None)) is False


def test_quality_trigger_default_min_samples_is_one():
    assert QualityTrigger(0.5).should_train(ctx(metrics=metrics(0.0, 1)))
    assert not QualityTrigger(0.5).should_train(ctx(metrics=metrics(0.0, 0)))


# ---------------------------------------------------------------------------------------------
# Combinators and constants
# ---------------------------------------------------------------------------------------------


def test_or_trigger():
    c = ctx()
    assert OrTrigger((NeverTrigger(), AlwaysTrigger())).should_train(c)
    assert not OrTrigger((NeverTrigger(), NeverTrigger())).should_train(c)
    assert not OrTrigger(()).should_train(c)


def test_and_trigger():
    c = ctx()
    assert AndTrigger((AlwaysTrigger(), AlwaysTrigger())).should_train(c)
    assert not AndTrigger((AlwaysTrigger(), NeverTrigger())).should_train(c)


def test_empty_and_is_false():
    assert AndTrigger(()).should_train(ctx()) is False
    assert AndTrigger().should_train(ctx()) is False


def test_nested_combinators():
    # (count >= 5 AND quality bad) OR never
    rule = OrTrigger((AndTrigger((CountTrigger(5), QualityTrigger(0.5))), NeverTrigger()))
    assert rule.should_train(ctx(count=5, metrics=metrics(0.2, 3)))
    assert not rule.should_train(ctx(count=4, metrics=metrics(0.2, 3)))
    assert not rule.should_train(ctx(count=5, metrics=metrics(0.8, 3)))


def test_always_never_manual():
    c = ctx(count=None, last_at=None)
    assert AlwaysTrigger().should_train(c) is True
    assert NeverTrigger().should_train(c) is False
    assert ManualTrigger().should_train(c) is False
    assert ManualTrigger().should_train(ctx(count=10**6, last_at=0)) is False


def test_describe():
    assert CountTrigger(100).describe() == "every 100 new episodes"
    assert TimeTrigger.hours(1).describe() == "every 3600s"
    assert QualityTrigger(0.25).describe() == "recent success rate <= 0.25"
    assert default_watch().describe() == "(every 100 new episodes) OR (every 3600s)"
    assert AndTrigger((AlwaysTrigger(), NeverTrigger())).describe() == "(always) AND (never)"


# ---------------------------------------------------------------------------------------------
# Default watch: 100 new episodes or one hour
# ---------------------------------------------------------------------------------------------


def test_default_watch_99_episodes_30_minutes_does_not_fire():
    assert not default_watch().should_train(ctx(count=199, last_count=100, last_at=NOW - 30 * MINUTE))


def test_default_watch_100_episodes_fires():
    assert default_watch().should_train(ctx(count=200, last_count=100, last_at=NOW - 30 * MINUTE))


def test_default_watch_61_minutes_fires():
    assert default_watch().should_train(ctx(count=100, last_count=100, last_at=NOW - 61 * MINUTE))


def test_default_watch_first_time_fires():
    assert default_watch().should_train(ctx(count=0, last_at=None))


# ---------------------------------------------------------------------------------------------
# Processor mode
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("offline", ProcessorMode.OFFLINE),
        ("offline_only", ProcessorMode.OFFLINE),
        ("OFFLINE_ONLY", ProcessorMode.OFFLINE),
        ("lora", ProcessorMode.LORA),
        ("LoRA", ProcessorMode.LORA),
        ("lora_only", ProcessorMode.LORA),
        ("full", ProcessorMode.FULL),
        ("Full", ProcessorMode.FULL),
        ("both", ProcessorMode.FULL),
        ("BOTH", ProcessorMode.FULL),
    ],
)
def test_processor_mode_parse(text, mode):
    assert ProcessorMode.parse(text) is mode


@pytest.mark.parametrize("text", ["", "nope", "offline-only", "lora only", "offlineonly"])
def test_processor_mode_parse_rejects(text):
    with pytest.raises(ValueError) as info:
        ProcessorMode.parse(text)
    assert str(info.value) == f"Unknown processor mode: {text}"


def test_processor_mode_str_is_lowercase_name():
    assert str(ProcessorMode.OFFLINE) == "offline"
    assert str(ProcessorMode.LORA) == "lora"
    assert str(ProcessorMode.FULL) == "full"
    assert f"{ProcessorMode.parse('BOTH')}" == "full"
