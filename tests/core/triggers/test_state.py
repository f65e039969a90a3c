"""The trigger state folded from records: counts since the last training, a bounded quality window,
a JSON round trip (the sensor cursor), and explanations with the numbers."""

from __future__ import annotations

from swarm_learn_assets.core.triggers.spec import parse_trigger
from swarm_learn_assets.core.triggers.state import RECENT_WINDOW, TrainingState, explain, quality_window

HOUR = 3_600_000


def test_count_resets_at_a_training_and_state_survives_the_cursor():
    state = TrainingState()
    sc = state.scenario("sc")
    sc.add(60, 30)
    sc.add(50, 20)
    trigger = parse_trigger("episodes>=100")
    assert trigger.should_train(sc.context(now_ms=0, window=1))
    sc.trained(at_ms=5)
    assert not trigger.should_train(sc.context(now_ms=10, window=1))
    restored = TrainingState.from_json(state.to_json())
    assert restored == state
    restored.scenario("sc").add(100, 50)
    assert trigger.should_train(restored.scenario("sc").context(now_ms=10, window=1))


def test_quality_window_is_bounded_and_uses_recent_batches():
    sc = TrainingState().scenario("sc")
    for _ in range(500):
        sc.add(10, 9)  # good history
    sc.add(40, 4)  # a bad recent batch
    assert sum(e for e, _ in sc.recent) < RECENT_WINDOW + 10  # history does not grow the state
    poor = parse_trigger("success<=0.5 over 30")
    assert quality_window(poor) == 30
    metrics = sc.metrics(30)
    assert metrics.recent_sample_size == 40 and metrics.recent_success_rate == 0.1
    assert poor.should_train(sc.context(now_ms=0, window=30))
    assert not parse_trigger("success<=0.5 over 100").should_train(sc.context(now_ms=0, window=100))


def test_explain_names_each_rule_and_its_numbers():
    sc = TrainingState().scenario("sc")
    sc.add(40, 10)
    sc.trained(at_ms=0)
    sc.add(30, 3)
    text = explain(parse_trigger("episodes>=100 | every 1h | success<=0.2 over 20"), sc.context(2 * HOUR, 20))
    assert text.startswith("yes: (")
    assert "no: 30 new episodes since the last training, needs 100" in text
    assert "yes: 7200s since the last training, needs 3600s" in text
    assert "yes: recent success rate 0.100 over 30 episodes" in text
    never = TrainingState().scenario("x").context(0, 1)
    assert explain(parse_trigger("every 1h"), never) == "yes: never trained (every 3600s)"
    assert explain(parse_trigger("manual"), never) == "no: manual"
