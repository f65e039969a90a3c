"""A synthetic agent swarm that writes realistic landing files (DESIGN §4).

Why it exists: every later stage (episodes, statistics, DPO pairs, training) needs data that
behaves like the real swarm — tasks that succeed, fail and time out, contexts that repeat across
sessions, and a learning curve — without running the Rust engine. All randomness comes from the
seed and all times from a fixed epoch (never the wall clock), so one seed always gives the same
bytes, and each session has its own random stream, so it does not depend on how many others were
generated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from swarm_learn_assets.core.contract.schema import COLUMNS, DONE, SCHEMA, TICK_END, TICK_START
from swarm_learn_assets.core.llm.prompts import DECIDE_CALL_TYPE, decide_prompt, decide_response
from swarm_learn_assets.core.storage.atomic import write_parquet
from swarm_learn_assets.core.storage.names import validate_name

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so output never depends on when it ran.
DAY_MS = 86_400_000
SESSION_SPACING_MS = 2 * 3_600_000  # sessions of a scenario start two hours apart: ids sort in time order
SCENARIO_OFFSET_MS = 7 * 60_000
SESSION_JITTER_MS = 20 * 60_000

MODEL = "smollm2-135m"
ENDPOINT = "http://localhost:8080"
ADVISOR = "llm-strategy-advisor"
SELECTION_LOGICS: tuple[str, ...] = ("UCB1", "Thompson", "Greedy")

# Behaviour knobs. Skill rises with the session index (not the session count), so learning is
# visible and a session's content does not depend on how many sessions were asked for.
SKILL_START = 0.68
SKILL_END = 0.96
SKILL_SESSIONS = 12.0  # e-folding length of the learning curve, in sessions
LOGIC_SKILL = {"UCB1": -0.04, "Thompson": 0.0, "Greedy": 0.02}  # UCB1 explores more
P_GUIDANCE = 0.07  # Manager guidance: always the right next action
P_LLM_DECIDE = 0.3
P_LLM_ERROR = 0.03
P_WRONG_FAILS = 0.55
P_RETRY = 0.6  # after a wrong action, retry the expected one at the same position
P_TIMEOUT = 0.2  # the worker's last task is cut off by the end of the session (no `done`)
P_ADVICE_PER_TICK = 0.04
P_ADVICE_FAILS = 0.05
ROWS_PER_STEP = 3  # tick_start, action, tick_end (+ an optional llm_call)

TASK_FAILED = "Task failed: actions out of order"
WRONG_ACTION_ERRORS: tuple[str, ...] = (
    "precondition not met",
    "permission denied",
    "resource busy",
    "timed out after 30s",
    "target in unexpected state",
)

ACTION_MEDIAN_MS: dict[str, int] = {
    "CheckStatus": 120,
    "ReadLogs": 650,
    "AnalyzeMetrics": 1400,
    "Diagnose": 900,
    "ClearCache": 300,
    "Restart": 4200,
    "ScaleUp": 6500,
    "Rollback": 5200,
    "ReadConfig": 200,
    "RunTests": 8000,
    "Deploy": 9000,
    "Canary": 3000,
    "Promote": 2500,
    "CheckReplication": 350,
    "AnalyzeQueries": 1100,
    "KillQueries": 400,
    "FreeDisk": 2600,
    "Failover": 7000,
    "RestoreBackup": 12000,
}


HOSTS_PER_FAMILY = 16  # targets a symptom family is applied to, drawn per task


@dataclass(frozen=True)
class Family:
    """A kind of incident (`disk full on {host}`), the hosts it strikes (`db-1`…`db-16`), and the
    hidden action order that fixes it. The order depends on the family only, never on the host, so
    a model that learned a family answers for hosts it never saw."""

    template: str
    host_stem: str
    order: tuple[str, ...]

    @cached_property
    def slug(self) -> str:
        text = self.template.replace("{host}", self.host_stem)
        return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())

    def on(self, host_number: int) -> Context:
        host = f"{self.host_stem}-{host_number}"
        return Context(self.template.format(host=host), host, self.order, self.slug)


@dataclass(frozen=True)
class Context:
    """A task's symptom on one host, the host, the hidden order, and the family it belongs to."""

    symptom: str
    target: str
    order: tuple[str, ...]
    family: str


