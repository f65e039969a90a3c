"""Import of the JSON Lines that the Rust `FileRecordStore` writes, into the landing contract (DESIGN §4).

Why a translator and not a validator: each line is one serde `Record`, externally tagged
(`{"Action": {...}}`). Its shape (tags, JSON, types) is checked here, because a row that cannot be
represented in the landing schema cannot be quarantined later either; everything the schema can
hold (missing fields, negative ticks, odd outcomes) is kept as is for `raw_records` to judge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from swarm_learn_assets.core.contract.schema import BOOL, COLUMNS, DOUBLE, INT, SCHEMA, STRING, STRING_LIST
from swarm_learn_assets.core.storage.atomic import write_parquet
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.core.storage.names import session_partition_key

# Rust variant tag -> landing kind.
KIND_BY_TAG: dict[str, str] = {
    "Action": "action",
    "Llm": "llm_call",
    "DependencyGraph": "dependency_graph",
    "StrategyAdvice": "strategy_advice",
    "LearnStats": "learn_stats",
}

# Fields taken from each variant (reference §1.2–1.6); anything else in the JSON is ignored.
# `timestamp_ms` is read wherever present (ActionRecord has none, so its rows get null) and
# `context` is accepted on actions because the landing contract carries it.
FIELDS_BY_TAG: dict[str, tuple[str, ...]] = {
    "Action": (
        "timestamp_ms", "task_id", "group_id", "tick", "worker_id", "action", "target", "success", "error",
        "duration_ms", "selection_logic", "from_guidance", "previous_action", "lora", "context",
    ),
    "Llm": (
        "timestamp_ms", "call_type", "prompt", "response", "model", "endpoint", "lora", "latency_ms",
        "worker_id", "error",
    ),
    "DependencyGraph": (
        "timestamp_ms", "prompt", "response", "available_actions", "discover_order", "not_discover_order",
        "model", "endpoint", "lora", "latency_ms", "error",
    ),
    "StrategyAdvice": (
        "timestamp_ms", "tick", "advisor", "current_strategy", "recommended", "should_change", "confidence",
        "reason", "frontier_count", "total_visits", "failure_rate", "latency_ms", "success", "error",
    ),
    "LearnStats": ("timestamp_ms", "stats_json", "outcome", "total_ticks", "total_actions"),
}  # fmt: skip

# Rust ids are newtypes (UUIDs, integers, wrapped values): the contract stores them as strings.
ID_FIELDS: frozenset[str] = frozenset({"task_id", "group_id"})

# Spellings of the (unpublished) LearnStatsOutcome variants, normalised to the contract's values.
OUTCOME_ALIASES: dict[str, str] = {
    "success": "success",
    "succeeded": "success",
    "failure": "failure",
    "failed": "failure",
    "timeout": "timeout",
    "timedout": "timeout",
    "timed_out": "timeout",
}

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXPECTED_TAGS = ", ".join(KIND_BY_TAG)


class RecordImportError(ValueError):
    """A JSON Lines file that is not a stream of serde `Record`s; the message names file and line."""


def records_from_jsonl(path: Path) -> pa.Table:
    """Read a FileRecordStore JSON Lines file into a landing table (schema exactly `SCHEMA`).

    `seq` is the record's position (blank lines are skipped and not counted).
    """
    path = Path(path)
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    n = 0
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            where = f"{path} line {line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecordImportError(
                    f"{where}: not valid UTF-8 ({exc.reason}); expected one JSON record per line"
                ) from exc
            if not line.strip():
                continue
            row = _parse_line(line, where)
            row["seq"] = n
            for name, col in columns.items():
                col.append(row.get(name))
            n += 1
    return pa.table(columns, schema=SCHEMA)


def import_jsonl(path: Path, data_root: Path, scenario: str, session_id: str, overwrite: bool = False) -> Path:
    """Convert `path` into `landing/<scenario>/<session_id>.parquet` under `data_root`; return that path.

    Landing files are never changed by the pipeline, so replacing one must be asked for explicitly.
    An empty file is refused: it would become a permanent, empty session partition.
    """
    target = DataLayout(Path(data_root)).landing(session_partition_key(scenario, session_id))
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; landing files are never replaced implicitly "
            f"(pass overwrite=True to replace session {scenario}.{session_id})"
        )
    table = records_from_jsonl(path)
    if table.num_rows == 0:
        raise RecordImportError(f"{path}: contains no records; expected one JSON record per line")
    return write_parquet(table, target)


def _parse_line(line: str, where: str) -> dict[str, Any]:
    """One externally tagged `Record` -> a landing row (without `seq`)."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordImportError(f"{where}: not valid JSON ({exc.msg}); expected one JSON record per line") from exc
    if not isinstance(value, dict) or len(value) != 1:
        got = f"an object with {len(value)} keys" if isinstance(value, dict) else f"a JSON {_json_type(value)}"
        raise RecordImportError(
            f"{where}: got {got}; expected an object with exactly one key, the record type ({_EXPECTED_TAGS})"
        )
    ((tag, body),) = value.items()
    if tag not in KIND_BY_TAG:
        raise RecordImportError(f"{where}: unknown record type {tag!r}; expected one of {_EXPECTED_TAGS}")
    if not isinstance(body, dict):
        raise RecordImportError(f"{where}: {tag} record is a JSON {_json_type(body)}; expected an object of fields")
    row: dict[str, Any] = {"kind": KIND_BY_TAG[tag]}
    for name in FIELDS_BY_TAG[tag]:
        field = body.get(name)
        if field is None:
            continue
        if name in ID_FIELDS:
            row[name] = _id_string(field)
        elif name == "outcome":
            row[name] = _outcome(field, where)
        elif name == "stats_json" and not isinstance(field, str):
            row[name] = json.dumps(field, sort_keys=True, separators=(",", ":"))
        else:
            row[name] = _typed(field, COLUMNS[name], f"{where}: {tag} field {name!r}")
    if tag == "Action" and "success" not in body:
        row["success"] = True  # ActionRecord::new defaults success to true
    return row


def _id_string(value: Any) -> str:
    """A scalar id as its string; a structured one (tuple struct, map) as compact sorted JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _outcome(value: Any, where: str) -> str:
    """`"Success"`, `{"Success": {...}}` or `{"Failure": {"reason": …}}` -> `success` / `failure` / `timeout`.

    Unrecognised variant names are kept lowercased so validation can quarantine the row with a reason.
    """
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value))
    if not isinstance(value, str):
        raise RecordImportError(
            f"{where}: LearnStats field 'outcome' is a JSON {_json_type(value)}; "
            f"expected a variant name like \"Success\" or an object like {{\"Failure\": {{...}}}}"
        )
    key = value.strip().lower()
    return OUTCOME_ALIASES.get(key, key)


def _typed(value: Any, dtype: pa.DataType, what: str) -> Any:
    """Check one JSON value against its landing column type; refuse what the column cannot hold."""
    if dtype == STRING and isinstance(value, str):
        return value
    if dtype == INT and isinstance(value, int) and not isinstance(value, bool):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise RecordImportError(f"{what} is {value}, outside the 64-bit integer range")
        return value
    if dtype == BOOL and isinstance(value, bool):
        return value
    if dtype == DOUBLE and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if dtype == STRING_LIST and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    expected = {STRING: "a string", INT: "an integer", BOOL: "true or false", DOUBLE: "a number",
                STRING_LIST: "a list of strings"}[dtype]  # fmt: skip
    raise RecordImportError(f"{what} is {json.dumps(value)[:80]}; expected {expected}")


def _json_type(value: Any) -> str:
    """JSON's name for a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
