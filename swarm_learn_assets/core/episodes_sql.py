"""The learn-model rules of `learn_models` applied to many sessions at once, in one DuckDB query.

Input: validated records with the `_session` column (`<scenario>.<session_id>`), any order.
Output: one row per episode with the columns of DESIGN §5 (plus `context` and `selection_logic`,
which prompts and strategy statistics need).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from .learn_models import WORKER_DECISION_SEQUENCE, WORKER_TASK
from .schema import DONE, SYSTEM_EVENTS
from .validation import SESSION_KEY

EPISODE_SCHEMA = pa.schema(
    [
        ("episode_id", pa.string()),
        ("learn_model", pa.string()),
        ("scenario", pa.string()),
        ("session_id", pa.string()),
        ("worker_id", pa.int64()),
        ("task_id", pa.string()),
        ("group_id", pa.string()),
        ("outcome", pa.string()),
        ("score", pa.float64()),
        ("reason", pa.string()),
        ("actions", pa.list_(pa.string())),
        ("record_seqs", pa.list_(pa.int64())),
        ("started_at_ms", pa.int64()),
        ("ended_at_ms", pa.int64()),
        ("context", pa.string()),
        ("selection_logic", pa.string()),
    ]
)

_SYSTEM = ", ".join(f"'{e}'" for e in SYSTEM_EVENTS)

# Shared tail of both models: ids, ordered lists and first-of values per episode group.
_EPISODE_FIELDS = f"""
    split_part({SESSION_KEY}, '.', 1) AS scenario,
    split_part({SESSION_KEY}, '.', 2) AS session_id,
    worker_id,
    (list(task_id ORDER BY seq))[1] AS task_id,
    (list(group_id ORDER BY seq))[1] AS group_id,
    list(action ORDER BY seq) AS actions,
    list(seq ORDER BY seq) AS record_seqs,
    min(timestamp_ms) AS started_at_ms,
    max(timestamp_ms) AS ended_at_ms,
    (list(context ORDER BY seq) FILTER (WHERE context IS NOT NULL AND context <> ''))[1] AS context,
    (list(selection_logic ORDER BY seq) FILTER (WHERE action NOT IN ({_SYSTEM})))[1] AS selection_logic,
    min(seq) AS first_seq,
    count(*) AS n_actions
"""

_ID = """substr(sha256(scenario || '/' || session_id || '/' || learn_model || '/' ||
    CAST(worker_id AS VARCHAR) || '/' || CAST(first_seq AS VARCHAR)), 1, 16)"""


def _sql(min_task_actions: int, min_decision_actions: int) -> str:
    return f"""
    WITH actions AS (
        SELECT {SESSION_KEY}, seq, worker_id, action, success, task_id, group_id, context,
               selection_logic, timestamp_ms
        FROM records WHERE kind = 'action'
    ), segmented AS (
        SELECT *, coalesce(sum(CASE WHEN action = '{DONE}' THEN 1 ELSE 0 END) OVER (
            PARTITION BY {SESSION_KEY}, worker_id ORDER BY seq
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS segment
        FROM actions
    ), tasks AS (
        SELECT '{WORKER_TASK}' AS learn_model, {_EPISODE_FIELDS},
               arg_max(action, seq) AS last_action, arg_max(success, seq) AS last_success
        FROM segmented GROUP BY {SESSION_KEY}, worker_id, segment
    ), decisions AS (
        SELECT '{WORKER_DECISION_SEQUENCE}' AS learn_model, {_EPISODE_FIELDS}
        FROM actions WHERE success AND action NOT IN ({_SYSTEM})
        GROUP BY {SESSION_KEY}, worker_id
    ), episodes AS (
        SELECT learn_model, scenario, session_id, worker_id, task_id, group_id,
               CASE WHEN last_success THEN 'success' ELSE 'failure' END AS outcome,
               CASE WHEN last_success THEN 1.0 ELSE 0.0 END AS score,
               CASE WHEN last_success THEN NULL ELSE 'Task failed' END AS reason,
               actions, record_seqs, started_at_ms, ended_at_ms, context, selection_logic, first_seq
        FROM tasks WHERE last_action = '{DONE}' AND n_actions >= {int(min_task_actions)}
        UNION ALL
        SELECT learn_model, scenario, session_id, worker_id, task_id, group_id,
               'success', 1.0, NULL, actions, record_seqs, started_at_ms, ended_at_ms, context,
               selection_logic, first_seq
        FROM decisions WHERE n_actions >= {int(min_decision_actions)}
    )
    SELECT {_ID} AS episode_id, learn_model, scenario, session_id, worker_id, task_id, group_id,
           outcome, score, reason, actions, record_seqs, started_at_ms, ended_at_ms, context,
           selection_logic
    FROM episodes
    ORDER BY scenario, session_id, learn_model, worker_id, first_seq
    """


def build_episode_table(records: pa.Table, min_task_actions: int = 2, min_decision_actions: int = 3) -> pa.Table:
    """Episodes of both learn models for every session in `records`."""
    con = duckdb.connect()
    con.register("records", records.select([SESSION_KEY, "kind", "seq", "worker_id", "action", "success",
                                            "task_id", "group_id", "context", "selection_logic", "timestamp_ms"]))
    table = con.sql(_sql(min_task_actions, min_decision_actions)).to_arrow_table()
    con.close()
    return table.cast(EPISODE_SCHEMA)
