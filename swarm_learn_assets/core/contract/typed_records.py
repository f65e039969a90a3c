"""Typed records for code that handles a few records at a time (tests, import, the per-row baseline).

The pipeline itself works on arrow tables; `records_from_table` bridges the two.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Union

import pyarrow as pa

from .schema import DONE, SYSTEM_EVENTS


@dataclass
class ActionRecord:
    """One worker action (or system event). `success` defaults to true, as in the reference."""

    tick: int
    worker_id: int
    action: str
    seq: int | None = None
    timestamp_ms: int | None = None
    target: str | None = None
    success: bool = True
    error: str | None = None
    duration_ms: int = 0
    selection_logic: str | None = None
    from_guidance: bool = False
    previous_action: str | None = None
    lora: str | None = None
    task_id: str | None = None
    group_id: str | None = None
    context: str | None = None

    kind = "action"

    def is_terminal(self) -> bool:
        """A task ends at the `done` system event."""
        return self.action == DONE

    def is_system_event(self) -> bool:
        return self.action in SYSTEM_EVENTS


@dataclass
class LlmCallRecord:
    """One LLM call; successful only with no error and a non-empty response."""

    call_type: str = ""
    model: str = ""
    prompt: str = ""
    response: str = ""
    endpoint: str = ""
    lora: str | None = None
    latency_ms: int = 0
    timestamp_ms: int | None = None
    worker_id: int | None = None
    error: str | None = None
    seq: int | None = None

    kind = "llm_call"

    def is_success(self) -> bool:
        return self.error is None and self.response != ""


@dataclass
class DependencyGraphRecord:
    """One LLM inference of the action dependency graph."""

    model: str = ""
    prompt: str = ""
    response: str = ""
    available_actions: list[str] = field(default_factory=list)
    discover_order: list[str] = field(default_factory=list)
    not_discover_order: list[str] = field(default_factory=list)
    endpoint: str = ""
    lora: str | None = None
    latency_ms: int = 0
    timestamp_ms: int | None = None
    error: str | None = None
    seq: int | None = None

    kind = "dependency_graph"


@dataclass
class StrategyAdviceRecord:
    """One piece of advice on switching the selection strategy."""

    advisor: str = ""
    current_strategy: str = ""
    recommended: str = ""
    should_change: bool = False
    confidence: float = 0.0
    reason: str = ""
    tick: int = 0
    frontier_count: int = 0
    total_visits: int = 0
    failure_rate: float = 0.0
    latency_ms: int = 0
    success: bool = True
    error: str | None = None
    timestamp_ms: int | None = None
    seq: int | None = None

    kind = "strategy_advice"


@dataclass
class LearnStatsRecord:
    """Engine statistics at the end of a session."""

    stats_json: str = "{}"
    outcome: str | None = None
    total_ticks: int = 0
    total_actions: int = 0
    timestamp_ms: int | None = None
    seq: int | None = None

    kind = "learn_stats"


Record = Union[ActionRecord, LlmCallRecord, DependencyGraphRecord, StrategyAdviceRecord, LearnStatsRecord]
RECORD_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (ActionRecord, LlmCallRecord, DependencyGraphRecord, StrategyAdviceRecord, LearnStatsRecord)
}


def worker_id_of(record: Record) -> int | None:
    """Actions always have a worker; LLM calls may; the other kinds never do."""
    return getattr(record, "worker_id", None) if isinstance(record, (ActionRecord, LlmCallRecord)) else None


class RecordStream:
    """A read-only view over records in input order."""

    def __init__(self, records: Iterable[Record]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def actions(self) -> Iterator[ActionRecord]:
        return (r for r in self.records if isinstance(r, ActionRecord))

    def llm_calls(self) -> Iterator[LlmCallRecord]:
        return (r for r in self.records if isinstance(r, LlmCallRecord))

    def dependency_graphs(self) -> Iterator[DependencyGraphRecord]:
        return (r for r in self.records if isinstance(r, DependencyGraphRecord))

    def by_worker(self, worker_id: int) -> list[Record]:
        return [r for r in self.records if worker_id_of(r) == worker_id]

    def group_by_worker(self) -> dict[int, list[Record]]:
        """Records by worker id, skipping records that carry none."""
        groups: dict[int, list[Record]] = defaultdict(list)
        for record in self.records:
            worker = worker_id_of(record)
            if worker is not None:
                groups[worker].append(record)
        return dict(groups)

    def sorted_by_time(self) -> list[Record]:
        """Stable sort by timestamp; records without one keep their place at the front."""
        return sorted(self.records, key=lambda r: r.timestamp_ms if r.timestamp_ms is not None else -1)


def records_from_table(table: pa.Table) -> list[Record]:
    """Turn validated record rows into typed records, in row order."""
    out: list[Record] = []
    names = {kind: {f.name for f in fields(cls)} for kind, cls in RECORD_TYPES.items()}
    for row in table.to_pylist():
        kind = row["kind"]
        cls = RECORD_TYPES[kind]
        kwargs: dict[str, Any] = {k: v for k, v in row.items() if k in names[kind] and v is not None}
        if kind == "action":
            kwargs.setdefault("tick", 0)
        out.append(cls(**kwargs))
    return out
