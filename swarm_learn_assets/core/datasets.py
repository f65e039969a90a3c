"""Episodes → SFT and DPO rows with a stable train/eval split (DESIGN §8). No Dagster, no tokenizer.

Rows come from the per-record learn models (`learn_models`), so the prompts are exactly the
reference's: episodes read back from `episodes/` are turned into `Episode` objects first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .episode import Episode
from .learn_models import (
    WORKER_DECISION_SEQUENCE,
    WORKER_TASK,
    DpoConfig,
    LearnError,
    WorkerDecisionSequenceLearn,
    WorkerTaskLearn,
    build_dpo_pairs,
    convert_dpo_pair,
)
from .outcome import Outcome
from .records import ActionRecord
from .schema import SYSTEM_EVENTS

TRAIN, EVAL = "train", "eval"
ROLES = ("system", "user", "assistant")


def split_of(session_id: str, eval_fraction: float) -> str:
    """`eval` for a stable share of sessions: a hash of the id, so rebuilding never moves a session."""
    bucket = int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return EVAL if bucket < eval_fraction else TRAIN


def episode_from_row(row: dict[str, Any]) -> Episode:
    """An `episodes/` row as the `Episode` the learn models convert (context on its first record)."""
    outcome = {
        "success": lambda: Outcome.success(row["score"]),
        "failure": lambda: Outcome.failure(row["reason"] or ""),
        "timeout": lambda: Outcome.timeout(row["score"]),
    }.get(row["outcome"], Outcome.unknown)()
    records = [
        ActionRecord(tick=0, worker_id=row["worker_id"], action=action, seq=seq, task_id=row["task_id"],
                     group_id=row["group_id"], context=row["context"] if i == 0 else None,
                     selection_logic=row["selection_logic"] if i == 0 else None)
        for i, (action, seq) in enumerate(zip(row["actions"], row["record_seqs"]))
    ]
    return Episode(row["learn_model"], records, outcome, row["scenario"], row["session_id"], id=row["episode_id"],
                   task_id=row["task_id"], group_id=row["group_id"])


def available_actions(episodes: Iterable[dict[str, Any]]) -> list[str]:
    """The scenario's action set as the prompts list it: every decision action seen, sorted."""
    return sorted({a for e in episodes for a in e["actions"] if a not in SYSTEM_EVENTS})


@dataclass(frozen=True)
class DatasetConfig:
    eval_fraction: float = 0.2
    dpo: DpoConfig = field(default_factory=DpoConfig)


@dataclass
class TrainingRows:
    """SFT and DPO rows per split, and how many exact duplicates were dropped from each."""

    sft: dict[str, list[dict[str, Any]]]
    dpo: dict[str, list[dict[str, Any]]]
    duplicates: dict[str, int]
    eval_sessions: list[str]
    train_sessions: list[str]


def _dedupe(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Keep the first of rows with the same system, prompt, chosen and rejected text."""
    seen, kept = set(), []
    for row in rows:
        key = (row["system"], row["prompt"], row["chosen"], row["rejected"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def build_training_rows(episode_rows: Sequence[dict[str, Any]], config: DatasetConfig = DatasetConfig()) -> TrainingRows:
    """SFT rows from successful episodes of both learn models, DPO rows from `group_id` pairs.

    A DPO pair belongs to the split of its chosen episode's session. Row order is the episodes'
    order (session, learn model, worker, start), so equal input gives equal datasets.
    """
    actions = available_actions(episode_rows)
    task_model = WorkerTaskLearn()
    decision_model = WorkerDecisionSequenceLearn(available_actions=actions)
    converters = {WORKER_TASK: task_model, WORKER_DECISION_SEQUENCE: decision_model}
    sft: dict[str, list[dict[str, Any]]] = {TRAIN: [], EVAL: []}
    dpo: dict[str, list[dict[str, Any]]] = {TRAIN: [], EVAL: []}
    episodes = [episode_from_row(r) for r in episode_rows]
    sessions = sorted({e.session_id for e in episodes})
    split = {s: split_of(s, config.eval_fraction) for s in sessions}
    for episode in episodes:
        model = converters.get(episode.learn_model)
        if model is None or not episode.is_success():
            continue
        try:
            data = model.convert(episode)
        except LearnError:
            continue
        sft[split[episode.session_id]].append({**data.to_row(), "session_id": episode.session_id})
    tasks = [e for e in episodes if e.learn_model == WORKER_TASK]
    for pair in build_dpo_pairs(tasks, config.dpo):
        try:
            data = convert_dpo_pair(pair, actions)
        except LearnError:
            continue
        dpo[split[pair.chosen.session_id]].append({**data.to_row(), "session_id": pair.chosen.session_id})
    duplicates = {}
    for name, table in (("sft", sft), ("dpo", dpo)):
        for part in (TRAIN, EVAL):
            table[part], duplicates[f"{name}/{part}"] = _dedupe(table[part])
    return TrainingRows(
        sft, dpo, duplicates,
        eval_sessions=[s for s in sessions if split[s] == EVAL],
        train_sessions=[s for s in sessions if split[s] == TRAIN],
    )


def chat_format_problems(rows: Iterable[dict[str, Any]]) -> list[str]:
    """What is wrong with rows' `messages` (roles in order, a non-empty assistant turn last)."""
    problems = []
    for i, row in enumerate(rows):
        messages = row.get("messages") or []
        roles = [m.get("role") for m in messages]
        if not roles or roles[-1] != "assistant" or not (messages[-1].get("content") or "").strip():
            problems.append(f"row {i} ({row.get('episode_id')}): expected a non-empty assistant turn last, got roles {roles}")
        elif any(r not in ROLES for r in roles) or roles[-2] != "user" or roles.count("system") > 1 or (
            "system" in roles and roles[0] != "system"
        ):
            problems.append(f"row {i} ({row.get('episode_id')}): expected [system], user, assistant; got {roles}")
    return problems


def response_actions(text: str) -> list[str] | None:
    """The action sequence in a response of either learn model (`A -> B -> C` after the last colon),
    or None when the text holds no such list."""
    _, sep, tail = text.rpartition(":")
    if not sep:
        return None
    actions = [a.strip() for a in tail.strip().split("->")]
    if not actions or any(not a or " " in a for a in actions):
        return None
    return actions
