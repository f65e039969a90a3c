"""The gate an adapter passes before it serves the swarm (DESIGN §8): good enough in absolute terms,
and better than the base model and the applied adapter by more than luck.

"Better" is a paired comparison on the same eval rows: only rows where the two models disagree
(one right, the other wrong) carry information, and under "no difference" each such row is a fair
coin. The exact one-sided sign test asks how likely at least that many wins would be by chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import comb

DEFAULT_MIN_EXACT_MATCH = 0.5
DEFAULT_GATE_ALPHA = 0.05


def sign_test(wins: int, losses: int) -> float:
    """P(at least `wins` of `wins + losses` fair coin flips come up heads): the one-sided p-value of
    "the first model is better" from the rows where the two disagree. 1.0 when they never disagree."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be >= 0, got {wins} and {losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(comb(n, k) for k in range(wins, n + 1)) / 2**n


def disagreements(new: Sequence[bool], old: Sequence[bool]) -> tuple[int, int]:
    """(rows only `new` got right, rows only `old` got right), given per-row exact matches."""
    if len(new) != len(old):
        raise ValueError(f"paired rows differ in number: {len(new)} vs {len(old)}")
    return sum(a and not b for a, b in zip(new, old)), sum(b and not a for a, b in zip(new, old))


def paired_sign_test(new: Sequence[bool], old: Sequence[bool]) -> float:
    """The sign test of `new` over `old`, given each model's per-row exact matches on the same rows."""
    return sign_test(*disagreements(new, old))


@dataclass(frozen=True)
class GateSettings:
    min_exact_match: float = DEFAULT_MIN_EXACT_MATCH
    alpha: float = DEFAULT_GATE_ALPHA

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_exact_match <= 1.0:
            raise ValueError(f"min_exact_match: expected a share in [0, 1], got {self.min_exact_match}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"gate_alpha: expected a level in (0, 1), got {self.alpha}")


@dataclass
class GateVerdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    p_vs_base: float = 1.0
    p_vs_applied: float | None = None

    def to_json(self) -> dict:
        return {"passed": self.passed, "reasons": self.reasons, "p_vs_base": self.p_vs_base,
                "p_vs_applied": self.p_vs_applied}


def decide_gate(
    adapter: Sequence[bool], base: Sequence[bool], applied: Sequence[bool] | None, settings: GateSettings = GateSettings()
) -> GateVerdict:
    """Pass only when the adapter's exact match reaches `min_exact_match` and it beats the base
    model and the applied adapter (when there is one) at `alpha`. Each reason says which condition
    held or failed, with its numbers."""
    rows = len(adapter)
    exact = sum(adapter) / rows if rows else 0.0
    reasons: list[str] = []
    ok = rows > 0
    if not rows:
        reasons.append("no eval rows of the trained sources: nothing shows the adapter is better")
    if exact >= settings.min_exact_match:
        reasons.append(f"exact match {exact:.3f} >= min_exact_match {settings.min_exact_match}")
    else:
        ok = False
        reasons.append(f"exact match {exact:.3f} < min_exact_match {settings.min_exact_match}")
    p_base = _compare("base model", adapter, base, settings.alpha, reasons)
    p_applied = None if applied is None else _compare("applied adapter", adapter, applied, settings.alpha, reasons)
    ok = ok and p_base <= settings.alpha and (p_applied is None or p_applied <= settings.alpha)
    return GateVerdict(ok, reasons, p_base, p_applied)


def _compare(name: str, new: Sequence[bool], old: Sequence[bool], alpha: float, reasons: list[str]) -> float:
    """The sign test of `new` over `old`, with a reason saying what it found; returns p."""
    wins, losses = disagreements(new, old)
    p = sign_test(wins, losses)
    verdict = "beats" if p <= alpha else "does not significantly beat"
    reasons.append(f"{verdict} the {name}: {wins} rows won, {losses} lost, sign test p = {p:.4g} "
                   f"({'<=' if p <= alpha else '>'} alpha {alpha})")
    return p
