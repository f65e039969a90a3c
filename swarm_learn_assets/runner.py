"""Running the pipeline in-process through the same Definitions and the `DAGSTER_HOME` instance."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg

from .core.layout import DATA_ROOT_ENV, DataLayout
from .defs.jobs import SCENARIO_TAG
from .defs.partitions import SCENARIOS, SESSIONS

SESSION_ASSETS = ("raw_records", "episodes", "session_snapshot")
SCENARIO_ASSETS = ("scenario_model",)
TRAINING_ASSETS = ("sft_dataset", "lora_adapter", "applied_adapter")
DATA_ASSETS = (*SESSION_ASSETS, *SCENARIO_ASSETS)
ALL_ASSETS = (*DATA_ASSETS, *TRAINING_ASSETS)  # what `swarm-learn materialize` runs: landing → applied adapter
INSTANCE_TEMPLATE = Path(__file__).resolve().parents[1] / "dagster.yaml"
# The run tags with which Dagster's own backfills hand a partition range to one run.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


class PipelineError(RuntimeError):
    """A run that did not succeed, with the step and message that failed."""


class CheckBlocked(PipelineError):
    """Only blocking asset checks failed (e.g. an adapter that is not better): an outcome, not an error."""


def prepare_instance(dagster_home: Path | None = None) -> dg.DagsterInstance:
    """The persistent instance in `$DAGSTER_HOME` (default `./.dagster_home`), created from the template."""
    home = Path(dagster_home or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists() and INSTANCE_TEMPLATE.is_file():
        shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    return dg.DagsterInstance.get()


def register_landing(instance: dg.DagsterInstance, layout: DataLayout) -> tuple[list[str], list[str], list[str]]:
    """Add every landing session and scenario as a partition; returns (sessions, scenarios, refused files)."""
    files, refused = layout.scan_landing()
    sessions = [f.key for f in files]
    scenarios = sorted({f.scenario for f in files})
    for name, keys in ((SESSIONS, sessions), (SCENARIOS, scenarios)):
        known = set(instance.get_dynamic_partitions(name))
        missing = [k for k in keys if k not in known]
        if missing:
            instance.add_dynamic_partitions(name, missing)
    return sessions, scenarios, refused


def _run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    assets: Sequence[str],
    partitions: str,
    log_level: str,
) -> None:
    keys = instance.get_dynamic_partitions(partitions)
    if not keys or not assets:
        return
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(a) for a in assets],
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
        run_config={
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        raise_on_error=False,
    )
    _raise_on_failure(result, job_name)


def _raise_on_failure(result: dg.ExecuteInProcessResult, job_name: str) -> None:
    if not result.success:
        steps = [e for e in result.all_events if e.is_step_failure]
        failures = [
            f"{e.step_key}: {e.step_failure_data.error.message.strip() if e.step_failure_data.error else 'failed'}"
            for e in steps
        ]
        blocked = steps and all(
            e.step_failure_data.error and e.step_failure_data.error.cls_name == "DagsterAssetCheckFailedError"
            for e in steps
        )
        error = CheckBlocked if blocked else PipelineError
        raise error(f"run {result.run_id} of {job_name} failed: " + "; ".join(failures or ["see Dagster logs"]))


def materialize(
    data_root: Path,
    assets: Sequence[str] = DATA_ASSETS,
    log_level: str = "INFO",
    on_stage: Callable[[str], None] | None = None,
    scenarios: Sequence[str] | None = None,
    training_log_level: str | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """Register every landing session, then materialize the selected assets for all of them (the
    training assets for `scenarios` only, when given). Training runs log at `training_log_level`
    (default: `log_level`), so its progress can show while the rest stays quiet."""
    from .definitions import defs

    unknown = [a for a in assets if a not in ALL_ASSETS]
    if unknown:
        raise ValueError(f"unknown asset(s) {', '.join(unknown)}; expected some of {', '.join(ALL_ASSETS)}")
    os.environ[DATA_ROOT_ENV] = str(data_root)
    instance = prepare_instance()
    sessions, known, refused = register_landing(instance, DataLayout(data_root))
    missing = sorted(set(scenarios or []) - set(known))
    if missing:
        raise ValueError(f"no landing sessions for scenario(s) {', '.join(missing)}; known: {', '.join(known) or 'none'}")
    chosen = list(scenarios) if scenarios else known
    session_assets = [a for a in SESSION_ASSETS if a in assets]
    scenario_assets = [a for a in SCENARIO_ASSETS if a in assets]
    if on_stage and session_assets:
        on_stage(f"processing {len(sessions)} session(s): {', '.join(session_assets)}")
    _run(defs, instance, "process_sessions", session_assets, SESSIONS, log_level)
    if on_stage and scenario_assets:
        on_stage(f"building {len(known)} scenario model(s)")
    _run(defs, instance, "build_scenario_model", scenario_assets, SCENARIOS, log_level)
    training_assets = [a for a in TRAINING_ASSETS if a in assets]
    for scenario in (chosen if training_assets else []):
        if on_stage:
            on_stage(f"training for {scenario}: {', '.join(training_assets)}")
        try:
            _run_partition(defs, instance, "train_adapter", training_assets, scenario, training_log_level or log_level)
        except CheckBlocked as blocked:  # e.g. the adapter did not beat the applied one: kept, not applied
            if on_stage:
                on_stage(f"{scenario}: stopped by a blocking check ({blocked})")
    return sessions, known, refused


def _run_partition(
    defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, assets: Sequence[str], key: str, log_level: str
) -> None:
    """One run for one partition (the training assets train one scenario per run)."""
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(a) for a in assets],
        partition_key=key,
        tags={SCENARIO_TAG: key},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
    _raise_on_failure(result, job_name)
