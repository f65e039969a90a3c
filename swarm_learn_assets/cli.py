"""`swarm-learn`: simulate or import swarm logs, run the pipeline, and see what it produced."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .core.storage.layout import DATA_ROOT_ENV, default_data_root
from .training.base_model import BASE_MODEL_ENV, DEFAULT_MODEL

if TYPE_CHECKING:
    from .training.registry import AdapterRegistry


def _data_root(args: argparse.Namespace) -> Path:
    return Path(args.data_root).resolve() if args.data_root else default_data_root()


def _progress(done: int, total: int) -> None:
    if done != total and done % max(1, total // 20):
        return
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done == total else ""
    print(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} sessions", end=end, file=sys.stderr, flush=True)


def cmd_simulate(args: argparse.Namespace) -> int:
    from .core.llm.policy import parse_policy

    root = _data_root(args)
    spec = parse_policy(args.policy)
    if spec.kind == "scripted":
        from .simulate import simulate

        print(f"simulating {args.scenarios} scenario(s) x {args.sessions} session(s) into {root / 'landing'}",
              file=sys.stderr)
        paths = simulate(
            root, scenarios=args.scenarios, sessions=args.sessions, seed=args.seed,
            records_per_session=args.records_per_session, progress=_progress,
        )
        print(f"wrote {len(paths)} landing file(s)")
        return 0
    if args.records_per_session is not None:
        raise ValueError("--records-per-session applies to the scripted policy only")
    from .core.storage.layout import DataLayout
    from .simulate.policy_run import simulate_with_policy
    from .training.llm_policy import make_policy

    layout = DataLayout(root)
    base = os.environ.get(BASE_MODEL_ENV, DEFAULT_MODEL)
    print(f"simulating {args.scenarios} scenario(s) x {args.sessions} session(s) under policy {spec}, "
          f"appended to {root / 'landing'}", file=sys.stderr)
    started = time.perf_counter()
    sessions = simulate_with_policy(
        root, lambda scenario: make_policy(spec, scenario, layout, base, args.model),
        scenarios=args.scenarios, sessions=args.sessions, seed=args.seed, progress=_progress,
    )
    seconds = time.perf_counter() - started
    tasks, succeeded = sum(s.tasks for s in sessions), sum(s.succeeded for s in sessions)
    decisions = sum(s.decisions for s in sessions)
    print(f"wrote {len(sessions)} landing file(s): task success {succeeded}/{tasks} "
          f"({succeeded / max(tasks, 1):.2f}), {decisions} decisions ({decisions / max(seconds, 1e-9):.1f}/s)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .core.contract.rust_import import import_jsonl

    path = import_jsonl(Path(args.file), _data_root(args), args.scenario, args.session, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


def _asset_config(args: argparse.Namespace) -> dict[str, dict]:
    """`--config-json`: each scenario or training asset's config, as the UI's launchpad would give it."""
    if not args.config_json:
        return {}
    try:
        value = json.loads(args.config_json)
    except ValueError as exc:
        raise ValueError(f"--config-json: not JSON ({exc})") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError('--config-json: expected an object of asset → config, e.g. {"lora_adapter": {"epochs": 3}}')
    return value


def cmd_materialize(args: argparse.Namespace) -> int:
    from .runner import ALL_ASSETS, materialize

    root = _data_root(args)
    assets = [a.strip() for a in args.assets.split(",") if a.strip()] if args.assets else list(ALL_ASSETS)
    started = time.perf_counter()
    level = "DEBUG" if args.verbose else "INFO" if args.progress else "WARNING"
    _, _, refused = materialize(
        root, assets, log_level=level, on_stage=lambda msg: print(f"• {msg}", file=sys.stderr, flush=True),
        training_log_level="DEBUG" if args.verbose else "INFO",  # minutes of work: show its progress
        asset_config=_asset_config(args), everything=args.all,
    )
    for message in refused:
        print(f"refused: {message}", file=sys.stderr)
    _print_status(root)
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


def _print_status(root: Path) -> None:
    """The data table, and the adapter table once any scenario has a dataset or an adapter."""
    from .core.stats.summary import format_global_model, format_summary, summarize
    from .core.storage.layout import DataLayout
    from .training.report import adapter_report

    rows, layout = summarize(root), DataLayout(root)
    print(format_summary(rows))
    if layout.global_model.is_file():
        try:
            model = json.loads(layout.global_model.read_text())
        except ValueError as exc:
            raise ValueError(f"{layout.global_model}: not valid JSON ({exc}); rebuild it with "
                             "`swarm-learn materialize --assets global_model`") from None
        print(format_global_model(model))
    trained = [r.scenario for r in rows
               if layout.dataset_dir(r.scenario).is_dir() or (layout.adapters_root / r.scenario).is_dir()]
    if trained:
        print()
        print(adapter_report(root, trained))


def cmd_query(args: argparse.Namespace) -> int:
    from .core.stats.query import TimeWindow, format_sessions, query_sessions
    from .core.storage.layout import DataLayout
    from .core.storage.names import validate_name

    root = _data_root(args)
    validate_name("scenario", args.scenario)
    rows = query_sessions(DataLayout(root), args.scenario, TimeWindow.parse(args.since, args.until), args.latest)
    if args.format == "json":
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        print(format_sessions(rows))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    root = _data_root(args)
    if not root.is_dir():
        raise ValueError(f"data root {root} does not exist; expected a folder with landing/ "
                         f"(make one with: swarm-learn simulate --data-root {root})")
    _print_status(root)
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    from .core.storage.layout import DataLayout
    from .training.applicators import make_applicator
    from .training.registry import AdapterRegistry

    registry = AdapterRegistry(DataLayout(_data_root(args)).adapters_root, args.scenario)
    if args.action == "list":
        versions = registry.versions()
        if not versions:
            print(f"no adapters for scenario {args.scenario} under {registry.root}")
            return 0
        current = registry.current
        print(f"{'':2}{'version':<9}{'format':<7}{'from':<7}{'adapter EM':>11}{'base EM':>9}{'applied EM':>11}"
              f"{'valid':>7}{'eval rows':>10}{'gate':>7}  path")
        for v in versions:
            scores = v.eval or {}
            models = scores["models"]
            lineage = v.read("lineage.json") or {}
            applied = f"{models['applied']['exact_match']:.3f}" if models["applied"] else "-"
            mark = "* " if current is not None and current.version == v.version else "  "
            print(f"{mark}{v.version:<9}{lineage.get('format', 'sft'):<7}{lineage.get('parent') or 'base':<7}"
                  f"{models['adapter']['exact_match']:>11.3f}{models['base']['exact_match']:>9.3f}"
                  f"{applied:>11}{models['adapter']['valid']:>7.3f}{scores['rows']:>10}"
                  f"{'passed' if v.passed_gate else 'failed':>7}  {v.path}")
        print(f"applied: {current.version if current else 'none'}; history: {', '.join(registry.history()) or 'empty'}")
        return 0
    base = os.environ.get(BASE_MODEL_ENV, DEFAULT_MODEL)
    if args.action in ("export-gguf", "serve", "stop"):
        return _llama_cpp_action(args, registry, base)
    applicator = make_applicator(args.applicator, args.url or "", base_model=base)
    if args.action == "apply":
        if not args.version:
            raise ValueError("adapters apply needs --version (see: swarm-learn adapters list)")
        previous = registry.apply(args.version, applicator)
        print(f"{args.scenario}: applied {args.version} via {applicator.name} (previous: {previous or 'none'})")
    else:
        print(f"{args.scenario}: rolled back to {registry.rollback(applicator)} via {applicator.name}")
    return 0


def _llama_cpp_action(args: argparse.Namespace, registry: "AdapterRegistry", base: str) -> int:
    """`export-gguf` (a version, default the applied one), `serve` (the applied version, blue-green)
    and `stop` (the scenario's llama-server)."""
    from .serving.llama_cpp import export_adapter_gguf
    from .training.applicators import BlueGreenLlamaCpp, stop_serving
    from .training.base_model import resolve_base_model

    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.action == "stop":
        old = stop_serving(registry.root)
        print(f"{args.scenario}: stopped {old['version']} at {old['url']}" if old
              else f"{args.scenario}: no llama-server is serving it")
        return 0
    version = registry.get(args.version) if args.version else registry.current
    if version is None:
        raise ValueError(f"scenario {args.scenario} has no applied adapter; pass --version (see: adapters list)")
    if args.action == "export-gguf":
        path = export_adapter_gguf(version.path, resolve_base_model(base).path, log=log)
        print(f"{args.scenario} {version.version}: wrote {path}")
        return 0
    notes = BlueGreenLlamaCpp(base).apply(args.scenario, version.version, version.path, None)
    serving = json.loads((registry.root / "serving.json").read_text())
    for note in notes:
        log(note)
    print(f"{args.scenario}: serving {version.version} at {serving['url']} (pid {serving['pid']}); "
          f"stop it with: swarm-learn adapters stop --scenario {args.scenario}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """`dagster dev` (webserver + daemon: sensors, schedules, run queue) on the project's instance."""
    import os
    import shutil

    from .runner import INSTANCE_TEMPLATE, prepare_instance
    from .supervise import run_until_signalled

    instance = prepare_instance(data_root=_data_root(args))
    home = os.environ["DAGSTER_HOME"]
    instance.dispose()
    os.environ[DATA_ROOT_ENV] = str(_data_root(args))
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    workspace = INSTANCE_TEMPLATE.with_name("workspace.yaml")
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {home}, data {os.environ[DATA_ROOT_ENV]}); "
          "Ctrl-C stops it", file=sys.stderr)
    command = [dagster, "dev", "-w", str(workspace), "--host", args.host, "--port", str(args.port)]
    return run_until_signalled(command, cwd=workspace.parent)


