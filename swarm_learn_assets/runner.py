"""Running the pipeline in-process through the same Definitions and the `DAGSTER_HOME` instance."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from .core.storage.atomic import write_text
from .core.storage.layout import DATA_ROOT_ENV, DataLayout
from .core.storage.locks import file_lock, pid_alive
from .core.storage.names import PARTITION_SEPARATOR, validate_name
from .defs.failures import root_cause
from .defs.instance_storage import EVENT_BATCH_SIZE, EVENT_BATCH_SIZE_ENV, CachedPostgresEventLogStorage
from .defs.jobs import SCENARIO_TAG
from .defs.partitions import SCENARIOS, SESSION_BACKFILL, SESSIONS

SESSION_ASSETS = ("raw_records", "episodes", "session_snapshot")
SCENARIO_ASSETS = ("scenario_model",)
GLOBAL_ASSETS = ("global_model",)
TRAINING_ASSETS = ("sft_dataset", "lora_adapter", "applied_adapter")
DATA_ASSETS = (*SESSION_ASSETS, *SCENARIO_ASSETS, *GLOBAL_ASSETS)
ALL_ASSETS = (*DATA_ASSETS, *TRAINING_ASSETS)  # what `swarm-learn materialize` runs: landing → applied adapter
INSTANCE_TEMPLATE = Path(__file__).resolve().parents[1] / "dagster.yaml"
POSTGRES_TEMPLATE = INSTANCE_TEMPLATE.with_name("dagster-postgres.yaml")
POSTGRES_URL_ENV = "SWARM_LEARN_POSTGRES_URL"
# SQLAlchemy 2.1 maps a plain postgresql:// URL to psycopg 3, whose server-side parameters break
# dagster-postgres's `NOTIFY run_events, %s`: the URL must name psycopg2, dagster-postgres's driver.
POSTGRES_SCHEME = "postgresql+psycopg2://"
SQLITE_STORAGE_KEYS = ("run_storage", "event_log_storage", "schedule_storage")
# The run tags with which Dagster's own backfills hand a partition range to one run.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


RUN_PARTITIONS = SESSION_BACKFILL.max_partitions_per_run or 250  # sessions per CLI run, as per backfill run


class PipelineError(RuntimeError):
    """A run that did not succeed, with the step and message that failed."""


class CheckBlocked(PipelineError):
    """Only blocking asset checks failed (e.g. an adapter that is not better): an outcome, not an error."""


class InstanceError(RuntimeError):
    """The Dagster instance in `$DAGSTER_HOME` cannot be used, said in one line with the path."""


HOME_ROOT_FILE = "swarm-learn-data-root"  # which data root an instance's partitions and runs belong to


def prepare_instance(dagster_home: Path | None = None, data_root: Path | None = None) -> dg.DagsterInstance:
    """The persistent instance in `$DAGSTER_HOME` (default `./.dagster_home`), created from the template.

    First-time creation happens under a lock, so two commands starting together on a fresh home do
    not race to create its schema. With `data_root`, the home is tied to that data root: a home
    that already serves another data root is refused, since its partitions are that root's sessions.
    """
    home = Path(dagster_home or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    if home.exists() and not home.is_dir():
        raise InstanceError(f"DAGSTER_HOME {home} is a file; expected a folder for the Dagster instance")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    url = os.environ.get(POSTGRES_URL_ENV)
    if url and not url.startswith(POSTGRES_SCHEME):
        raise InstanceError(f"{POSTGRES_URL_ENV}: expected {POSTGRES_SCHEME}user:password@host:port/database, got "
                            f"{url.split('://')[0]}://… (dagster-postgres needs the psycopg2 driver)")
    with file_lock(home / ".swarm-learn-init.lock"):
        if data_root is not None:
            _claim_home(home, Path(data_root).resolve())
        if not (home / "dagster.yaml").exists() and INSTANCE_TEMPLATE.is_file():
            write_text(instance_yaml(postgres=bool(url)), home / "dagster.yaml")
        try:
            instance = dg.DagsterInstance.get()
            instance.get_dynamic_partitions(SESSIONS)  # creates the storage's schema now, under the lock
            if isinstance(instance.event_log_storage, CachedPostgresEventLogStorage):
                # Dagster's event batching, as the pooled SQLite storage turns it on: a partition
                # range's events in one write (300 sessions: 24.3 s → 14.3 s). Children inherit it.
                os.environ.setdefault(EVENT_BATCH_SIZE_ENV, str(EVENT_BATCH_SIZE))
        except Exception as exc:  # Dagster raises config, YAML and database errors of many types
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise InstanceError(f"{home / 'dagster.yaml'}: cannot open the Dagster instance "
                                f"({type(exc).__name__}: {first})") from exc
    return instance


def instance_yaml(postgres: bool = False) -> str:
    """The instance file a new `$DAGSTER_HOME` gets: dagster.yaml, or with `postgres` its SQLite
    storage blocks replaced by dagster-postgres.yaml's (the URL read from $SWARM_LEARN_POSTGRES_URL)."""
    text = INSTANCE_TEMPLATE.read_text()
    if not postgres:
        return text
    import yaml

    config = {k: v for k, v in yaml.safe_load(text).items() if k not in SQLITE_STORAGE_KEYS}
    config.update(yaml.safe_load(POSTGRES_TEMPLATE.read_text()))
    return (f"# Written by swarm-learn from {INSTANCE_TEMPLATE.name} with {POSTGRES_TEMPLATE.name}'s storage "
            f"(${POSTGRES_URL_ENV} was set).\n" + yaml.safe_dump(config, sort_keys=False))


