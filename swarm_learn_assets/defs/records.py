"""Stage 1: landing parquet → validated `records/` and `quarantine/`."""

import dagster as dg

from ..core.stages.session_batch import SessionIngest
from ..core.storage.layout import DataLayout
from .metadata import markdown_table, share

RAW_RECORDS = dg.AssetKey("raw_records")
QUARANTINE_CHECK = dg.AssetCheckSpec("quarantine_share_below_threshold", asset=RAW_RECORDS)

raw_records_spec = dg.AssetSpec(
    RAW_RECORDS,
    group_name="sessions",
    kinds={"parquet", "duckdb"},
    description="Landing records validated against the contract; bad rows quarantined with a reason.",
)


def raw_records_result(layout: DataLayout, results: list[SessionIngest], max_quarantine_share: float) -> dg.MaterializeResult:
    """Row counts, rejected share and the worst sessions; WARN when a session's rejected share is too high."""
    records = sum(r.records for r in results)
    rejected = sum(r.rejected for r in results)
    unreadable = [r for r in results if r.error]
    over = [r for r in results if r.quarantine_share > max_quarantine_share]
    rows = [(r.key, r.records, r.rejected, r.error or "") for r in sorted(results, key=lambda r: -r.quarantine_share)]
    return dg.MaterializeResult(
        asset_key=RAW_RECORDS,
        metadata={
            "dagster/row_count": records,
            "sessions": len(results),
            "rejected_rows": rejected,
            "unreadable_files": len(unreadable),
            "quarantine_share": share(rejected, records + rejected),
            "sessions_preview": markdown_table(["session", "records", "rejected", "error"], rows),
            "records_path": dg.MetadataValue.path(str(layout.folder("records"))),
        },
        check_results=[
            dg.AssetCheckResult(
                asset_key=RAW_RECORDS,
                check_name=QUARANTINE_CHECK.name,
                passed=not over,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "threshold": max_quarantine_share,
                    "sessions_over": len(over),
                    "worst": markdown_table(
                        ["session", "share", "error"],
                        [(r.key, round(r.quarantine_share, 4), r.error or "") for r in over],
                    ),
                },
            )
        ],
    )