@dataclass(frozen=True)
class ScenarioSpec:
    """A scenario's action vocabulary, split like the dependency graph splits it, and its families."""

    name: str
    discover: tuple[str, ...]
    not_discover: tuple[str, ...]
    families: tuple[Family, ...]

    @property
    def actions(self) -> tuple[str, ...]:
        return self.discover + self.not_discover


def _family(template: str, host_stem: str, order: str) -> Family:
    """Catalogue shorthand: the order as space-separated action names."""
    return Family(template, host_stem, tuple(order.split()))


CATALOGUE: tuple[ScenarioSpec, ...] = (
    ScenarioSpec(
        "troubleshooting",
        ("CheckStatus", "ReadLogs", "AnalyzeMetrics", "Diagnose"),
        ("ClearCache", "Restart", "ScaleUp", "Rollback"),
        (
            _family("high latency on {host}", "api-gateway", "CheckStatus AnalyzeMetrics Diagnose ScaleUp"),
            _family("memory leak in {host}", "worker", "CheckStatus ReadLogs AnalyzeMetrics Diagnose Restart"),
            _family("5xx errors after release on {host}", "web-frontend", "ReadLogs Diagnose Rollback"),
            _family("stale responses from {host}", "cache", "CheckStatus AnalyzeMetrics ClearCache"),
            _family("service down on {host}", "auth-service", "CheckStatus ReadLogs Restart"),
        ),
    ),
    ScenarioSpec(
        "deploy-rollout",
        ("CheckStatus", "ReadConfig", "RunTests", "AnalyzeMetrics"),
        ("Deploy", "Canary", "Promote", "Rollback"),
        (
            _family("new release of {host}", "payments-api", "RunTests Deploy AnalyzeMetrics Promote"),
            _family("config change for {host}", "search-service", "ReadConfig RunTests Canary Promote"),
            _family("error spike during rollout of {host}", "checkout", "CheckStatus AnalyzeMetrics Rollback"),
            _family("hotfix for {host}", "login-service", "RunTests Canary AnalyzeMetrics Promote"),
            _family("canary degraded on {host}", "recommendations", "AnalyzeMetrics Rollback CheckStatus"),
            _family("first deploy of {host}", "billing-worker", "ReadConfig RunTests Deploy CheckStatus Promote"),
        ),
    ),
    ScenarioSpec(
        "db-recovery",
        ("CheckStatus", "ReadLogs", "CheckReplication", "AnalyzeQueries"),
        ("KillQueries", "FreeDisk", "Failover", "RestoreBackup"),
        (
            _family("disk full on {host}", "db", "CheckStatus ReadLogs FreeDisk"),
            _family("replication lag on {host}", "db-replica", "CheckReplication AnalyzeQueries KillQueries"),
            _family("primary unreachable on {host}", "db-primary", "CheckStatus CheckReplication Failover"),
            _family("corrupted table on {host}", "db-store", "ReadLogs CheckStatus RestoreBackup CheckReplication"),
            _family("slow queries on {host}", "db-analytics", "CheckStatus AnalyzeQueries KillQueries CheckStatus"),
        ),
    ),
)


def scenario_spec(index: int) -> ScenarioSpec:
    """The index-th scenario: the catalogue in turn, suffixed `-2`, `-3`… once it runs out."""
    base = CATALOGUE[index % len(CATALOGUE)]
    round_ = index // len(CATALOGUE)
    return base if round_ == 0 else replace(base, name=f"{base.name}-{round_ + 1}")


