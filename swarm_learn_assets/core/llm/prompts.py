"""Every prompt the decision LLM sees and every answer it gives, in one place (DESIGN §8, §10).

Two conversations exist:

* the *sequence* question (the reference decision prompt): a context and the actions on offer →
  `Based on the context, the optimal action sequence is: A -> B -> C`;
* the *decide* question the swarm asks before each step: a context, the actions on offer and the
  previous action → `{"action": "A", "target": "host"}`.

The learn models and the simulator build prompts here, the datasets and the evaluation parse and
score answers here, so a format can never drift between who writes it and who reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

TASK_SYSTEM_PROMPT = "You are an intelligent agent that diagnoses and resolves system issues."
DECISION_SYSTEM_PROMPT = (
    "You are an intelligent agent that diagnoses and resolves system issues. "
    "Given a context and available actions, determine the optimal action sequence."
)
DECIDE_CALL_TYPE = "decide"
_AVAILABLE = re.compile(r"^Available actions: (.*)$", re.MULTILINE)
_PREVIOUS = re.compile(r"^Previous action: (.*)$", re.MULTILINE)
_SEQUENCE_PREFIXES = ("Based on the context, the optimal action sequence is:", "Execute the following sequence:")


# -- the sequence question (reference prompts) ---------------------------------------------------


def decision_prompt(context: str | None, available_actions: Sequence[str]) -> str:
    """The reference decision prompt; `default` stands in when the context is unknown."""
    return (
        f"Current context: {context or 'default'}\n"
        f"Available actions: {', '.join(available_actions)}\n\n"
        "What is the best sequence of actions to resolve this issue?"
    )


def decision_response(actions: Sequence[str]) -> str:
    return f"Based on the context, the optimal action sequence is: {' -> '.join(actions)}"


def task_prompt(actions: Sequence[str]) -> str:
    """The reference `worker_task` prompt. It lists the episode's own actions, so the answer leaks
    into the question: kept for the reference export, never what the adapter learns by default."""
    return f"Diagnose and resolve the issue.\nAvailable actions: {', '.join(actions)}"


def task_response(actions: Sequence[str]) -> str:
    return f"Execute the following sequence: {' -> '.join(actions)}"


def parse_sequence(text: str) -> list[str] | None:
    """The action list of a sequence answer (`A -> B -> C` after the last colon), or None."""
    _, sep, tail = text.rpartition(":")
    if not sep:
        return None
    actions = [a.strip() for a in tail.strip().split("->")]
    if not actions or any(not a or " " in a for a in actions):
        return None
    return actions


# -- the decide question (what the swarm asks before each step) ----------------------------------


def decide_prompt(context: str, available_actions: Sequence[str], previous: str | None) -> str:
    """The per-step question; the exact text an `llm_call` row with call_type `decide` records."""
    return (
        f"Current context: {context}\n"
        f"Available actions: {', '.join(available_actions)}\n"
        f"Previous action: {previous or 'none'}\n"
        "Choose the next action. Answer as JSON with keys action and target."
    )


def decide_response(action: str, target: str | None) -> str:
    return json.dumps({"action": action, "target": target})


@dataclass(frozen=True)
class Decision:
    action: str
    target: str | None


def parse_decision(text: str) -> Decision | None:
    """The JSON object of a decide answer (the first `{…}` in the text), or None when there is none
    or it names no action."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("action"), str) or not value["action"].strip():
        return None
    target = value.get("target")
    return Decision(value["action"].strip(), target.strip() if isinstance(target, str) else None)


# -- scoring -------------------------------------------------------------------------------------


def offered_actions(prompt: str) -> list[str] | None:
    """The actions a prompt offers (its `Available actions:` line), or None when it has none."""
    match = _AVAILABLE.search(prompt)
    return None if match is None else [a.strip() for a in match.group(1).split(",") if a.strip()]


def answer_kind(prompt: str, answer: str) -> tuple[str | None, str]:
    """What a row teaches, whoever the host: the previous action a decide prompt names (None for a
    sequence question) and the action (decide) or action order (sequence) its answer names."""
    previous = _PREVIOUS.search(prompt)
    if is_decide_answer(answer):
        decision = parse_decision(answer)
        return (previous.group(1).strip() if previous else None, decision.action if decision else answer)
    sequence = parse_sequence(answer)
    return (None, " -> ".join(sequence) if sequence else answer)


def is_decide_answer(reference: str) -> bool:
    """Whether a reference answer is a decide answer (JSON) rather than an action sequence."""
    return reference.lstrip().startswith("{")


class Score(NamedTuple):
    exact: bool
    valid: bool


def score_answer(prompt: str, reference: str, answer: str) -> Score:
    """*exact*: the sequence equals the reference's, or for a decide answer the action (and the
    target, when the reference has one) does; *valid*: the answer parses and names only actions the
    prompt offered (any action when the prompt lists none)."""
    offered = offered_actions(prompt)
    if is_decide_answer(reference):
        want, got = parse_decision(reference), parse_decision(answer)
        if got is None or want is None:
            return Score(False, got is not None and (offered is None or got.action in offered))
        exact = got.action == want.action and (want.target is None or got.target == want.target)
        return Score(exact, offered is None or got.action in offered)
    want_seq, got_seq = parse_sequence(reference), parse_sequence(answer)
    if got_seq is None:
        return Score(False, False)
    return Score(got_seq == want_seq, offered is None or set(got_seq) <= set(offered))


SMOKE_PROMPT = decision_prompt("smoke test", ["CheckStatus"])
