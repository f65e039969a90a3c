"""Who chooses a worker's next action in a simulated session (DESIGN §10).

`--policy` names one of: `scripted` (the simulator's synthetic skill), `base`, `current`,
`adapter:VERSION` (the decision LLM in-process), `offline` (the scenario model) or `endpoint:URL`
(an OpenAI-compatible server). This module parses that name and holds what every policy shares:
the question (`DecideRequest`, whose prompt is the exact `decide` text an `llm_call` row records),
the answer (`DecideAnswer`), the interface, and the offline policy, which needs no model.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .prompts import decide_prompt, decide_response, parse_decision

POLICY_KINDS = ("scripted", "base", "current", "adapter:VERSION", "offline", "endpoint:URL")


class PolicyError(ValueError):
    """A policy that cannot be used, said in one line."""


@dataclass(frozen=True)
class PolicySpec:
    """A parsed `--policy`: its kind and, for `adapter:` and `endpoint:`, the version or URL."""

    kind: str  # scripted | base | current | adapter | offline | endpoint
    argument: str | None = None

    @property
    def uses_llm(self) -> bool:
        return self.kind in ("base", "current", "adapter", "endpoint")

    def __str__(self) -> str:
        return self.kind if self.argument is None else f"{self.kind}:{self.argument}"


def parse_policy(text: str) -> PolicySpec:
    """`scripted`, `base`, `current`, `offline`, `adapter:v0003` or `endpoint:http://host:port`."""
    name, sep, argument = text.strip().partition(":")
    if name in ("scripted", "base", "current", "offline") and not sep:
        return PolicySpec(name)
    if name == "adapter":
        if not argument.strip():
            raise PolicyError(f"policy {text!r}: adapter needs a version, e.g. adapter:v0001")
        return PolicySpec("adapter", argument.strip())
    if name == "endpoint":
        url = argument.strip()
        if not url.startswith(("http://", "https://")):
            raise PolicyError(f"policy {text!r}: endpoint needs a URL, e.g. endpoint:http://127.0.0.1:8080")
        return PolicySpec("endpoint", url.rstrip("/"))
    raise PolicyError(f"unknown policy {text!r}; expected one of {', '.join(POLICY_KINDS)}")


@dataclass(frozen=True)
class DecideRequest:
    """One worker's question before a step: its task's context and host, the actions on offer and
    the action it took last (None at the start of a task)."""

    context: str
    target: str
    available: tuple[str, ...]
    previous: str | None

    @property
    def prompt(self) -> str:
        return decide_prompt(self.context, self.available, self.previous)


@dataclass(frozen=True)
class DecideAnswer:
    """The raw answer text, how long it took, and the error when the call itself failed."""

    response: str
    latency_ms: int
    error: str | None = None

    def action(self, offered: Sequence[str]) -> str | None:
        """The chosen action, or None when the answer does not parse or names an action not offered:
        the swarm treats both as a wrong action."""
        decision = None if self.error else parse_decision(self.response)
        return decision.action if decision is not None and decision.action in offered else None


class DecisionPolicy(Protocol):
    """Answers a batch of decide questions (the workers of one tick) in one call."""

    name: str  # what the run reports: `base`, `adapter:v0002`, `offline`, `endpoint:…`
    lora: str | None  # the adapter version recorded on action rows (None: base model or no LLM)
    model: str  # the `model` of recorded llm_call rows
    endpoint: str  # the `endpoint` of recorded llm_call rows
    records_llm_calls: bool  # an LLM answered, so every decision is an llm_call row

    def decide(self, requests: Sequence[DecideRequest]) -> list[DecideAnswer]: ...


class OfflinePolicy:
    """The reference's offline mode as a policy: after action A, the action that most often followed
    A on the recommended paths (weighted by success rate × count); at the start of a task, or when no
    path continues A, the first action of the learned order. It never sees the context, which is why
    it is the baseline the LLM has to beat."""

    name = "offline"
    lora = None
    model = "offline-model"
    endpoint = "scenario_model.json"
    records_llm_calls = False

    def __init__(self, offline_model: dict) -> None:
        order = offline_model.get("action_order") or {}
        self._order = [*order.get("discover", []), *order.get("not_discover", [])]
        paths = offline_model.get("recommended_paths") or []
        follow: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for path in paths:
            weight = float(path.get("success_rate", 0.0)) * float(path.get("count", 0))
            actions = path.get("actions", [])
            for a, b in zip(actions, actions[1:]):
                follow[a][b] += weight
        self._follow = follow
        if not self._order:
            self._order = [p["actions"][0] for p in paths if p.get("actions")]

    def _choose(self, request: DecideRequest) -> str | None:
        options = self._follow.get(request.previous or "", {})
        ranked = sorted((a for a in options if a in request.available), key=lambda a: (-options[a], a))
        if ranked:
            return ranked[0]
        return next((a for a in self._order if a in request.available), None)

    def decide(self, requests: Sequence[DecideRequest]) -> list[DecideAnswer]:
        answers = []
        for request in requests:
            start = time.perf_counter()
            action = self._choose(request)
            response = "" if action is None else decide_response(action, request.target)
            answers.append(DecideAnswer(response, max(0, round((time.perf_counter() - start) * 1000))))
        return answers
