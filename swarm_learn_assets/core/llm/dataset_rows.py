"""Episodes (and the swarm's recorded decide calls) → SFT and DPO rows with a stable train/eval
split (DESIGN §8). No Dagster, no tokenizer.

Rows come in *sources*. `task_decision` (a successful task's context → its action order) and
`llm_decision` (the swarm's own decide calls whose task succeeded) are learnable: their answer is a
function of their prompt. `worker_task` and `worker_decision_sequence` are the reference learn
models' rows, kept for the reference export but not what the adapter learns by default.
`task_step` (opt-in, built only when `train_on` names it) asks the decide question of every step of
a successful task: the swarm only records a decide call for some steps, so a rare kind of task may
leave no decide example of its later steps at all, and the adapter then cannot answer them.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..contract.schema import SYSTEM_EVENTS
from ..contract.typed_records import ActionRecord
from ..episodes.episode import Episode
from ..episodes.learn_models import (
    WORKER_DECISION_SEQUENCE,
    WORKER_TASK,
    DpoConfig,
    LearnError,
    WorkerDecisionSequenceLearn,
    WorkerTaskLearn,
    build_dpo_pairs,
    convert_dpo_pair,
)
from ..episodes.outcome import Outcome
from .prompts import (
    DECIDE_CALL_TYPE,
    DECISION_SYSTEM_PROMPT,
    answer_kind,
    decide_prompt,
    decide_response,
    decision_prompt,
    decision_response,
)
from .training_data import TrainingData

TRAIN, EVAL = "train", "eval"
ROLES = ("system", "user", "assistant")
TASK_DECISION, LLM_DECISION, TASK_STEP = "task_decision", "llm_decision", "task_step"
SOURCES = (TASK_DECISION, LLM_DECISION, WORKER_TASK, WORKER_DECISION_SEQUENCE)  # always built
OPT_IN_SOURCES = (TASK_STEP,)  # built only when `train_on` names them
KNOWN_SOURCES = SOURCES + OPT_IN_SOURCES
DEFAULT_TRAIN_ON = (TASK_DECISION, LLM_DECISION)


def built_sources(train_on: Iterable[str]) -> tuple[str, ...]:
    """The sources a dataset holds: every always-built one, and the opt-in ones `train_on` names."""
    return SOURCES + tuple(s for s in OPT_IN_SOURCES if s in train_on)


def split_of(session_id: str, eval_fraction: float) -> str:
    """`eval` for a stable share of sessions: a hash of the id, so rebuilding never moves a session."""
    bucket = int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return EVAL if bucket < eval_fraction else TRAIN


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
    """The scenario's action set when a session names none: every decision action seen, sorted."""
    return sorted({a for e in episodes for a in e["actions"] if a not in SYSTEM_EVENTS})


@dataclass(frozen=True)
class DatasetConfig:
    eval_fraction: float = 0.2
    dpo: DpoConfig = field(default_factory=DpoConfig)
    task_steps: bool = False  # build the opt-in `task_step` rows


@dataclass
class TrainingRows:
    """SFT and DPO rows per split, and how many rows were folded into another (consensus for SFT,
    exact duplicates for DPO)."""

    sft: dict[str, list[dict[str, Any]]]
    dpo: dict[str, list[dict[str, Any]]]
    duplicates: dict[str, int]
    eval_sessions: list[str]
    train_sessions: list[str]


# -- linking the swarm's decide calls to the task they served ------------------------------------


