"""Validation of landing records (DESIGN §4): good rows become `records/`, bad rows go to quarantine.

Two stages keep the common case fast:

1. `read_landing` / `normalise` work per file: read the parquet, reject it whole when it cannot be
   read or has no `kind`, and bring every contract column to its contract type. A value that does
   not fit its column's type is turned into null and noted in `_type_error` for that row.
2. `validate` works on many normalised sessions at once, in one DuckDB query: required fields,
   allowed kinds, non-negative counters and duplicate `seq` per session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..storage.names import SESSION_KEY
from .schema import (
    COLUMNS,
    KINDS,
    LEARN_STATS_OUTCOMES,
    NON_NEGATIVE,
    REJECT_REASON,
    REQUIRED_BY_KIND,
    SCHEMA,
    SOURCE_ROW,
)

TYPE_ERROR = "_type_error"
_POSITION = "_position"  # a row's place in the validation batch
RESERVED = (SOURCE_ROW, REJECT_REASON, TYPE_ERROR, SESSION_KEY, _POSITION)
_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    pa.float64(): "DOUBLE",
    pa.list_(pa.string()): "VARCHAR[]",
}


MAX_TEXT_BYTES = 256 * 1024  # one text field of a record; a long LLM prompt is ~30 KB
FUTURE_SLACK_MS = 24 * 3600 * 1000


class LandingFileError(ValueError):
    """A landing file that cannot be used at all (not parquet, truncated, no `kind` column)."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass
class NormalisedSession:
    """One landing file with contract-typed columns, ready to be validated in a batch."""

    session_key: str
    source: str
    table: pa.Table
    extra_columns: list[str] = field(default_factory=list)


@dataclass
class ValidationResult:
    """Valid records and rejected rows of a batch, both carrying the `_session` column."""

    records: pa.Table
    rejected: pa.Table


def read_landing(path: Path) -> pa.Table:
    """Read a landing parquet file, turning every way it can be unreadable into one clear error."""
    try:
        table = pq.ParquetFile(path).read(use_threads=False)  # callers read many files in parallel
    except Exception as exc:  # pyarrow raises several types for corrupt, truncated or foreign files
        raise LandingFileError(path, f"cannot be read as parquet ({type(exc).__name__}: {exc})") from exc
    if "kind" not in table.column_names:
        raise LandingFileError(
            path, f"has no 'kind' column; expected the landing columns of DESIGN §4, found {table.column_names}"
        )
    if table.num_rows == 0:
        raise LandingFileError(path, "has no rows; expected at least one record")
    return table


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _coerce_columns(table: pa.Table, mismatched: list[str]) -> tuple[dict[str, pa.Array], pa.Array]:
    """Cast columns whose type differs from the contract, value by value, recording what failed."""
    selects, errors = [], []
    for name in mismatched:
        target = COLUMNS[name]
        col = _quote(name)
        if pa.types.is_list(target) and not pa.types.is_list(table.schema.field(name).type):
            typed = "CAST(NULL AS VARCHAR[])"
        elif target == pa.int64():
            # DuckDB rounds 1.5 to 2 when casting; a fractional count is a wrong value, not a rounding.
            as_double = f"TRY_CAST({col} AS DOUBLE)"
            typed = f"CASE WHEN {as_double} <> trunc({as_double}) THEN NULL ELSE TRY_CAST({col} AS BIGINT) END"
        else:
            typed = f"TRY_CAST({col} AS {_SQL_TYPES[target]})"
        selects.append(f"{typed} AS {col}")
        shown = f"CAST({col} AS VARCHAR)"
        errors.append(
            f"CASE WHEN {col} IS NOT NULL AND {typed} IS NULL THEN "
            f"{_literal(name + ': expected ' + str(target) + ', got ')} || '''' || {shown} || '''' END"
        )
    sql = f"SELECT {', '.join(selects)}, coalesce({', '.join(errors)}) AS {TYPE_ERROR} FROM landing"
    con = duckdb.connect()
    con.register("landing", table.select(mismatched))
    result = con.sql(sql).to_arrow_table()
    con.close()
    return {name: result.column(name).combine_chunks() for name in mismatched}, result.column(TYPE_ERROR)