def _claim_home(home: Path, root: Path) -> None:
    marker = home / HOME_ROOT_FILE
    if marker.is_file():
        owner = marker.read_text().strip()
        if owner and owner != str(root):
            raise InstanceError(
                f"DAGSTER_HOME {home} belongs to data root {owner}, not {root}; set DAGSTER_HOME to another "
                f"folder for this data root (or remove {home} to start its history over)"
            )
        return
    write_text(f"{root}\n", marker)


def _model_current(layout: DataLayout, scenario: str) -> bool:
    """A scenario model written after the last change to its snapshot folder (every snapshot is
    renamed into place, which moves the folder's time)."""
    model, snapshots = layout.scenario_model(scenario), layout.snapshot_dir(scenario)
    return model.is_file() and snapshots.is_dir() and model.stat().st_mtime_ns >= snapshots.stat().st_mtime_ns


def register_landing(instance: dg.DagsterInstance, layout: DataLayout) -> tuple[list[str], list[str], list[str]]:
    """Add every landing session and scenario as a partition; returns (sessions, scenarios, refused files).
    A partition that another process added meanwhile counts as added."""
    sessions, refused = layout.landing_keys()
    scenarios = sorted({key.partition(PARTITION_SEPARATOR)[0] for key in sessions})
    for name, keys in ((SESSIONS, sessions), (SCENARIOS, scenarios)):
        _add_partitions(instance, name, keys)
    return sessions, scenarios, refused


def _add_partitions(instance: dg.DagsterInstance, name: str, keys: Sequence[str]) -> None:
    for attempt in range(3):
        known = set(instance.get_dynamic_partitions(name))
        missing = [k for k in keys if k not in known]
        if not missing:
            return
        try:
            instance.add_dynamic_partitions(name, missing)
            return
        except Exception:  # a concurrent run added some of them first (a UNIQUE constraint)
            if attempt == 2:
                raise


def contiguous_chunks(ordered: Sequence[str], wanted: Sequence[str], size: int) -> list[list[str]]:
    """`wanted` keys as runs of at most `size` keys that are neighbours in `ordered` (the instance's
    partition order): a run covers a partition range, so a range must not span a key left out."""
    chosen = set(wanted)
    chunks: list[list[str]] = []
    current: list[str] = []
    for key in ordered:
        if key in chosen and len(current) < size:
            current.append(key)
            continue
        if current:
            chunks.append(current)
        current = [key] if key in chosen else []
    if current:
        chunks.append(current)
    return chunks


