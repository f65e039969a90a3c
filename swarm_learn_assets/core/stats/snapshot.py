"""Session snapshots (DESIGN §6): the statistics of one session, from its episodes and actions.

`build_snapshots` computes them for many sessions at once in DuckDB; `snapshot_rowwise` is the
plain per-record definition of the same rules, kept as the executable specification (a test holds
both to the same output, and the benchmark uses it as the per-row baseline).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from ..contract.schema import SYSTEM_EVENTS
from ..contract.typed_records import ActionRecord, Record
from ..episodes.episode import Episode
from ..episodes.learn_models import WORKER_TASK
from ..storage.names import SESSION_KEY

SNAPSHOT_VERSION = 1
DEFAULT_NGRAM_ORDERS: tuple[int, ...] = (3, 4)
MIN_NGRAM, MAX_NGRAM = 3, 10
SECTIONS = ("episode_transitions", "ngrams", "action_stats", "contextual_stats", "selection_performance")

Snapshot = dict[str, Any]


def check_ngram_orders(orders: Sequence[int]) -> tuple[int, ...]:
    """Orders are distinct integers from 3 to 10; anything else is a configuration error."""
    bad = [n for n in orders if not isinstance(n, int) or not MIN_NGRAM <= n <= MAX_NGRAM]
    if bad or not orders:
        raise ValueError(f"ngram orders: expected integers from {MIN_NGRAM} to {MAX_NGRAM}, got {list(orders)}")
    return tuple(sorted(set(orders)))


def empty_snapshot(scenario: str, session_id: str | None, created_at_ms: int = 0) -> Snapshot:
    return {
        "version": SNAPSHOT_VERSION,
        "metadata": {
            "scenario": scenario,
            "session_id": session_id,
            "created_at_ms": created_at_ms,
            "session_count": 1,
            "total_episodes": 0,
            "success_episodes": 0,
            "failure_episodes": 0,
            "total_actions": 0,
        },
        **{section: [] for section in SECTIONS},
    }


# ---------------------------------------------------------------------------------------------
# Per-record definition
# ---------------------------------------------------------------------------------------------


def snapshot_rowwise(
    records: Sequence[Record],
    episodes: Sequence[Episode],
    scenario: str,
    session_id: str,
    ngram_orders: Sequence[int] = DEFAULT_NGRAM_ORDERS,
) -> Snapshot:
    """The snapshot of one session, one record at a time: the definition the batched SQL is tested against."""
    orders = check_ngram_orders(ngram_orders)
    ordered = sorted(records, key=lambda r: r.seq if r.seq is not None else -1)
    times = [r.timestamp_ms for r in ordered if r.timestamp_ms is not None]
    snap = empty_snapshot(scenario, session_id, times[0] if times else 0)
    transitions, grams, strategy_episodes = _episode_counts(episodes, orders, snap["metadata"])
    action_stats, contextual, strategies = _action_counts(ordered, snap["metadata"])
    for (strategy, result), count in strategy_episodes.items():
        strategies[strategy][f"episodes_{result}"] += count

    pairs = sorted({(a, b) for a, b, _ in transitions})
    snap["episode_transitions"] = [
        {"from": a, "to": b, "success": transitions[(a, b, "success")], "failure": transitions[(a, b, "failure")]}
        for a, b in pairs
    ]
    keys = sorted({(n, gram) for n, gram, _ in grams})
    snap["ngrams"] = [
        {"n": n, "gram": list(g), "success": grams[(n, g, "success")], "failure": grams[(n, g, "failure")]}
        for n, g in keys
    ]
    snap["action_stats"] = [
        {"action": a, **{k: s[k] for k in ("visits", "successes", "failures", "total_duration_ms")}}
        for a, s in sorted(action_stats.items())
    ]
    snap["contextual_stats"] = [
        {"prev": p, "action": a, **{k: s[k] for k in ("visits", "successes", "failures")}}
        for (p, a), s in sorted(contextual.items())
    ]
    snap["selection_performance"] = [
        {
            "strategy": name,
            **{k: s[k] for k in ("visits", "successes", "failures", "episodes_success", "episodes_failure")},
        }
        for name, s in sorted(strategies.items())
    ]
    return snap


def _episode_counts(episodes: Sequence[Episode], orders: Sequence[int], meta: dict) -> tuple[Counter, Counter, Counter]:
    """Transitions, n-grams and episodes per strategy of the judged worker-task episodes, each as
    success or failure by the episode's outcome; the episode totals go into `meta`."""
    transitions: Counter = Counter()
    grams: Counter = Counter()
    strategy_episodes: Counter = Counter()
    for episode in episodes:
        if episode.learn_model != WORKER_TASK or episode.outcome.is_unknown():
            continue
        result = "success" if episode.outcome.is_success() else "failure"
        meta["total_episodes"] += 1
        meta[f"{result}_episodes"] += 1
        actions = episode.decision_actions()
        for a, b in zip(actions, actions[1:]):
            transitions[(a, b, result)] += 1
        for n in orders:
            for i in range(len(actions) - n + 1):
                grams[(n, tuple(actions[i : i + n]), result)] += 1
        if episode.selection_logic() is not None:
            strategy_episodes[(episode.selection_logic(), result)] += 1
    return transitions, grams, strategy_episodes


