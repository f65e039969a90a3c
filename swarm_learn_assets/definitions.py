"""Everything Dagster loads: assets with their checks, jobs, sensors and resources."""

import dagster as dg

from .defs.discovery import discover_sessions
from .defs.jobs import process_sessions_job, scenario_model_job
from .defs.resources import SwarmData
from .defs.scenario_model import scenario_model
from .defs.sessions import session_assets

defs = dg.Definitions(
    assets=[session_assets, scenario_model],
    jobs=[process_sessions_job, scenario_model_job],
    sensors=[discover_sessions],
    resources={"swarm_data": SwarmData()},
)
