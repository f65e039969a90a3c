"""Why a run failed, in one line: the innermost cause of its failed steps (Dagster wraps each user
error in execution errors that say nothing about the file or value at fault)."""

from __future__ import annotations

import dagster as dg


def root_cause(error) -> str:
    """`Type: first line` of the innermost cause of a Dagster `SerializableErrorInfo`."""
    while error.cause is not None:
        error = error.cause
    first = next((line.strip() for line in error.message.splitlines() if line.strip()), "failed")
    return first if first.startswith(f"{error.cls_name}:") else f"{error.cls_name}: {first}"


def run_failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """The failed steps of a run and their root causes; the run's status when no step failed."""
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    reasons = [f"{e.step_key}: {root_cause(e.dagster_event.step_failure_data.error)}" for e in events
               if e.dagster_event and e.dagster_event.step_failure_data.error]  # fmt: skip
    if reasons:
        return "; ".join(reasons)
    run = instance.get_run_by_id(run_id)
    return f"run {run.status.value.lower()}" if run else "run not found"