def _action_counts(ordered: Sequence[Record], meta: dict) -> tuple[dict, dict, dict]:
    """Per action, per (previous action, action) and per selection strategy: visits, successes and
    failures of the non-system actions in `seq` order; the action total goes into `meta`."""
    action_stats: dict[str, Counter] = defaultdict(Counter)
    contextual: dict[tuple[str, str], Counter] = defaultdict(Counter)
    strategies: dict[str, Counter] = defaultdict(Counter)
    last_by_worker: dict[int, str] = {}
    for record in ordered:
        if not isinstance(record, ActionRecord) or record.is_system_event():
            continue
        result = "successes" if record.success else "failures"
        meta["total_actions"] += 1
        stats = action_stats[record.action]
        stats["visits"] += 1
        stats[result] += 1
        stats["total_duration_ms"] += record.duration_ms or 0
        prev = record.previous_action or last_by_worker.get(record.worker_id)
        if prev is not None:
            contextual[(prev, record.action)]["visits"] += 1
            contextual[(prev, record.action)][result] += 1
        last_by_worker[record.worker_id] = record.action
        if record.selection_logic is not None:
            strategies[record.selection_logic]["visits"] += 1
            strategies[record.selection_logic][result] += 1
    return action_stats, contextual, strategies


# ---------------------------------------------------------------------------------------------
# Batched SQL
# ---------------------------------------------------------------------------------------------

_SYSTEM = ", ".join(f"'{e}'" for e in SYSTEM_EVENTS)
_RESULT = "CASE WHEN outcome = 'success' THEN 'success' ELSE 'failure' END"


def _ngram_sql(orders: tuple[int, ...]) -> str:
    parts = [
        f"SELECT s, result, {n} AS n, a[i:i + {n - 1}] AS gram "
        f"FROM (SELECT s, result, a, unnest(range(1, len(a) - {n - 2})) AS i FROM task_episodes)"
        for n in orders
    ]
    return " UNION ALL ".join(parts)


def _queries(orders: tuple[int, ...]) -> dict[str, str]:
    """One query per snapshot section, each returning (session, JSON list sorted by key)."""
    return {
        "episode_transitions": """
            SELECT s, to_json(list({'from': f, 'to': t, 'success': success, 'failure': failure} ORDER BY f, t))
            FROM (SELECT s, f, t, count(*) FILTER (WHERE result = 'success') AS success,
                         count(*) FILTER (WHERE result = 'failure') AS failure
                  FROM (SELECT s, result, a[i] AS f, a[i + 1] AS t
                        FROM (SELECT s, result, a, unnest(range(1, len(a))) AS i FROM task_episodes))
                  GROUP BY s, f, t)
            GROUP BY s""",
        "ngrams": f"""
            SELECT s, to_json(list({{'n': n, 'gram': gram, 'success': success, 'failure': failure}}
                                   ORDER BY n, gram))
            FROM (SELECT s, n, gram, count(*) FILTER (WHERE result = 'success') AS success,
                         count(*) FILTER (WHERE result = 'failure') AS failure
                  FROM ({_ngram_sql(orders)}) GROUP BY s, n, gram)
            GROUP BY s""",
        "action_stats": """
            SELECT s, to_json(list({'action': action, 'visits': visits, 'successes': successes,
                                    'failures': failures, 'total_duration_ms': total_duration_ms} ORDER BY action))
            FROM (SELECT s, action, count(*) AS visits, count(*) FILTER (WHERE success) AS successes,
                         count(*) FILTER (WHERE NOT success) AS failures,
                         CAST(coalesce(sum(duration_ms), 0) AS BIGINT) AS total_duration_ms
                  FROM decisions GROUP BY s, action)
            GROUP BY s""",
        "contextual_stats": """
            SELECT s, to_json(list({'prev': prev, 'action': action, 'visits': visits, 'successes': successes,
                                    'failures': failures} ORDER BY prev, action))
            FROM (SELECT s, prev, action, count(*) AS visits, count(*) FILTER (WHERE success) AS successes,
                         count(*) FILTER (WHERE NOT success) AS failures
                  FROM (SELECT *, coalesce(previous_action,
                                  lag(action) OVER (PARTITION BY s, worker_id ORDER BY seq)) AS prev
                        FROM decisions)
                  WHERE prev IS NOT NULL GROUP BY s, prev, action)
            GROUP BY s""",
        "selection_performance": """
            SELECT s, to_json(list({'strategy': strategy, 'visits': visits, 'successes': successes,
                                    'failures': failures, 'episodes_success': episodes_success,
                                    'episodes_failure': episodes_failure} ORDER BY strategy))
            FROM (SELECT coalesce(a.s, e.s) AS s, coalesce(a.strategy, e.strategy) AS strategy,
                         coalesce(visits, 0) AS visits, coalesce(successes, 0) AS successes,
                         coalesce(failures, 0) AS failures, coalesce(episodes_success, 0) AS episodes_success,
                         coalesce(episodes_failure, 0) AS episodes_failure
                  FROM (SELECT s, selection_logic AS strategy, count(*) AS visits,
                               count(*) FILTER (WHERE success) AS successes,
                               count(*) FILTER (WHERE NOT success) AS failures
                        FROM decisions WHERE selection_logic IS NOT NULL GROUP BY s, selection_logic) a
                  FULL OUTER JOIN
                       (SELECT s, selection_logic AS strategy,
                               count(*) FILTER (WHERE result = 'success') AS episodes_success,
                               count(*) FILTER (WHERE result = 'failure') AS episodes_failure
                        FROM task_episodes WHERE selection_logic IS NOT NULL GROUP BY s, selection_logic) e
                  ON a.s = e.s AND a.strategy = e.strategy)
            GROUP BY s""",
    }


