"""Worker-task episodes counted by outcome: one definition for every stage, check and status line.

An episode is *judged* when it ended in success, failure or timeout; an unknown outcome counts as
neither (DESIGN §5), so success rates are successes over judged episodes everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..storage.layout import DataLayout
from ..storage.readers import existing_files, read_session_files
from .learn_models import WORKER_TASK
from .outcome import FAILURE, SUCCESS, TIMEOUT

JUDGED_OUTCOMES = (SUCCESS, FAILURE, TIMEOUT)
# The same rules as SQL conditions over an episode table, for DuckDB scans.
TASK_SQL = f"learn_model = '{WORKER_TASK}'"
JUDGED_TASK_SQL = f"{TASK_SQL} AND outcome IN ({', '.join(repr(o) for o in JUDGED_OUTCOMES)})"
SUCCESS_TASK_SQL = f"{TASK_SQL} AND outcome = '{SUCCESS}'"


def judged(outcomes: Mapping[str, int]) -> tuple[int, int]:
    """(judged episodes, successes) from episodes per outcome."""
    return sum(outcomes.get(o, 0) for o in JUDGED_OUTCOMES), outcomes.get(SUCCESS, 0)


def task_outcomes(table: pa.Table) -> dict[str, int]:
    """Worker-task episodes per outcome in an episode table."""
    tasks = table.filter(pc.equal(table.column("learn_model"), WORKER_TASK))
    return {row["values"]: row["counts"] for row in pc.value_counts(tasks.column("outcome")).to_pylist()}


def task_counts_by_session(table: pa.Table) -> dict[str, tuple[int, int]]:
    """Judged worker-task episodes and successes per session key (`scenario.session_id`): what the
    training triggers count, once per distinct session content."""
    tasks = table.filter(pc.and_(pc.equal(table.column("learn_model"), WORKER_TASK),
                                 pc.is_in(table.column("outcome"), pa.array(list(JUDGED_OUTCOMES)))))
    tasks = tasks.append_column("won", pc.cast(pc.equal(tasks.column("outcome"), SUCCESS), pa.int64()))
    grouped = tasks.group_by(["scenario", "session_id"]).aggregate([("won", "count"), ("won", "sum")])
    return {f"{sc}.{sid}": (n, int(won)) for sc, sid, n, won in zip(
        grouped.column("scenario").to_pylist(), grouped.column("session_id").to_pylist(),
        grouped.column("won_count").to_pylist(), grouped.column("won_sum").to_pylist())}  # fmt: skip


def count_task_outcomes(layout: DataLayout, keys: Sequence[str]) -> dict[str, int]:
    """Worker-task episodes per outcome in the episode files of the given sessions."""
    paths = existing_files(layout.episodes, keys)
    return task_outcomes(read_session_files(paths, ["learn_model", "outcome"])) if paths else {}
