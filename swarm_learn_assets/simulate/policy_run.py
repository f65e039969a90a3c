"""Sessions in which a decision policy, not the scripted skill, chooses every action (DESIGN §10).

Why: the product's promise is that the *next* sessions go better. Here the swarm asks its policy —
the base model, the applied adapter, the offline model or a served endpoint — the `decide` question
before every step of every worker, batched over the workers of a tick, and the hidden-order rule of
the scripted swarm decides success, so policies are comparable on the same seeds.

What stays fixed for a seed: the tasks (family, host) each worker gets, durations and failure draws
come from streams that do not depend on the policy's answers, so two policies face the same tasks.
New sessions are appended after the scenario's landed ones (ids continue) and never overwrite one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from swarm_learn_assets.core.contract.schema import DONE, TICK_END, TICK_START
from swarm_learn_assets.core.llm.policy import DecideRequest, DecisionPolicy
from swarm_learn_assets.core.llm.prompts import DECIDE_CALL_TYPE
from swarm_learn_assets.core.storage.atomic import write_parquet
from swarm_learn_assets.core.storage.names import validate_name

from .swarm import (
    ACTION_MEDIAN_MS,
    DAY_MS,
    EPOCH_MS,
    HOSTS_PER_FAMILY,
    P_WRONG_FAILS,
    SCENARIO_OFFSET_MS,
    SESSION_SPACING_MS,
    TASK_FAILED,
    WRONG_ACTION_ERRORS,
    Context,
    ScenarioSpec,
    _Columns,
    _dependency_graph_row,
    _Draws,
    check_sizes,
    scenario_spec,
    session_id_for,
)

POLICY_STREAM = 10_007  # keeps the policy sessions' random streams apart from the scripted ones
SELECTION_LOGIC = "LLM"
INVALID_ANSWER = "Task failed: the answer named no offered action"
_SESSION_ID = re.compile(r"^s(\d+)$")


@dataclass
class _Worker:
    tasks: list[Context]
    task_index: int = 0
    position: int = 0
    previous: str | None = None
    outcomes: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0, "timeout": 0})

    @property
    def busy(self) -> bool:
        return self.task_index < len(self.tasks)

    @property
    def task(self) -> Context:
        return self.tasks[self.task_index]

    def finish(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.task_index += 1
        self.position = 0
        self.previous = None


@dataclass(frozen=True)
class PolicySession:
    """What one policy-driven session wrote and how its tasks ended."""

    path: Path
    tasks: int
    succeeded: int
    decisions: int


def next_session_index(landing_dir: Path) -> int:
    """The index after the scenario's highest landed `sNNNN` id (0 when there is none)."""
    numbers = [int(m.group(1)) for p in landing_dir.glob("*.parquet") if (m := _SESSION_ID.match(p.stem))]
    return max(numbers, default=0)