def _run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    assets: Sequence[str],
    partitions: str,
    keys: Sequence[str],
    log_level: str,
    on_stage: Callable[[str], None] | None = None,
    asset_config: dict[str, dict] | None = None,
) -> None:
    """Runs over this data root's `keys` of the `partitions` set, at most RUN_PARTITIONS per run (as
    the UI's backfills split them): each run is a range in the instance's order (a home serves one
    data root, so the range holds no other root's sessions), and no run's memory grows with the
    number of sessions landed."""
    if not keys or not assets:
        return
    job = defs.resolve_job_def(job_name)
    chunks = contiguous_chunks(instance.get_dynamic_partitions(partitions), keys, RUN_PARTITIONS)
    done = 0
    for part in chunks:
        if on_stage and len(chunks) > 1:
            on_stage(f"  {partitions} {done + 1}-{done + len(part)} of {len(keys)}")
        done += len(part)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(a) for a in assets],
            tags={ASSET_PARTITION_RANGE_START_TAG: part[0], ASSET_PARTITION_RANGE_END_TAG: part[-1], **_worker_tags()},
            run_config=_run_config(log_level, asset_config),
            raise_on_error=False,
        )
        _raise_on_failure(result, job_name)


WORKER_TAG = "swarm-learn/cli-worker"  # host:pid of the CLI process that runs a run in-process
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _worker_tags() -> dict[str, str]:
    return {WORKER_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs a killed CLI process left "started": marked failed, and their concurrency slots freed.
    Without this, a run killed in the `training` pool holds its one slot for ever and the next
    training waits on it. Only this host's runs whose process is gone are touched."""
    recovered = []
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)):
        host, _, pid = run.tags.get(WORKER_TAG, "").rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or pid_alive(int(pid)):
            continue
        instance.report_run_failed(run, f"the swarm-learn process that ran it (pid {pid}) died")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered


def _run_config(log_level: str, asset_config: dict[str, dict] | None) -> dict:
    """The CLI logger at `log_level`, and each asset's config (its op's config)."""
    return {**_logging(log_level), "ops": {a: {"config": c} for a, c in (asset_config or {}).items()}}


def _logging(log_level: str) -> dict:
    """CLI runs log through `cli_logger`: failures in one line, with stack traces at DEBUG (--verbose)."""
    return {"loggers": {"cli": {"config": {"log_level": log_level, "traceback": log_level.upper() == "DEBUG"}}}}


def _raise_on_failure(result: dg.ExecuteInProcessResult, job_name: str) -> None:
    if not result.success:
        steps = [e for e in result.all_events if e.is_step_failure]
        failures = [
            f"{e.step_key}: {root_cause(e.step_failure_data.error) if e.step_failure_data.error else 'failed'}"
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
    asset_config: dict[str, dict] | None = None,
    everything: bool = False,
) -> tuple[list[str], list[str], list[str]]:
    """Register every landing session, then materialize the selected assets: the session assets for
    the sessions whose outputs are missing or older than their landing file (all of them with
    `everything`), the scenario models whose snapshots changed since they were built, the training
    assets for `scenarios` only, when given. Training runs log at `training_log_level` (default:
    `log_level`), so its progress can show while the rest stays quiet; `asset_config` maps a
    scenario or training asset to its config (`{"lora_adapter": {"max_train_rows": 320}}`), as the
    launchpad would (a scenario model with a config is always rebuilt)."""
    from .definitions import defs

    for scenario in scenarios or []:
        validate_name("scenario", scenario)
    unknown = [a for a in assets if a not in ALL_ASSETS]
    if unknown:
        raise ValueError(f"unknown asset(s) {', '.join(unknown)}; expected some of {', '.join(ALL_ASSETS)}")
    os.environ[DATA_ROOT_ENV] = str(data_root)
    instance = prepare_instance(data_root=data_root)
    with data_root_lock(data_root, on_wait=on_stage):
        return _materialize(instance, defs(), data_root, assets, log_level, on_stage, scenarios, training_log_level,
                            asset_config or {}, everything)


