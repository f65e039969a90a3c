"""The gate's statistics against values computed by hand, and its verdicts."""

from __future__ import annotations

import pytest

from swarm_learn_assets.core.llm.gate import GateSettings, decide_gate, paired_sign_test, sign_test


@pytest.mark.parametrize("wins, losses, p", [
    (0, 0, 1.0),
    (5, 0, 1 / 32),            # all five disagreements won
    (4, 0, 1 / 16),
    (4, 1, 6 / 32),            # (C(5,4) + C(5,5)) / 2^5
    (8, 2, 56 / 1024),         # (45 + 10 + 1) / 1024
    (9, 1, 11 / 1024),
    (0, 3, 1.0),
    (10, 10, 0.5880985260009766),  # sum_{k>=10} C(20,k) / 2^20
])
def test_sign_test_known_values(wins, losses, p):
    assert sign_test(wins, losses) == pytest.approx(p, rel=1e-12)


def test_paired_test_counts_only_disagreements():
    new = [True, True, True, True, True, False, True]
    old = [True, False, False, False, False, False, True]  # 4 wins, 0 losses, 3 ties
    assert paired_sign_test(new, old) == pytest.approx(1 / 16)
    with pytest.raises(ValueError, match="differ in number"):
        paired_sign_test([True], [True, False])


def test_gate_passes_a_significantly_better_adapter():
    adapter, base = [True] * 8 + [False] * 2, [False] * 10
    verdict = decide_gate(adapter, base, None)
    assert verdict.passed and verdict.p_vs_base == pytest.approx(1 / 256) and verdict.p_vs_applied is None


def test_gate_refuses_below_min_exact_match_even_when_significant():
    adapter, base = [True] * 6 + [False] * 14, [False] * 20   # 0.3 exact, p = 1/64
    verdict = decide_gate(adapter, base, None, GateSettings(min_exact_match=0.5))
    assert not verdict.passed and any("< min_exact_match 0.5" in r for r in verdict.reasons)


def test_gate_refuses_better_but_not_significant():
    adapter, base = [True] * 6 + [False] * 4, [True] * 3 + [False] * 7  # 3 wins, 0 losses: p = 1/8
    verdict = decide_gate(adapter, base, None)
    assert not verdict.passed and verdict.p_vs_base == pytest.approx(1 / 8)
    assert any("does not significantly beat the base model: 3 rows won, 0 lost" in r for r in verdict.reasons)


def test_gate_against_the_applied_adapter():
    base = [False] * 10
    adapter = [True] * 9 + [False]
    assert not decide_gate(adapter, base, list(adapter)).passed        # equal: no disagreement, p = 1
    assert not decide_gate(adapter, base, [True] * 10).passed          # worse than applied
    verdict = decide_gate(adapter, base, [True] * 2 + [False] * 8)     # 7 wins, 0 losses vs applied
    assert verdict.passed and verdict.p_vs_applied == pytest.approx(1 / 128)


def test_gate_settings_are_validated():
    with pytest.raises(ValueError, match="gate_alpha"):
        GateSettings(alpha=0.0)
    with pytest.raises(ValueError, match="min_exact_match"):
        GateSettings(min_exact_match=1.5)
