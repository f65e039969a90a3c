"""The trigger spec syntax: every reference trigger, composites, and errors that point at the token."""

from __future__ import annotations

import pytest

from swarm_learn_assets.core.triggers.rules import (
    AlwaysTrigger,
    AndTrigger,
    CountTrigger,
    ManualTrigger,
    NeverTrigger,
    OrTrigger,
    QualityTrigger,
    TimeTrigger,
    TriggerContext,
    TriggerMetrics,
    default_watch,
)
from swarm_learn_assets.core.triggers.spec import DEFAULT_SPEC, TriggerSpecError, parse_trigger, time_parts

HOUR = 3_600_000


@pytest.mark.parametrize("spec, expected", [
    ("episodes>=100", CountTrigger(100)),
    ("every 90s", TimeTrigger(90_000)),
    ("every 15m", TimeTrigger(15 * 60_000)),
    ("every 1.5h", TimeTrigger(int(1.5 * HOUR))),
    ("every 2d", TimeTrigger(2 * 24 * HOUR)),
    ("success<=0.4", QualityTrigger(0.4, 1)),
    ("success <= 0.4 over 30", QualityTrigger(0.4, 30)),
    ("episodes>=100 | every 1h", OrTrigger((CountTrigger(100), TimeTrigger(HOUR)))),
    ("episodes>=5 & every 10m", AndTrigger((CountTrigger(5), TimeTrigger(600_000)))),
    ("(episodes>=50 & every 10m) | success<=0.4 over 30",
     OrTrigger((AndTrigger((CountTrigger(50), TimeTrigger(600_000))), QualityTrigger(0.4, 30)))),
    ("a | b".replace("a", "episodes>=1").replace("b", "episodes>=2") + " & every 1m",
     OrTrigger((CountTrigger(1), AndTrigger((CountTrigger(2), TimeTrigger(60_000)))))),
])
def test_specs_build_the_reference_triggers(spec, expected):
    assert parse_trigger(spec) == expected


def test_keywords_and_default():
    assert isinstance(parse_trigger("always"), AlwaysTrigger)
    assert isinstance(parse_trigger("never"), NeverTrigger)
    assert isinstance(parse_trigger("manual"), ManualTrigger)
    assert parse_trigger("default") == default_watch() == parse_trigger(DEFAULT_SPEC)


def test_the_default_fires_on_100_episodes_or_an_hour():
    trigger = parse_trigger(DEFAULT_SPEC)
    base = TriggerContext(now_ms=10 * HOUR, event_count=150, last_train_at=10 * HOUR - 60_000, last_train_count=60)
    assert not trigger.should_train(base)  # 90 new episodes, one minute
    assert trigger.should_train(TriggerContext(**{**base.__dict__, "event_count": 160}))
    assert trigger.should_train(TriggerContext(**{**base.__dict__, "last_train_at": 9 * HOUR}))


def test_quality_rule_needs_enough_recent_episodes():
    trigger = parse_trigger("success<=0.5 over 20")
    poor = TriggerMetrics(recent_success_rate=0.3, recent_sample_size=25)
    assert trigger.should_train(TriggerContext(now_ms=0, metrics=poor))
    assert not trigger.should_train(TriggerContext(now_ms=0, metrics=TriggerMetrics(0.3, 0.5, 10)))


@pytest.mark.parametrize("spec, column, token, expected", [
    ("episodes>=x | every 1h", 11, "'x'", "a whole number of episodes"),
    ("episodes>=100 | every 1y", 23, "'1y'", "a duration such as 90s"),
    ("episodes>=100 || every 1h", 16, "'|'", "'episodes>=N'"),
    ("episodes=100", 9, "'='", "'>='"),
    ("success<=1.5", 10, "'1.5'", "a success rate between 0 and 1"),
    ("(episodes>=1 | every 1h", None, None, "')' at the end"),
    ("hourly", 1, "'hourly'", "'episodes>=N'"),
    ("episodes>=1 every 1h", 13, "'every'", "'|', '&' or the end"),
    ("episodes>=0", 11, "'0'", "at least 1 episode"),
])
def test_bad_specs_point_at_the_offending_token(spec, column, token, expected):
    with pytest.raises(TriggerSpecError) as info:
        parse_trigger(spec)
    message = str(info.value)
    assert repr(spec) in message and expected in message
    if column is not None:
        assert f"column {column} ({token})" in message
        assert message.splitlines()[-1].index("^") == column - 1 + 2  # under the token


def test_empty_spec_is_refused():
    with pytest.raises(TriggerSpecError, match="expected a trigger such as"):
        parse_trigger("   ")


def test_time_parts_are_found_anywhere():
    assert time_parts(parse_trigger("(episodes>=5 & every 10m) | every 2h")) == [TimeTrigger(600_000), TimeTrigger(2 * HOUR)]
    assert time_parts(parse_trigger("episodes>=5")) == []
