"""Stage 1: landing parquet → validated `records/` and `quarantine/`."""

import dagster as dg

from ..core.stages import ingest_sessions
from .metadata import markdown_table, share
from .partitions import SESSION_BACKFILL, sessions_partitions
from .resources import SwarmData


class RecordsConfig(dg.Config):
    """A session whose rejected share is above this gets a WARN check result."""

    max_quarantine_share: float = 0.05


@dg.asset(
    partitions_def=sessions_partitions,
    backfill_policy=SESSION_BACKFILL,
    group_name="sessions",
    kinds={"parquet", "duckdb"},
    check_specs=[dg.AssetCheckSpec("quarantine_share_below_threshold", asset="raw_records")],
    description="Landing records validated against the contract; bad rows quarantined with a reason.",
)
def raw_records(context: dg.AssetExecutionContext, config: RecordsConfig, swarm_data: SwarmData) -> dg.MaterializeResult:
    layout = swarm_data.layout
    keys = context.partition_keys
    context.log.info(f"validating {len(keys)} landing file(s) under {layout.root}")
    results = ingest_sessions(layout, keys)
    records = sum(r.records for r in results)
    rejected = sum(r.rejected for r in results)
    unreadable = [r for r in results if r.error]
    for r in unreadable:
        context.log.warning(r.error)
    over = [r for r in results if r.quarantine_share > config.max_quarantine_share]
    rows = [(r.key, r.records, r.rejected, r.error or "") for r in sorted(results, key=lambda r: -r.quarantine_share)]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": records,
            "sessions": len(results),
            "rejected_rows": rejected,
            "unreadable_files": len(unreadable),
            "quarantine_share": share(rejected, records + rejected),
            "sessions_preview": markdown_table(["session", "records", "rejected", "error"], rows),
            "records_path": dg.MetadataValue.path(str(layout.root / "records")),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="quarantine_share_below_threshold",
                passed=not over,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "threshold": config.max_quarantine_share,
                    "sessions_over": len(over),
                    "worst": markdown_table(
                        ["session", "share", "error"],
                        [(r.key, round(r.quarantine_share, 4), r.error or "") for r in over],
                    ),
                },
            )
        ],
    )