def session_id_for(index: int, sessions: int) -> str:
    """`s0001`…: zero-padded so lexical order is time order."""
    return f"s{index + 1:0{max(4, len(str(sessions)))}d}"


def skill_for(session_index: int) -> float:
    """Chance of picking the right next action; rises over sessions, which is the learning curve."""
    return SKILL_END - (SKILL_END - SKILL_START) * math.exp(-session_index / SKILL_SESSIONS)


class _Draws:
    """Buffered draws from one numpy Generator: scalar numpy calls cost microseconds each, and a
    large session needs tens of thousands of them."""

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng = rng
        self._block = block
        self._uniform: list[float] = []
        self._normal: list[float] = []

    def uniform(self) -> float:
        if not self._uniform:
            self._uniform = self._rng.random(self._block).tolist()
            self._uniform.reverse()
        return self._uniform.pop()

    def normal(self) -> float:
        if not self._normal:
            self._normal = self._rng.standard_normal(self._block).tolist()
            self._normal.reverse()
        return self._normal.pop()

    def chance(self, p: float) -> bool:
        return self.uniform() < p

    def below(self, n: int) -> int:
        return min(int(self.uniform() * n), n - 1)

    def between(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]."""
        return lo + self.below(hi - lo + 1)

    def pick(self, items: tuple[str, ...] | list[str]) -> str:
        return items[self.below(len(items))]

    def around(self, median: float, sigma: float = 0.5) -> int:
        """Log-normal positive integer: durations and latencies have long right tails."""
        return max(1, int(round(median * math.exp(sigma * self.normal()))))


@dataclass
class _LlmCall:
    prompt: str
    response: str
    latency_ms: int
    error: str | None


@dataclass
class _Step:
    action: str
    success: bool
    error: str | None
    duration_ms: int
    from_guidance: bool
    llm: _LlmCall | None


@dataclass
class _Task:
    task_id: str
    group_id: str
    context: Context
    steps: list[_Step]
    outcome: str  # success / failure / timeout

    @property
    def rows(self) -> int:
        llm_rows = sum(1 for s in self.steps if s.llm is not None)
        return ROWS_PER_STEP * len(self.steps) + llm_rows + (0 if self.outcome == "timeout" else 1)


class _Columns:
    """Column lists that only pay for the columns a row sets; the rest are padded with nulls."""

    def __init__(self) -> None:
        self.cols: dict[str, list[object]] = {name: [] for name in COLUMNS}
        self.n = 0

    def add(self, **values: object) -> None:
        n = self.n
        for name, value in values.items():
            col = self.cols[name]
            if len(col) < n:
                col.extend([None] * (n - len(col)))
            col.append(value)
        self.n = n + 1

    def table(self) -> pa.Table:
        self.cols["seq"] = list(range(self.n))
        for col in self.cols.values():
            if len(col) < self.n:
                col.extend([None] * (self.n - len(col)))
        return pa.table(self.cols, schema=SCHEMA)


def _plan_task(
    d: _Draws, spec: ScenarioSpec, ctx: Context, skill: float, task_id: str, group_id: str
) -> _Task:
    """Walk the hidden order; each position is hit with probability `skill`, else a wrong action
    (maybe failing) is taken first. Any wrong action breaks the order, so `done` fails."""
    actions = spec.actions
    steps: list[_Step] = []
    followed = True
    previous: str | None = None
    for expected in ctx.order:
        while True:
            guided = d.chance(P_GUIDANCE)
            if guided or d.chance(skill):
                action, success, error = expected, True, None
            else:
                wrong = [a for a in actions if a != expected]
                action = d.pick(wrong)
                followed = False
                success = not d.chance(P_WRONG_FAILS)
                error = None if success else f"{action} on {ctx.target}: {d.pick(WRONG_ACTION_ERRORS)}"
            llm = None
            if not guided and d.chance(P_LLM_DECIDE):
                llm = _decide_call(d, spec, ctx, previous, action)
            steps.append(_Step(action, success, error, d.around(ACTION_MEDIAN_MS.get(action, 400)), guided, llm))
            previous = action
            if action == expected or not d.chance(P_RETRY):
                break
    return _Task(task_id, group_id, ctx, steps, "success" if followed else "failure")


def _decide_call(d: _Draws, spec: ScenarioSpec, ctx: Context, previous: str | None, action: str) -> _LlmCall:
    """The `decide` LLM call a worker makes before an action; an errored call has no response."""
    prompt = decide_prompt(ctx.symptom, spec.actions, previous)
    latency = d.around(180, 0.4)
    if d.chance(P_LLM_ERROR):
        return _LlmCall(prompt, "", latency, "connection reset by peer")
    return _LlmCall(prompt, decide_response(action, ctx.target), latency, None)


def _timeout(d: _Draws, task: _Task) -> _Task:
    """Cut a task short: the session ended before the worker reached `done`."""
    task.steps = task.steps[: d.between(1, len(task.steps))]
    task.outcome = "timeout"
    return task


def _plan_worker(
    d: _Draws,
    spec: ScenarioSpec,
    session_id: str,
    worker: int,
    skill: float,
    tasks_per_worker: int,
    row_budget: int | None,
) -> list[_Task]:
    """A worker's tasks, one after another: a fixed count, or as many as fill `row_budget`."""
    tasks: list[_Task] = []
    rows = 0
    while True:
        family = spec.families[d.below(len(spec.families))]
        ctx = family.on(1 + d.below(HOSTS_PER_FAMILY))
        task = _plan_task(
            d, spec, ctx, skill, f"t-{session_id}-{worker}-{len(tasks) + 1}", f"g-{spec.name}-{ctx.family}"
        )
        tasks.append(task)
        rows += task.rows
        if row_budget is None:
            if len(tasks) >= tasks_per_worker:
                break
        elif row_budget - rows <= task.rows // 2:
            break
    if d.chance(P_TIMEOUT):
        _timeout(d, tasks[-1])
    return tasks