def cmd_trigger(args: argparse.Namespace) -> int:
    from .core.triggers.state import explain, quality_window
    from .definitions import Settings
    from .defs import triggers
    from .runner import prepare_instance

    instance = prepare_instance()
    settings = Settings.from_environment().triggers
    state = triggers.state_since_training(instance, args.scenario, settings)
    trigger = settings.trigger_for(args.scenario)
    ctx = state.context(int(time.time() * 1000), quality_window(trigger))
    print(f"scenario {args.scenario}: trigger {settings.spec_for(args.scenario)!r} "
          f"(mode {settings.mode}, job {triggers.MODE_JOBS[settings.mode].name})")
    print(f"  {explain(trigger, ctx)}")
    if trigger.should_train(ctx) and triggers.training_in_flight(instance, args.scenario):
        print("  a training run for it is already queued or running: the trigger waits for it")
    else:
        print(f"  would {'train now' if trigger.should_train(ctx) else 'not train now'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import json

    from .core.storage.layout import DataLayout
    from .runner import TRAINING_ASSETS, materialize
    from .training.dataset_store import untrainable_reason
    from .training.registry import AdapterRegistry

    root = _data_root(args)
    started = time.perf_counter()
    materialize(root, TRAINING_ASSETS, log_level="DEBUG" if args.verbose else "INFO",
                on_stage=lambda msg: print(f"• {msg}", file=sys.stderr, flush=True), scenarios=[args.scenario],
                asset_config=_asset_config(args))
    layout = DataLayout(root)
    manifest = json.loads((layout.dataset_dir(args.scenario) / "manifest.json").read_text())
    skipped = untrainable_reason(manifest, _asset_config(args).get("lora_adapter", {}).get("format", "sft"))
    if skipped:
        print(f"{args.scenario}: {skipped}")
    else:
        registry = AdapterRegistry(layout.adapters_root, args.scenario)
        newest, current = registry.versions()[-1], registry.current
        models = newest.eval["models"]
        init = (newest.read("lineage.json") or {}).get("init") or {}
        print(f"{args.scenario}: trained {newest.version}"
              + (f" ({init['reason']})" if init else "")
              + f": exact match {models['adapter']['exact_match']:.3f} "
              f"(base {models['base']['exact_match']:.3f}); gate {'passed' if newest.passed_gate else 'failed'}; "
              f"applied: {current.version if current else 'none'}")
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-learn",
        description=(
            "Turn agent-swarm session logs into episodes, statistics, scenario models and LoRA adapters\n"
            "for the swarm's decision LLM, with Dagster.\n\n"
            "Quick start:\n"
            "  swarm-learn simulate --data-root data --scenarios 3 --sessions 20 --seed 7\n"
            "  swarm-learn materialize --data-root data   # landing → episodes → … → applied adapter\n"
            "  swarm-learn materialize --data-root data --assets raw_records,episodes,session_snapshot,scenario_model\n"
            "  swarm-learn adapters list --data-root data --scenario <scenario>\n"
            "  swarm-learn simulate --data-root data --sessions 10 --policy current   # next sessions, decided by the adapter\n"
            "  swarm-learn adapters serve --data-root data --scenario <scenario>      # llama-server, blue-green\n"
            "  swarm-learn ui --data-root data   # Dagster UI + daemon on http://127.0.0.1:3000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and Dagster debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_data_commands(sub)
    _add_service_commands(sub)
    _add_training_commands(sub)
    return parser


def _with_root(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--data-root", help=f"data root (default: ${DATA_ROOT_ENV} or ./data)")
    return p


def _with_asset_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config-json", metavar="JSON",
                   help='scenario_model\'s and the training assets\' config, as in the UI\'s launchpad, e.g. \'{"sft_dataset": '
                        '{"train_on": ["task_decision", "task_step", "llm_decision"]}, "lora_adapter": '
                        '{"max_train_rows": 320}}\'')


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """simulate, import, materialize, query, status: sessions in, pipeline run, what is on disk."""
    p = _with_root(sub.add_parser("simulate", help="write realistic synthetic sessions into landing/"))
    p.add_argument("--scenarios", type=int, default=3)
    p.add_argument("--sessions", type=int, default=20, help="sessions per scenario")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--records-per-session", type=int, default=None, help="scale sessions to about this many rows")
    p.add_argument("--policy", default="scripted",
                   help="who decides each action: scripted (default), base, current, adapter:VERSION, offline or "
                        "endpoint:URL; any but scripted appends new sessions after the landed ones")
    p.add_argument("--model", help="for endpoint:URL, the served model name (default: the first /v1/models lists)")
    p.set_defaults(func=cmd_simulate)

    p = _with_root(sub.add_parser("import", help="convert Rust FileRecordStore JSON Lines into a landing file"))
    p.add_argument("file", help="JSON Lines file, one externally tagged Record per line")
    p.add_argument("--scenario", required=True)
    p.add_argument("--session", required=True, help="session id")
    p.add_argument("--overwrite", action="store_true", help="replace an existing landing file")
    p.set_defaults(func=cmd_import)

    p = _with_root(sub.add_parser("materialize", help="register landing sessions and materialize assets in-process"))
    p.add_argument("--assets", help="comma-separated, default all: raw_records,episodes,session_snapshot,"
                                    "scenario_model (the data half) and sft_dataset,lora_adapter,applied_adapter "
                                    "(training, one scenario at a time)")
    p.add_argument("--progress", action="store_true", help="show the pipeline's progress log")
    p.add_argument("--all", action="store_true",
                   help="process every session and scenario again (default: only those whose landing files or "
                        "snapshots changed since their outputs were written)")
    _with_asset_config(p)
    p.set_defaults(func=cmd_materialize)

    p = _with_root(sub.add_parser("query", help="a scenario's sessions over time: time range, episodes, success "
                                               "rate, snapshot (the reference store's query_range / query_latest)"))
    p.add_argument("--scenario", required=True)
    p.add_argument("--since", metavar="T", help="sessions that started at or after T (ISO 8601 or epoch ms)")
    p.add_argument("--until", metavar="T", help="sessions that started at or before T (ISO 8601 or epoch ms)")
    p.add_argument("--latest", type=int, metavar="N", help="only the N newest (of those in the window)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_query)

    p = _with_root(sub.add_parser("status", help="summarise what is on disk per scenario"))
    p.set_defaults(func=cmd_status)


def _add_service_commands(sub: argparse._SubParsersAction) -> None:
    """ui and trigger: the Dagster UI with its daemon, and what a training trigger would do."""
    p = _with_root(sub.add_parser("ui", help="the Dagster UI and daemon (sensors, schedules) on ./.dagster_home"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("trigger", help="what a scenario's training trigger would do now, and why")
    p.add_argument("action", choices=["check"])
    p.add_argument("--scenario", required=True)
    p.set_defaults(func=cmd_trigger)


def _add_training_commands(sub: argparse._SubParsersAction) -> None:
    """train and adapters: a training by hand, and the adapter versions (apply, roll back, export, serve)."""
    p = _with_root(sub.add_parser("train", help="train (and maybe apply) a scenario's adapter now, by hand"))
    p.add_argument("--scenario", required=True)
    _with_asset_config(p)
    p.set_defaults(func=cmd_train)

    p = _with_root(sub.add_parser("adapters", help="list, apply or roll back a scenario's LoRA adapters"))
    p.add_argument("action", choices=["list", "apply", "rollback", "export-gguf", "serve", "stop"],
                   help="list; apply/rollback (the `current` pointer, through --applicator); export-gguf (a version "
                        "as adapter.gguf for llama.cpp); serve/stop (a llama-server with the applied adapter)")
    p.add_argument("--scenario", required=True)
    p.add_argument("--version", help="for apply and export-gguf: the version, e.g. v0003")
    p.add_argument("--applicator", default="noop", choices=["noop", "vllm", "llamacpp"],
                   help="where to serve it (default: noop, only the `current` pointer moves)")
    p.add_argument("--url", help="the vLLM server, e.g. http://localhost:8000")
    p.set_defaults(func=cmd_adapters)


def main(argv: list[str] | None = None) -> int:
    # Backfill policies are a beta Dagster API; users of the CLI cannot act on that warning.
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for users; the traceback on request
        if args.verbose:
            raise
        print(f"swarm-learn {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
