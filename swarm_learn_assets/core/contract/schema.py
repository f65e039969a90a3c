"""The landing-record contract of DESIGN §4 as data: column names, types and which kinds need what.

Everything that validates, simulates or imports records reads these tables, so the contract lives in
exactly one place.
"""

from __future__ import annotations

import pyarrow as pa

KINDS: tuple[str, ...] = ("action", "llm_call", "dependency_graph", "strategy_advice", "learn_stats")

# System events are engine bookkeeping, not decisions; statistics and prompts leave them out.
TICK_START = "tick_start"
TICK_END = "tick_end"
DONE = "done"
SYSTEM_EVENTS: tuple[str, ...] = (TICK_START, TICK_END, DONE)

STRING = pa.string()
INT = pa.int64()
BOOL = pa.bool_()
DOUBLE = pa.float64()
STRING_LIST = pa.list_(pa.string())

# Column -> arrow type, in the order records/ files are written.
COLUMNS: dict[str, pa.DataType] = {
    "kind": STRING,
    "seq": INT,
    "timestamp_ms": INT,
    "tick": INT,
    "worker_id": INT,
    "action": STRING,
    "target": STRING,
    "error": STRING,
    "selection_logic": STRING,
    "previous_action": STRING,
    "lora": STRING,
    "success": BOOL,
    "duration_ms": INT,
    "from_guidance": BOOL,
    "task_id": STRING,
    "group_id": STRING,
    "context": STRING,
    "call_type": STRING,
    "model": STRING,
    "prompt": STRING,
    "response": STRING,
    "endpoint": STRING,
    "latency_ms": INT,
    "available_actions": STRING_LIST,
    "discover_order": STRING_LIST,
    "not_discover_order": STRING_LIST,
    "advisor": STRING,
    "current_strategy": STRING,
    "recommended": STRING,
    "reason": STRING,
    "should_change": BOOL,
    "confidence": DOUBLE,
    "failure_rate": DOUBLE,
    "frontier_count": INT,
    "total_visits": INT,
    "stats_json": STRING,
    "outcome": STRING,
    "total_ticks": INT,
    "total_actions": INT,
}

SCHEMA = pa.schema([pa.field(name, dtype) for name, dtype in COLUMNS.items()])

# Fields a row of a kind cannot do without.
REQUIRED_BY_KIND: dict[str, tuple[str, ...]] = {
    "action": ("worker_id", "action"),
}

# Counters and durations that must not be negative.
NON_NEGATIVE: tuple[str, ...] = ("tick", "worker_id", "duration_ms", "latency_ms")

LEARN_STATS_OUTCOMES: tuple[str, ...] = ("success", "failure", "timeout")

# Columns added by validation to every row of records/ and quarantine/.
SOURCE_ROW = "source_row"
REJECT_REASON = "reject_reason"