def _dependency_graph_row(out: _Columns, d: _Draws, spec: ScenarioSpec, skill: float, ts: int) -> None:
    """One inferred dependency graph per session; early sessions sometimes swap two neighbours."""

    def noisy(order: tuple[str, ...]) -> list[str]:
        result = list(order)
        if len(result) > 1 and d.chance(1.0 - skill):
            i = d.below(len(result) - 1)
            result[i], result[i + 1] = result[i + 1], result[i]
        return result

    discover, not_discover = noisy(spec.discover), noisy(spec.not_discover)
    prompt = (
        f"Scenario: {spec.name}\nAvailable actions: {', '.join(spec.actions)}\n"
        "Split the actions into discovery actions (they gather information) and state-changing "
        "actions, and order each group by dependency. Answer as JSON."
    )
    response = json.dumps({"discover": discover, "not_discover": not_discover})
    out.add(
        kind="dependency_graph",
        timestamp_ms=ts,
        call_type="dependency_graph",
        model=MODEL,
        endpoint=ENDPOINT,
        prompt=prompt,
        response=response,
        latency_ms=d.around(900, 0.3),
        available_actions=list(spec.actions),
        discover_order=discover,
        not_discover_order=not_discover,
    )


def _advice_row(out: _Columns, d: _Draws, ts: int, tick: int, current: str, visits: int, failures: int) -> int:
    """A strategy-advisor verdict from the failure rate so far; returns its latency."""
    failure_rate = failures / visits if visits else 0.0
    recommended = ("UCB1" if failure_rate > 0.35 else "Thompson") if failure_rate > 0.2 else "Greedy"
    should_change = recommended != current
    latency = d.around(350, 0.4)
    ok = not d.chance(P_ADVICE_FAILS)
    if should_change:
        reason = f"failure rate {failure_rate:.2f} suggests switching from {current} to {recommended}"
    else:
        reason = f"failure rate {failure_rate:.2f} is consistent with {current}; keep it"
    out.add(
        kind="strategy_advice",
        timestamp_ms=ts,
        tick=tick,
        advisor=ADVISOR,
        current_strategy=current,
        recommended=recommended if ok else current,
        should_change=should_change and ok,
        confidence=round(0.5 + 0.45 * d.uniform(), 3) if ok else 0.0,
        reason=reason if ok else "",
        frontier_count=d.between(1, 12),
        total_visits=visits,
        failure_rate=round(failure_rate, 4),
        latency_ms=latency,
        success=ok,
        error=None if ok else "advisor timed out",
    )
    return latency


