"""Small helpers that turn results into Dagster metadata (markdown tables, counts)."""

from collections.abc import Sequence

import dagster as dg


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], limit: int = 10) -> dg.MetadataValue:
    """A markdown table of at most `limit` rows, saying how many were left out."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more")
    return dg.MetadataValue.md("\n".join(lines))


def share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