def policy_session(
    spec: ScenarioSpec,
    scenario_index: int,
    session_index: int,
    run_index: int,
    session_id: str,
    policy: DecisionPolicy,
    *,
    seed: int,
    workers: int,
    tasks_per_worker: int,
) -> tuple[pa.Table, int, int, int]:
    """One session's records; returns the table, tasks, successful tasks and decisions asked.

    Tasks are drawn from `[seed, scenario, run_index]`, so the k-th session of a run gets the same
    tasks whichever policy answers; times continue after the scenario's landed sessions."""
    tasks_rng = _Draws(np.random.default_rng([seed, scenario_index, run_index, POLICY_STREAM]))
    d = _Draws(np.random.default_rng([seed, scenario_index, run_index, POLICY_STREAM + 1]))
    crew = [
        _Worker([spec.families[tasks_rng.below(len(spec.families))].on(1 + tasks_rng.below(HOSTS_PER_FAMILY))
                 for _ in range(tasks_per_worker)])
        for _ in range(workers)
    ]  # fmt: skip
    clock = (EPOCH_MS + (seed % 365) * DAY_MS + session_index * SESSION_SPACING_MS
             + scenario_index * SCENARIO_OFFSET_MS + d.below(60_000))  # fmt: skip
    out = _Columns()
    _dependency_graph_row(out, d, spec, 1.0, clock)
    task_numbers = [0] * workers
    tick = visits = failures = decisions = llm_calls = 0
    while any(w.busy for w in crew):
        active = [i for i, w in enumerate(crew) if w.busy]
        requests = [DecideRequest(crew[i].task.symptom, crew[i].task.target, spec.actions, crew[i].previous)
                    for i in active]  # fmt: skip
        answers = policy.decide(requests)
        decisions += len(requests)
        clock += d.between(5, 40)
        for i, request, answer in zip(active, requests, answers):
            worker, ctx = crew[i], crew[i].task
            task_numbers[i] += worker.position == 0
            base = dict(
                kind="action", tick=tick, worker_id=i, task_id=f"t-{session_id}-{i}-{task_numbers[i]}",
                group_id=f"g-{spec.name}-{ctx.family}", context=ctx.symptom,
            )  # fmt: skip
            clock += d.between(1, 4)
            out.add(timestamp_ms=clock, action=TICK_START, success=True, duration_ms=0, from_guidance=False, **base)
            if policy.records_llm_calls:
                clock += 1
                out.add(
                    kind="llm_call", timestamp_ms=clock, worker_id=i, call_type=DECIDE_CALL_TYPE, model=policy.model,
                    prompt=request.prompt, response=answer.response, endpoint=policy.endpoint,
                    latency_ms=answer.latency_ms, error=answer.error,
                )  # fmt: skip
                llm_calls += 1
            clock += answer.latency_ms
            action = answer.action(spec.actions)
            expected = ctx.order[worker.position]
            if action is not None:
                right = action == expected
                success = right or not d.chance(P_WRONG_FAILS)
                error = None if success else f"{action} on {ctx.target}: {d.pick(WRONG_ACTION_ERRORS)}"
                duration = d.around(ACTION_MEDIAN_MS.get(action, 400))
                clock += 1
                out.add(
                    timestamp_ms=clock, action=action, target=ctx.target, success=success, error=error,
                    duration_ms=duration, selection_logic=SELECTION_LOGIC, previous_action=worker.previous,
                    from_guidance=False, lora=policy.lora, **base,
                )  # fmt: skip
                clock += duration
                visits += 1
                failures += not success
            out.add(timestamp_ms=clock, action=TICK_END, success=True, duration_ms=0, from_guidance=False, **base)
            if action == expected:
                worker.previous, worker.position = action, worker.position + 1
                if worker.position < len(ctx.order):
                    continue
            ok = action == expected
            clock += 1
            out.add(
                timestamp_ms=clock, action=DONE, success=ok,
                error=None if ok else (TASK_FAILED if action is not None else INVALID_ANSWER),
                duration_ms=0, from_guidance=False, previous_action=action or worker.previous, **base,
            )  # fmt: skip
            worker.finish("success" if ok else "failure")
        tick += 1

    outcomes = {k: sum(w.outcomes[k] for w in crew) for k in ("success", "failure", "timeout")}
    stats = {
        "tasks": sum(outcomes.values()), **{f"tasks_{k}": v for k, v in outcomes.items()},
        "llm_calls": llm_calls, "strategy_advice": 0, "action_failures": failures, "workers": workers,
        "policy": policy.name,
    }  # fmt: skip
    out.add(
        kind="learn_stats", timestamp_ms=clock + d.between(5, 40),
        stats_json=json.dumps(stats, sort_keys=True, separators=(",", ":")),
        outcome=max(outcomes, key=lambda k: outcomes[k]), total_ticks=tick, total_actions=visits,
    )  # fmt: skip
    return out.table(), stats["tasks"], outcomes["success"], decisions


def simulate_with_policy(
    data_root: Path,
    policy_for: Callable[[str], DecisionPolicy],
    scenarios: int = 3,
    sessions: int = 10,
    seed: int = 7,
    workers: int = 4,
    tasks_per_worker: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> list[PolicySession]:
    """Append `sessions` policy-driven sessions to each scenario's landing folder.

    `policy_for(scenario)` gives the policy of a scenario (an adapter belongs to one scenario)."""
    check_sizes(scenarios=scenarios, sessions=sessions, workers=workers, tasks_per_worker=tasks_per_worker, seed=seed)
    landing = Path(data_root) / "landing"
    written: list[PolicySession] = []
    for sc in range(scenarios):
        spec = scenario_spec(sc)
        scenario = validate_name("scenario", spec.name)
        policy = policy_for(scenario)
        first = next_session_index(landing / scenario)
        for k in range(sessions):
            index = first + k
            session_id = validate_name("session id", session_id_for(index, index + 1))
            table, tasks, succeeded, decisions = policy_session(
                spec, sc, index, k, session_id, policy, seed=seed, workers=workers, tasks_per_worker=tasks_per_worker
            )
            path = write_parquet(table, landing / scenario / f"{session_id}.parquet", overwrite=False)
            written.append(PolicySession(path, tasks, succeeded, decisions))
            if progress is not None:
                progress(len(written), scenarios * sessions)
    return written