@contextmanager
def data_root_lock(data_root: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """One `materialize` at a time per data root: a second one waits for the first, then finds its
    work done (the stages are idempotent), instead of both writing the same outputs at once."""
    lock = Path(data_root) / ".swarm-learn.lock"
    with file_lock(lock, blocking=False) as free:
        if free:
            yield
            return
    if on_wait:
        on_wait(f"another swarm-learn run holds {data_root}; waiting for it to finish")
    with file_lock(lock):
        yield


def _materialize(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    data_root: Path,
    assets: Sequence[str],
    log_level: str,
    on_stage: Callable[[str], None] | None,
    scenarios: Sequence[str] | None,
    training_log_level: str | None,
    asset_config: dict[str, dict],
    everything: bool = False,
) -> tuple[list[str], list[str], list[str]]:
    configurable = (*SCENARIO_ASSETS, *TRAINING_ASSETS)
    unknown = sorted(set(asset_config) - set(configurable))
    if unknown:
        raise ValueError(f"asset_config names {', '.join(unknown)}; expected some of {', '.join(configurable)}")
    for run_id in recover_dead_runs(instance):
        if on_stage:
            on_stage(f"run {run_id} was left running by a process that died: marked failed, its slots freed")
    layout = DataLayout(data_root)
    sessions, known, refused = register_landing(instance, layout)
    missing = sorted(set(scenarios or []) - set(known))
    if missing:
        raise ValueError(f"no landing sessions for scenario(s) {', '.join(missing)}; known: {', '.join(known) or 'none'}")
    chosen = list(scenarios) if scenarios else known
    session_assets = [a for a in SESSION_ASSETS if a in assets]
    scenario_assets = [a for a in SCENARIO_ASSETS if a in assets]
    stale = sessions if everything else layout.stale_sessions(sessions, session_assets)
    if on_stage and session_assets:
        on_stage(f"processing {len(stale)} session(s): {', '.join(session_assets)}"
                 + (f" ({len(sessions) - len(stale)} up to date)" if len(stale) < len(sessions) else ""))
    _run(defs, instance, "process_sessions", session_assets, SESSIONS, stale, log_level, on_stage)
    model_config = {a: c for a, c in asset_config.items() if a in scenario_assets}
    models = known if everything or model_config else [s for s in known if not _model_current(layout, s)]
    if on_stage and scenario_assets:
        on_stage(f"building {len(models)} scenario model(s)"
                 + (f" ({len(known) - len(models)} up to date)" if len(models) < len(known) else ""))
    _run(defs, instance, "build_scenario_model", scenario_assets, SCENARIOS, models, log_level,
         asset_config=model_config)
    if "global_model" in assets:
        result = defs.resolve_job_def("build_global_model").execute_in_process(
            instance=instance, tags=_worker_tags(), run_config=_logging(log_level), raise_on_error=False)
        _raise_on_failure(result, "build_global_model")
    training_assets = [a for a in TRAINING_ASSETS if a in assets]
    for scenario in (chosen if training_assets else []):
        if on_stage:
            on_stage(f"training for {scenario}: {', '.join(training_assets)}")
        try:
            _run_partition(defs, instance, "train_adapter", training_assets, scenario, training_log_level or log_level,
                           {a: c for a, c in asset_config.items() if a in training_assets})
        except CheckBlocked as blocked:  # e.g. the adapter did not beat the applied one: kept, not applied
            if on_stage:
                on_stage(f"{scenario}: stopped by a blocking check ({blocked})")
    return sessions, known, refused


def _run_partition(
    defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, assets: Sequence[str], key: str, log_level: str,
    asset_config: dict[str, dict] | None = None,
) -> None:
    """One run for one partition (the training assets train one scenario per run), with each asset's
    config from `asset_config` (the defaults otherwise)."""
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(a) for a in assets],
        partition_key=key,
        tags={SCENARIO_TAG: key, **_worker_tags()},
        run_config=_run_config(log_level, asset_config),
        raise_on_error=False,
    )
    _raise_on_failure(result, job_name)
