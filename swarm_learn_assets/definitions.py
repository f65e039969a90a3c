"""Everything Dagster loads: assets with their checks, jobs, sensors and resources."""

import dagster as dg

from .defs.discovery import discover_sessions
from .defs.episodes import episodes
from .defs.jobs import process_sessions_job, scenario_model_job
from .defs.records import raw_records
from .defs.resources import SwarmData
from .defs.scenario_model import scenario_model
from .defs.snapshots import session_snapshot

defs = dg.Definitions(
    assets=[raw_records, episodes, session_snapshot, scenario_model],
    jobs=[process_sessions_job, scenario_model_job],
    sensors=[discover_sessions],
    resources={"swarm_data": SwarmData()},
)
