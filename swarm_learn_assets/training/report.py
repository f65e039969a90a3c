"""What training did for each scenario, for the CLI: the newest adapter, how it decided on held-out
sessions next to the base model, and whether it was applied and why. Read from the files on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.llm.dataset_rows import TASK_DECISION
from ..core.storage.layout import DataLayout
from .registry import AdapterRegistry


@dataclass(frozen=True)
class AdapterSummary:
    scenario: str
    version: str | None = None
    base: float | None = None  # task_decision exact match on held-out sessions
    adapter: float | None = None
    unseen_base: float | None = None  # the same on eval rows whose context training never saw
    unseen_adapter: float | None = None
    applied: str | None = None
    why: str = ""


def _share(part: dict | None, model: str) -> float | None:
    return None if not part or not part.get("rows") or not part.get(model) else part[model]["exact_match"]


def summarize_adapter(layout: DataLayout, scenario: str) -> AdapterSummary:
    registry = AdapterRegistry(layout.adapters_root, scenario)
    applied = registry.current.version if registry.current else None
    manifest_file = layout.dataset_dir(scenario) / "manifest.json"
    folders = registry.version_dirs()
    if not folders:
        if not manifest_file.is_file():
            return AdapterSummary(scenario, applied=applied, why="not trained yet")
        manifest = json.loads(manifest_file.read_text())
        why = "not trained yet" if manifest["trainable"] else (
            f"skipped: {manifest['train_on_rows']} training rows, fewer than min_train_rows {manifest['min_train_rows']}")
        return AdapterSummary(scenario, applied=applied, why=why)
    newest = folders[-1]
    if not (newest / "eval.json").is_file():
        return AdapterSummary(scenario, newest.name, applied=applied,
                              why=f"training {newest.name} did not finish (see its Dagster run)")
    scores = json.loads((newest / "eval.json").read_text())
    task = scores["by_source"].get(TASK_DECISION)
    gate = scores["gate"]
    if applied == newest.name:
        why = "applied: gate passed"
    elif gate["passed"]:
        why = "passed its gate, not applied yet (materialize applied_adapter)"
    else:
        why = "not applied, gate failed: " + "; ".join(gate["reasons"])
    return AdapterSummary(scenario, newest.name, _share(task, "base"), _share(task, "adapter"),
                          _share(scores["unseen_context"], "base"), _share(scores["unseen_context"], "adapter"),
                          applied, why)


def format_adapter_summaries(rows: list[AdapterSummary]) -> str:
    """A plain-text table: one line per scenario."""
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    headers = ("scenario", "adapter", "task EM base", "task EM adapter", "unseen base", "unseen adapter", "applied",
               "why")
    body = [(r.scenario, r.version or "-", num(r.base), num(r.adapter), num(r.unseen_base), num(r.unseen_adapter),
             r.applied or "none", r.why) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i in (0, len(cells) - 1) else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join(line(r).rstrip() for r in [headers, ["-" * w for w in widths], *body])


def adapter_report(root: Path, scenarios: list[str]) -> str:
    layout = DataLayout(root)
    return format_adapter_summaries([summarize_adapter(layout, s) for s in scenarios])
