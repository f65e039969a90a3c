"""Partitions: one per landed session (`<scenario>.<session_id>`) and one per scenario."""

import dagster as dg

SESSIONS = "sessions"
SCENARIOS = "scenarios"

sessions_partitions = dg.DynamicPartitionsDefinition(name=SESSIONS)
scenarios_partitions = dg.DynamicPartitionsDefinition(name=SCENARIOS)

# A backfill of many sessions runs in batches, each handled by one vectorised pass, instead of one
# process per session.
SESSION_BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=250)
