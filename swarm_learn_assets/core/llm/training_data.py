"""Training rows for the decision LLM: the reference `TrainingData`, plus chat `messages` for TRL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SFT, DPO = "sft", "dpo"


@dataclass(frozen=True)
class TrainingData:
    """One SFT example (`rejected` is None) or one DPO preference pair."""

    prompt: str
    chosen: str
    system: str | None = None
    rejected: str | None = None
    format: str = SFT
    episode_id: str | None = None
    outcome_score: float | None = None
    learn_model: str | None = None

    @classmethod
    def sft(cls, system: str, prompt: str, response: str, **meta: Any) -> TrainingData:
        return cls(prompt=prompt, chosen=response, system=system, **meta)

    @classmethod
    def sft_simple(cls, prompt: str, response: str, **meta: Any) -> TrainingData:
        return cls(prompt=prompt, chosen=response, **meta)

    @classmethod
    def dpo(cls, prompt: str, chosen: str, rejected: str, system: str | None = None, **meta: Any) -> TrainingData:
        return cls(prompt=prompt, chosen=chosen, rejected=rejected, system=system, format=DPO, **meta)

    def messages(self) -> list[dict[str, str]]:
        """System/user/assistant turns, the conversational format TRL's SFTTrainer reads as is."""
        turns = [{"role": "system", "content": self.system}] if self.system else []
        return [*turns, {"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.chosen}]

    def to_row(self) -> dict[str, Any]:
        """The dataset row: reference fields and, for SFT, `messages`."""
        row: dict[str, Any] = {
            "system": self.system,
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "format": self.format,
            "episode_id": self.episode_id,
            "outcome_score": self.outcome_score,
            "learn_model": self.learn_model,
        }
        if self.format == SFT:
            row["messages"] = self.messages()
        return row


def preference_chats(row: Mapping[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A DPO row (TRL's standard preference shape: `prompt`, `chosen`, `rejected` texts, plus our
    `system`) as two chats that differ only in the assistant's reply, rendered like SFT `messages`."""
    chosen = TrainingData(prompt=row["prompt"], chosen=row["chosen"], system=row.get("system")).messages()
    return chosen, [*chosen[:-1], {"role": "assistant", "content": row["rejected"]}]