def link_decide_calls(records: Iterable[dict[str, Any]], task_episodes: Iterable[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """(call, episode) for every answered `decide` call: the episode is the `worker_task` episode
    holding the worker's next action record after the call.

    `records` are a scenario's record rows (`session_id`, `kind`, `seq`, `worker_id`, `call_type`,
    `prompt`, `response`, `error`), in any order. A call with an error, an empty response, no worker
    or no later action of its worker, or whose next action belongs to no episode, is left out.
    """
    by_worker: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in records:
        if row["worker_id"] is not None and row["kind"] in ("action", "llm_call"):
            by_worker[(row["session_id"], row["worker_id"])].append(row)
    owner: dict[tuple[str, int], dict[str, Any]] = {}
    for episode in task_episodes:
        for seq in episode["record_seqs"]:
            owner[(episode["session_id"], seq)] = episode
    linked = []
    for (session, _), rows in sorted(by_worker.items()):  # records may come in any order: the output may not
        pending: list[dict[str, Any]] = []
        for row in sorted(rows, key=lambda r: r["seq"]):
            if row["kind"] == "llm_call":
                if row["call_type"] == DECIDE_CALL_TYPE and not row["error"] and (row["response"] or "").strip():
                    pending.append(row)
                continue
            episode = owner.get((session, row["seq"]))
            linked.extend((call, episode) for call in pending if episode is not None)
            pending = []
    return linked


# -- rows of each source -------------------------------------------------------------------------


def _row(data: TrainingData, source: str, session_id: str, context: str | None) -> dict[str, Any]:
    return {**data.to_row(), "session_id": session_id, "source": source, "context": context}


def _task_decision_row(episode: Episode, actions: Sequence[str]) -> dict[str, Any] | None:
    context, decisions = episode.context(), episode.decision_actions()
    if not context or not decisions:
        return None
    data = TrainingData.sft(DECISION_SYSTEM_PROMPT, decision_prompt(context, actions), decision_response(decisions),
                            episode_id=episode.id, outcome_score=episode.outcome.score(), learn_model=WORKER_TASK)
    return _row(data, TASK_DECISION, episode.session_id, context)


def _task_step_rows(episode: Episode, actions: Sequence[str], targets: dict[tuple[str, int], str | None]) -> list[dict[str, Any]]:
    """One decide row per decision of a successful task: the prompt the swarm asks before that step
    (the task's context, the actions on offer, the task's previous decision or none) → the action
    taken and its target, as an `llm_call` row would record them."""
    context = episode.context()
    if not context:
        return []
    rows, previous = [], None
    for record in episode.records:
        if record.is_system_event():
            continue
        target = targets.get((episode.session_id, record.seq)) if record.seq is not None else None
        data = TrainingData.sft_simple(decide_prompt(context, actions, previous), decide_response(record.action, target),
                                       episode_id=episode.id, outcome_score=episode.outcome.score(),
                                       learn_model=WORKER_TASK)
        rows.append(_row(data, TASK_STEP, episode.session_id, context))
        previous = record.action
    return rows


def _llm_decision_row(call: dict[str, Any], episode: dict[str, Any]) -> dict[str, Any]:
    """The call as the swarm sent and got it: no system turn, since none was sent."""
    data = TrainingData.sft_simple(call["prompt"], call["response"], episode_id=episode["episode_id"],
                                   outcome_score=episode["score"], learn_model=WORKER_TASK)
    return _row(data, LLM_DECISION, episode["session_id"], episode["context"])


def consensus(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """One row per (source, system, prompt): the most frequent answer (ties: higher mean
    `outcome_score`, then the lexically first), with `count` (rows that gave it) and `agreement`
    (that count over all rows of the prompt). Returns the rows, in first-seen order, and how many
    input rows were folded away."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["system"], row["prompt"])].append(row)
    out = []
    for members in groups.values():
        votes = Counter(r["chosen"] for r in members)
        scores: dict[str, list[float]] = defaultdict(list)
        for r in members:
            scores[r["chosen"]].append(r["outcome_score"] or 0.0)
        best = min(votes, key=lambda a: (-votes[a], -sum(scores[a]) / len(scores[a]), a))
        first = next(r for r in members if r["chosen"] == best)
        out.append({**first, "count": votes[best], "agreement": votes[best] / len(members)})
    return out, len(rows) - len(out)


def _dedupe(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Keep the first of rows with the same system, prompt, chosen and rejected text."""
    seen, kept = set(), []
    for row in rows:
        key = (row["system"], row["prompt"], row["chosen"], row["rejected"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def build_training_rows(
    episode_rows: Sequence[dict[str, Any]],
    config: DatasetConfig = DatasetConfig(),
    records: Iterable[dict[str, Any]] = (),
    session_actions: dict[str, list[str]] | None = None,
) -> TrainingRows:
    """SFT rows of every source and DPO rows from `group_id` pairs, split by session.

    `records` (the scenario's `action` and `llm_call` rows) give the `llm_decision` rows and the
    targets of the `task_step` rows (built when `config.task_steps`);
    `session_actions` maps a session to its dependency graph's available actions (the prompts list
    those, else every decision action of the scenario). A DPO pair belongs to the split of its
    chosen episode's session. Row order follows the episodes' order, so equal input gives equal
    datasets.
    """
    scenario_actions = available_actions(episode_rows)
    session_actions = session_actions or {}
    actions_of = lambda session: session_actions.get(session) or scenario_actions  # noqa: E731
    task_model = WorkerTaskLearn()
    sequence_model = WorkerDecisionSequenceLearn(available_actions=scenario_actions)
    reference = {WORKER_TASK: task_model, WORKER_DECISION_SEQUENCE: sequence_model}
    episodes = [episode_from_row(r) for r in episode_rows]
    sessions = sorted({e.session_id for e in episodes})
    split = {s: split_of(s, config.eval_fraction) for s in sessions}
    records = list(records)
    targets = ({(r["session_id"], r["seq"]): r.get("target") for r in records if r["kind"] == "action"}
               if config.task_steps else {})
    rows: dict[str, list[dict[str, Any]]] = {TRAIN: [], EVAL: []}
    for episode in episodes:
        if episode.learn_model not in reference or not episode.is_success():
            continue
        part = rows[split[episode.session_id]]
        if episode.learn_model == WORKER_TASK and (row := _task_decision_row(episode, actions_of(episode.session_id))):
            part.append(row)
        if episode.learn_model == WORKER_TASK and config.task_steps:
            part.extend(_task_step_rows(episode, actions_of(episode.session_id), targets))
        try:
            data = reference[episode.learn_model].convert(episode)
        except LearnError:
            continue
        part.append(_row(data, episode.learn_model, episode.session_id, episode.context()))
    successful_tasks = [r for r in episode_rows if r["learn_model"] == WORKER_TASK and r["outcome"] == "success"]
    for call, episode in link_decide_calls(records, successful_tasks):
        rows[split.get(episode["session_id"], TRAIN)].append(_llm_decision_row(call, episode))

    sft: dict[str, list[dict[str, Any]]] = {}
    dpo: dict[str, list[dict[str, Any]]] = {TRAIN: [], EVAL: []}
    duplicates: dict[str, int] = {}
    for part in (TRAIN, EVAL):
        sft[part], duplicates[f"sft/{part}"] = consensus(sorted(rows[part], key=lambda r: KNOWN_SOURCES.index(r["source"])))
    seen_contexts = {r["context"] for r in sft[TRAIN] if r["context"]}
    for row in sft[TRAIN]:
        row["unseen_context"] = False
    for row in sft[EVAL]:
        row["unseen_context"] = bool(row["context"]) and row["context"] not in seen_contexts

    tasks = [e for e in episodes if e.learn_model == WORKER_TASK]
    for pair in build_dpo_pairs(tasks, config.dpo):
        try:
            data = convert_dpo_pair(pair, actions_of(pair.chosen.session_id))
        except LearnError:
            continue
        dpo[split[pair.chosen.session_id]].append(
            _row(data, TASK_DECISION, pair.chosen.session_id, pair.chosen.context()))
    for part in (TRAIN, EVAL):
        dpo[part], duplicates[f"dpo/{part}"] = _dedupe(dpo[part])
    return TrainingRows(
        sft, dpo, duplicates,
        eval_sessions=[s for s in sessions if split[s] == EVAL],
        train_sessions=[s for s in sessions if split[s] == TRAIN],
    )


def rows_of_sources(rows: Iterable[dict[str, Any]], sources: Iterable[str]) -> list[dict[str, Any]]:
    wanted = set(sources)
    return [r for r in rows if r["source"] in wanted]


def sample_rows(rows: Sequence[dict[str, Any]], max_rows: int, spread: bool = False) -> list[dict[str, Any]]:
    """At most `max_rows` rows, shared evenly between the sources present (a source with fewer rows
    leaves its share to the others); within a source, the rows whose prompt hashes lowest. A stable
    sample of every source, never "the first N" (which would be one source, early sessions): the
    capped eval set, and the training rows once history outgrows `max_train_rows`. Returned in the
    input order.

    `spread` (the training sample): within a source, take rows round-robin over what they teach
    (`answer_kind`: previous action and answer, hosts aside), so a rare step keeps its few rows
    instead of losing them in proportion — measured in the closed loop, a rare task's last step
    dropped out of a plain 160-row sample and the adapter failed that task on every host."""
    if len(rows) <= max_rows:
        return list(rows)
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_source[row["source"]].append(i)
    quota, left = {}, max_rows
    for n, (source, members) in enumerate(sorted(by_source.items(), key=lambda kv: len(kv[1]))):
        quota[source] = min(len(members), left // (len(by_source) - n))
        left -= quota[source]
    keep = set()
    for source, members in by_source.items():
        hashes = {i: prompt_hash((rows[i]["system"] or "") + "\n" + rows[i]["prompt"]) for i in members}
        ranked = sorted(members, key=lambda i: (hashes[i], i))
        if spread:
            turn: dict[int, int] = {}
            seen: Counter = Counter()
            for i in ranked:
                kind = answer_kind(rows[i]["prompt"], rows[i]["chosen"])
                turn[i], seen[kind] = seen[kind], seen[kind] + 1
            ranked.sort(key=lambda i: turn[i])  # stable: within a turn, still by hash
        keep.update(ranked[: quota[source]])
    return [rows[i] for i in sorted(keep)]


def chat_format_problems(rows: Iterable[dict[str, Any]]) -> list[str]:
    """What is wrong with rows' `messages` (roles in order, a non-empty assistant turn last)."""
    problems = []
    for i, row in enumerate(rows):
        messages = row.get("messages") or []
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
        ):
            problems.append(f"row {i} ({row.get('episode_id')}): expected messages as a list of "
                            f"{{role, content: text}}, got {messages!r:.120}")
            continue
        roles = [m.get("role") for m in messages]
        if not roles or roles[-1] != "assistant" or not (messages[-1].get("content") or "").strip():
            problems.append(f"row {i} ({row.get('episode_id')}): expected a non-empty assistant turn last, got roles {roles}")
        elif len(roles) < 2 or any(r not in ROLES for r in roles) or roles[-2] != "user" or roles.count("system") > 1 or (
            "system" in roles and roles[0] != "system"
        ):
            problems.append(f"row {i} ({row.get('episode_id')}): expected [system], user, assistant; got {roles}")
    return problems