def normalise(table: pa.Table, session_key: str, source: str) -> NormalisedSession:
    """Bring one landing table to the contract types; never drops a row."""
    n = table.num_rows
    clashing = [c for c in RESERVED if c in table.schema.names]
    if clashing:
        table = table.rename_columns([f"landing_{c}" if c in clashing else c for c in table.schema.names])
    types = {f.name: f.type for f in table.schema}  # looked up per contract column: build it once
    columns = dict(zip(table.schema.names, table.columns))
    mismatched = []
    for name, dtype in COLUMNS.items():
        if name in types and types[name] != dtype:
            try:
                columns[name] = pc.cast(columns[name], dtype, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                mismatched.append(name)
    if mismatched:
        coerced, type_error = _coerce_columns(table, mismatched)
        columns.update(coerced)
    else:
        type_error = pa.nulls(n, pa.string())
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {
        name: columns[name] if name in columns else pa.nulls(n, dtype) for name, dtype in COLUMNS.items()
    }
    extras = [c for c in columns if c not in COLUMNS]
    for name in extras:
        arrays[name] = columns[name]
    arrays[SOURCE_ROW] = pa.array(np.arange(n, dtype=np.int64))
    arrays[TYPE_ERROR] = type_error
    arrays[SESSION_KEY] = pa.repeat(pa.scalar(session_key, pa.string()), n)
    return NormalisedSession(session_key, source, pa.table(arrays), extras)


def _reason_sql() -> str:
    """The first contract rule a row breaks, as text naming the field and what was expected."""
    kinds = ", ".join(_literal(k) for k in KINDS)
    rules = [
        ("kind IS NULL", _literal("kind: required, got null")),
        (
            f"kind NOT IN ({kinds})",
            _literal(f"kind: expected one of {', '.join(KINDS)}, got ") + " || '''' || kind || ''''",
        ),
        (f"{TYPE_ERROR} IS NOT NULL", TYPE_ERROR),
    ]
    for kind, required in REQUIRED_BY_KIND.items():
        for name in required:
            rules.append(
                (f"kind = {_literal(kind)} AND {_quote(name)} IS NULL", _literal(f"{name}: required for kind '{kind}'"))
            )
    for name in NON_NEGATIVE:
        rules.append(
            (f"{_quote(name)} < 0", _literal(f"{name}: expected >= 0, got ") + f" || CAST({_quote(name)} AS VARCHAR)")
        )
    for name, dtype in COLUMNS.items():
        if dtype == pa.float64():
            rules.append((f"isnan({_quote(name)}) OR isinf({_quote(name)})",
                          _literal(f"{name}: expected a finite number, got ") + f" || CAST({_quote(name)} AS VARCHAR)"))
        elif dtype == pa.string():
            rules.append((f"strlen({_quote(name)}) > {MAX_TEXT_BYTES}",
                          _literal(f"{name}: expected at most {MAX_TEXT_BYTES} bytes, got ")
                          + f" || CAST(strlen({_quote(name)}) AS VARCHAR)"))
    # Clocks drift, but not by a day: a later timestamp is a unit error (µs or ns for ms) or garbage,
    # and would sort the session after everything that lands for years.
    rules.append((f"timestamp_ms > epoch_ms(now()) + {FUTURE_SLACK_MS}",
                  _literal("timestamp_ms: expected at most a day after now, got ") + " || CAST(timestamp_ms AS VARCHAR)"))
    outcomes = ", ".join(_literal(o) for o in LEARN_STATS_OUTCOMES)
    rules.append(
        (
            f"kind = 'learn_stats' AND outcome IS NOT NULL AND outcome NOT IN ({outcomes})",
            _literal(f"outcome: expected one of {', '.join(LEARN_STATS_OUTCOMES)}, got ") + " || '''' || outcome || ''''",
        )
    )
    return "CASE " + " ".join(f"WHEN {cond} THEN {text}" for cond, text in rules) + " END"


def validate(sessions: list[NormalisedSession]) -> ValidationResult:
    """Split the rows of many sessions into valid records (sorted by seq) and rejected rows with a reason.

    The query only sees the narrow columns the rules need and returns, per row, its position, its
    reason and its filled `seq`; the wide columns (prompts, responses) are then reordered once in
    Arrow, and not at all when the landing files were already in `seq` order, as the swarm writes them.
    """
    if not sessions:
        empty = pa.table({**{n: pa.array([], t) for n, t in COLUMNS.items()}, SESSION_KEY: pa.array([], pa.string())})
        return ValidationResult(empty, empty)
    batch = pa.concat_tables([s.table for s in sessions], promote_options="permissive")
    other = [c for c in batch.column_names if c not in COLUMNS and c not in (SOURCE_ROW, TYPE_ERROR, SESSION_KEY)]
    sql = f"""
    WITH typed AS (
        SELECT {_POSITION}, {SESSION_KEY}, {SOURCE_ROW}, coalesce(seq, {SOURCE_ROW}) AS seq_filled,
               {_reason_sql()} AS first_reason
        FROM batch
    ), ranked AS (
        SELECT *, CASE WHEN first_reason IS NULL THEN
            row_number() OVER (PARTITION BY {SESSION_KEY}, first_reason IS NULL, seq_filled ORDER BY {SOURCE_ROW})
        END AS seq_rank FROM typed
    )
    SELECT {_POSITION}, seq_filled, coalesce(first_reason, CASE WHEN seq_rank > 1 THEN
            'seq: duplicate value ' || CAST(seq_filled AS VARCHAR) || ', expected unique within the session'
        END) AS {REJECT_REASON}
    FROM ranked ORDER BY {SESSION_KEY}, seq_filled, {SOURCE_ROW}
    """
    con = duckdb.connect()
    con.register("batch", batch.append_column(_POSITION, pa.array(np.arange(batch.num_rows, dtype=np.int64))))
    verdict = con.sql(sql).to_arrow_table()
    con.close()
    order = verdict.column(_POSITION).to_numpy()
    if not np.array_equal(order, np.arange(batch.num_rows)):
        batch = batch.take(order)
    is_action = pc.fill_null(pc.equal(batch.column("kind"), "action"), False)
    success = pc.if_else(
        pc.and_(is_action, pc.is_null(batch.column("success"))), True, batch.column("success")
    )
    columns = {name: batch.column(name) for name in [*COLUMNS, *other, SOURCE_ROW, SESSION_KEY]}
    columns["seq"] = verdict.column("seq_filled")
    columns["success"] = success
    columns[REJECT_REASON] = verdict.column(REJECT_REASON)
    schema = pa.schema([*SCHEMA, *(batch.schema.field(c) for c in [*other, SOURCE_ROW, SESSION_KEY]),
                        pa.field(REJECT_REASON, pa.string())])
    judged = pa.table(columns).cast(schema)
    bad = pc.is_valid(judged.column(REJECT_REASON))
    if not pc.any(bad).as_py():
        return ValidationResult(records=judged.drop_columns([REJECT_REASON]), rejected=judged.slice(0, 0))
    return ValidationResult(
        records=judged.filter(pc.invert(bad)).drop_columns([REJECT_REASON]),
        rejected=judged.filter(bad),
    )
