"""How an episode ended. Timeout counts as a failure; Unknown counts as neither."""

from __future__ import annotations

from dataclasses import dataclass

SUCCESS, FAILURE, TIMEOUT, UNKNOWN = "success", "failure", "timeout", "unknown"


@dataclass(frozen=True)
class Outcome:
    """Success{score} / Failure{reason} / Timeout{partial_score} / Unknown, as one small value type."""

    kind: str = UNKNOWN
    score_value: float | None = None
    reason: str | None = None

    @classmethod
    def success(cls, score: float = 1.0) -> Outcome:
        return cls(SUCCESS, score_value=float(score))

    @classmethod
    def success_binary(cls) -> Outcome:
        return cls.success(1.0)

    @classmethod
    def failure(cls, reason: str) -> Outcome:
        return cls(FAILURE, reason=reason)

    @classmethod
    def timeout(cls, partial_score: float | None = None) -> Outcome:
        return cls(TIMEOUT, score_value=partial_score)

    @classmethod
    def unknown(cls) -> Outcome:
        return cls(UNKNOWN)

    def is_success(self) -> bool:
        return self.kind == SUCCESS

    def is_failure(self) -> bool:
        return self.kind in (FAILURE, TIMEOUT)

    def is_unknown(self) -> bool:
        return self.kind == UNKNOWN

    def score(self) -> float:
        """The success score; a timeout's partial score; 0.0 otherwise."""
        if self.kind in (SUCCESS, TIMEOUT) and self.score_value is not None:
            return self.score_value
        return 0.0