def build_snapshots(
    records: pa.Table, episodes: pa.Table, ngram_orders: Sequence[int] = DEFAULT_NGRAM_ORDERS
) -> dict[str, Snapshot]:
    """Snapshots of every session in `records`, keyed by `<scenario>.<session_id>`."""
    orders = check_ngram_orders(ngram_orders)
    con = duckdb.connect()
    con.register("records", records.select([SESSION_KEY, "kind", "seq", "timestamp_ms", "worker_id", "action",
                                            "success", "duration_ms", "previous_action", "selection_logic"]))
    con.register("episodes", episodes.select(["learn_model", "scenario", "session_id", "outcome", "actions",
                                              "selection_logic"]))
    con.execute(f"""CREATE TEMP VIEW task_episodes AS
        SELECT scenario || '.' || session_id AS s, {_RESULT} AS result, selection_logic,
               list_filter(actions, lambda x: x NOT IN ({_SYSTEM})) AS a
        FROM episodes WHERE learn_model = '{WORKER_TASK}' AND outcome IN ('success', 'failure', 'timeout')""")
    con.execute(f"""CREATE TEMP VIEW decisions AS
        SELECT {SESSION_KEY} AS s, worker_id, seq, action, success, duration_ms, previous_action, selection_logic
        FROM records WHERE kind = 'action' AND action NOT IN ({_SYSTEM})""")
    metadata = con.sql(f"""
        SELECT r.s, r.created_at_ms, r.total_actions,
               coalesce(e.total, 0), coalesce(e.success, 0), coalesce(e.failure, 0)
        FROM (SELECT {SESSION_KEY} AS s,
                     coalesce((list(timestamp_ms ORDER BY seq) FILTER (WHERE timestamp_ms IS NOT NULL))[1], 0)
                         AS created_at_ms,
                     count(*) FILTER (WHERE kind = 'action' AND action NOT IN ({_SYSTEM})) AS total_actions
              FROM records GROUP BY {SESSION_KEY}) r
        LEFT JOIN (SELECT s, count(*) AS total, count(*) FILTER (WHERE result = 'success') AS success,
                          count(*) FILTER (WHERE result = 'failure') AS failure
                   FROM task_episodes GROUP BY s) e ON r.s = e.s
    """).fetchall()
    snapshots: dict[str, Snapshot] = {}
    for key, created, actions, total, success, failure in metadata:
        scenario, _, session_id = key.partition(".")
        snap = empty_snapshot(scenario, session_id, int(created))
        snap["metadata"].update(
            total_actions=int(actions), total_episodes=int(total), success_episodes=int(success),
            failure_episodes=int(failure),
        )
        snapshots[key] = snap
    for section, sql in _queries(orders).items():
        for key, payload in con.sql(sql).fetchall():
            if key in snapshots:
                snapshots[key][section] = json.loads(payload)
    con.close()
    return snapshots