def simulate_session(
    spec: ScenarioSpec,
    scenario_index: int,
    session_index: int,
    session_id: str,
    *,
    seed: int,
    workers: int,
    tasks_per_worker: int,
    records_per_session: int | None,
) -> pa.Table:
    """One session's records as a SCHEMA table, in the order the swarm produced them."""
    d = _Draws(np.random.default_rng([seed, scenario_index, session_index]))
    skill = skill_for(session_index)
    clock = (
        EPOCH_MS
        + (seed % 365) * DAY_MS
        + session_index * SESSION_SPACING_MS
        + scenario_index * SCENARIO_OFFSET_MS
        + d.below(SESSION_JITTER_MS)
    )
    out = _Columns()
    _dependency_graph_row(out, d, spec, skill, clock)

    offset = d.below(len(SELECTION_LOGICS))
    logics = [SELECTION_LOGICS[(w + offset) % len(SELECTION_LOGICS)] for w in range(workers)]
    budget = None if records_per_session is None else max(1, (records_per_session - 2) // workers)
    plans, outcomes = _plan_workers(d, spec, session_id, skill, logics, tasks_per_worker, budget)
    total_ticks = max(len(p) for p in plans)
    current_strategy = logics[0]
    visits = failures = llm_calls = advice = 0
    for tick in range(total_ticks):
        clock += d.between(5, 40)
        if tick > 2 and d.chance(P_ADVICE_PER_TICK):
            clock += _advice_row(out, d, clock, tick, current_strategy, visits, failures)
            advice += 1
        for w, plan in enumerate(plans):
            if tick >= len(plan):
                continue
            task, i = plan[tick]
            clock, called = _worker_step(out, d, clock, tick, w, task, i, logics[w])
            llm_calls += called
            visits += 1
            failures += not task.steps[i].success

    clock += d.between(5, 40)
    stats = {
        "tasks": sum(outcomes.values()),
        **{f"tasks_{k}": v for k, v in outcomes.items()},
        "llm_calls": llm_calls,
        "strategy_advice": advice,
        "action_failures": failures,
        "workers": workers,
    }
    out.add(
        kind="learn_stats",
        timestamp_ms=clock,
        stats_json=json.dumps(stats, sort_keys=True, separators=(",", ":")),
        outcome=max(outcomes, key=lambda k: outcomes[k]),
        total_ticks=total_ticks,
        total_actions=visits,
    )
    return out.table()


def _plan_workers(d: _Draws, spec: ScenarioSpec, session_id: str, skill: float, logics: list[str],
                  tasks_per_worker: int, budget: int | None) -> tuple[list[list[tuple[_Task, int]]], dict[str, int]]:
    """Each worker's tasks, drawn up front, as (task, step index) per tick; and the tasks per outcome."""
    plans: list[list[tuple[_Task, int]]] = []
    outcomes = {"success": 0, "failure": 0, "timeout": 0}
    for w, logic in enumerate(logics):
        tasks = _plan_worker(d, spec, session_id, w, max(0.0, min(1.0, skill + LOGIC_SKILL[logic])), tasks_per_worker,
                             budget)
        for task in tasks:
            outcomes[task.outcome] += 1
        plans.append([(task, i) for task in tasks for i in range(len(task.steps))])
    return plans, outcomes


def _worker_step(out: _Columns, d: _Draws, clock: int, tick: int, worker: int, task: _Task, i: int,
                 logic: str) -> tuple[int, bool]:
    """One worker's step at a tick, as the swarm records it: tick start, the decide call if the LLM
    chose, the action, tick end, and `done` after a task's last step. Returns the clock after it and
    whether the LLM was called."""
    step = task.steps[i]
    base = dict(
        kind="action", tick=tick, worker_id=worker, task_id=task.task_id, group_id=task.group_id,
        context=task.context.symptom,
    )  # fmt: skip
    clock += d.between(1, 4)
    out.add(timestamp_ms=clock, action=TICK_START, success=True, duration_ms=0, from_guidance=False, **base)
    if step.llm is not None:
        clock += 1
        call = step.llm
        out.add(
            kind="llm_call", timestamp_ms=clock, worker_id=worker, call_type=DECIDE_CALL_TYPE, model=MODEL,
            prompt=call.prompt, response=call.response, endpoint=ENDPOINT, latency_ms=call.latency_ms,
            error=call.error,
        )  # fmt: skip
        clock += call.latency_ms
    clock += 1
    out.add(
        timestamp_ms=clock, action=step.action, target=task.context.target, success=step.success,
        error=step.error, duration_ms=step.duration_ms, selection_logic=logic,
        previous_action=task.steps[i - 1].action if i else None, from_guidance=step.from_guidance, **base,
    )  # fmt: skip
    clock += step.duration_ms
    out.add(timestamp_ms=clock, action=TICK_END, success=True, duration_ms=0, from_guidance=False, **base)
    if i == len(task.steps) - 1 and task.outcome != "timeout":
        clock += 1
        ok = task.outcome == "success"
        out.add(
            timestamp_ms=clock, action=DONE, success=ok, error=None if ok else TASK_FAILED,
            duration_ms=0, from_guidance=False, previous_action=step.action, **base,
        )  # fmt: skip
    return clock, step.llm is not None


def check_sizes(seed: int, **counts: int) -> None:
    """Every count at least 1 and the seed non-negative, or a ValueError naming the argument."""
    for label, value in counts.items():
        if value < 1:
            raise ValueError(f"{label} must be at least 1, got {value}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")


def simulate(
    data_root: Path,
    scenarios: int = 3,
    sessions: int = 20,
    seed: int = 7,
    workers: int = 4,
    tasks_per_worker: int = 3,
    progress: Callable[[int, int], None] | None = None,
    records_per_session: int | None = None,
) -> list[Path]:
    """Write `landing/<scenario>/<session_id>.parquet` for every scenario × session; return the paths.

    `records_per_session`, when given, replaces `tasks_per_worker`: each worker takes tasks until the
    session holds about that many records.
    """
    check_sizes(scenarios=scenarios, sessions=sessions, workers=workers, tasks_per_worker=tasks_per_worker, seed=seed)
    if records_per_session is not None and records_per_session < 1:
        raise ValueError(f"records_per_session must be at least 1, got {records_per_session}")

    landing = Path(data_root) / "landing"
    total = scenarios * sessions
    paths: list[Path] = []
    for sc in range(scenarios):
        spec = scenario_spec(sc)
        scenario = validate_name("scenario", spec.name)
        for si in range(sessions):
            session_id = validate_name("session id", session_id_for(si, sessions))
            table = simulate_session(
                spec, sc, si, session_id, seed=seed, workers=workers,
                tasks_per_worker=tasks_per_worker, records_per_session=records_per_session,
            )  # fmt: skip
            paths.append(write_parquet(table, landing / scenario / f"{session_id}.parquet"))
            if progress is not None:
                progress(len(paths), total)
    return paths
