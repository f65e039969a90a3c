"""`swarm-learn` as a user runs it: a real subprocess for the main path, `main()` for error handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from swarm_learn_assets.cli import main


def _run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "swarm_learn_assets.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_help_shows_the_quick_start():
    result = subprocess.run([sys.executable, "-m", "swarm_learn_assets.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for word in ("simulate", "materialize", "status", "import", "Quick start"):
        assert word in result.stdout


def test_simulate_materialize_status_end_to_end(tmp_path: Path, tiny_model_dir: Path):
    """`materialize` with no --assets runs the whole chain: the data half, then per scenario the
    dataset and (here: too few rows) a skipped adapter, with both tables at the end."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "SWARM_LEARN_DATA": str(tmp_path / "data"),
           "SWARM_LEARN_BASE_MODEL": str(tiny_model_dir)}
    sim = _run("simulate", "--scenarios", "2", "--sessions", "3", "--seed", "5", env=env)
    assert sim.returncode == 0, sim.stderr
    assert "wrote 6 landing file(s)" in sim.stdout and "6/6 sessions" in sim.stderr
    mat = _run("materialize", env=env)
    assert mat.returncode == 0, mat.stderr
    assert "training for deploy-rollout: sft_dataset, lora_adapter, applied_adapter" in mat.stderr
    lines = mat.stdout.splitlines()
    assert lines[0].split()[:4] == ["scenario", "sessions", "records", "quarantined"]
    total = next(line for line in lines if line.startswith("TOTAL")).split()
    records = sum(pq.read_table(p).num_rows for p in (tmp_path / "data" / "records").rglob("*.parquet"))
    assert total[1] == "6" and int(total[2]) == records > 0
    assert lines[lines.index(next(line for line in lines if line.startswith("TOTAL"))) + 1].startswith(
        "global model: 2 scenario(s), 6 session(s), ")
    assert (tmp_path / "data" / "models" / "global_model.json").is_file()
    adapters = lines[lines.index("") + 1:]
    assert adapters[0].split()[:2] == ["scenario", "adapter"]
    for scenario in ("deploy-rollout", "troubleshooting"):
        row = next(line for line in adapters if line.startswith(scenario))
        assert "none" in row and "skipped:" in row and "fewer than min_train_rows 20" in row
    assert (tmp_path / "home" / "dagster.yaml").is_file()
    assert (tmp_path / "data" / "datasets" / "troubleshooting" / "manifest.json").is_file()
    query = _run("query", "--scenario", "troubleshooting", "--latest", "2", "--format", "json", env=env)
    assert query.returncode == 0, query.stderr
    assert [r["session_id"] for r in json.loads(query.stdout)] == ["s0002", "s0003"]
    bad = _run("query", "--scenario", "troubleshooting", "--until", "soon", env=env)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == (
        "swarm-learn query: error: until 'soon': expected ISO 8601 (2026-12-01 or 2026-12-01T08:00:00Z) "
        "or epoch milliseconds")
    status = _run("status", env=env)
    assert status.returncode == 0 and status.stdout.splitlines() == lines[:-1]  # same tables, minus "done in"


def test_errors_are_one_line_without_traceback(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    code = main(["materialize", "--data-root", str(tmp_path), "--assets", "raw_records,bogus"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("swarm-learn materialize: error: unknown asset(s) bogus")
    assert not any("Traceback" in line for line in err)


def test_config_json_reaches_the_training_assets(tmp_path: Path, tiny_model_dir: Path, capsys, monkeypatch):
    import json

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SWARM_LEARN_BASE_MODEL", str(tiny_model_dir))
    root = str(tmp_path / "data")
    assert main(["simulate", "--scenarios", "1", "--sessions", "2", "--seed", "3", "--data-root", root]) == 0
    config = ('{"scenario_model": {"since": "1000"}, '
              '"sft_dataset": {"train_on": ["task_decision", "task_step"], "min_train_rows": 1}}')
    assets = "raw_records,episodes,session_snapshot,scenario_model,sft_dataset"
    assert main(["materialize", "--data-root", root, "--assets", assets, "--config-json", config]) == 0
    manifest = json.loads((tmp_path / "data" / "datasets" / "troubleshooting" / "manifest.json").read_text())
    assert manifest["train_on"] == ["task_decision", "task_step"] and manifest["rows_by_source"]["train"]["task_step"] > 0
    model = json.loads((tmp_path / "data" / "models" / "troubleshooting" / "scenario_model.json").read_text())
    assert model["window"] == {"since_ms": 1000, "until_ms": None} and len(model["sessions"]) == 2
    capsys.readouterr()
    for bad, expected in (("[1]", "--config-json: expected an object"), ("{nope", "--config-json: not JSON"),
                          ('{"raw_records": {}}', "asset_config names raw_records")):
        assert main(["materialize", "--data-root", root, "--config-json", bad]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert expected in err[-1] and not any("Traceback" in line for line in err)


def test_import_writes_a_landing_file(tmp_path: Path, capsys):
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        '{"Action": {"tick": 1, "worker_id": 0, "action": "CheckStatus", "success": true}}\n'
        '{"Action": {"tick": 2, "worker_id": 0, "action": "done", "success": true}}\n'
    )
    code = main(["import", str(jsonl), "--scenario", "imported", "--session", "s1", "--data-root", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "landing" / "imported" / "s1.parquet").is_file()
    assert main(["import", str(jsonl), "--scenario", "imported", "--session", "s1", "--data-root", str(tmp_path)]) == 1


def _fake_versions(root: Path, scenario: str, scores: list[float]) -> None:
    import json

    for i, score in enumerate(scores, 1):
        version = root / "adapters" / scenario / f"v{i:04d}"
        version.mkdir(parents=True)
        (version / "eval.json").write_text(json.dumps({
            "rows": 10, "models": {"base": {"exact_match": 0.0, "valid": 0.1},
                                   "adapter": {"exact_match": score, "valid": 0.9}, "applied": None},
            "gate": {"passed": score >= 0.6}}))


def test_adapters_list_apply_rollback(tmp_path: Path, capsys):
    _fake_versions(tmp_path, "sc", [0.5, 0.8])
    root = ["--data-root", str(tmp_path)]
    assert main(["adapters", "apply", "--scenario", "sc", "--version", "v0001", *root]) == 0
    assert main(["adapters", "apply", "--scenario", "sc", "--version", "v0002", *root]) == 0
    assert "applied v0002 via noop (previous: v0001)" in capsys.readouterr().out
    assert main(["adapters", "list", "--scenario", "sc", *root]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[2].startswith("* v0002") and "0.800" in listing[2] and listing[1].startswith("  v0001")
    assert listing[1].split()[-2] == "failed" and listing[2].split()[-2] == "passed"  # each version's gate
    assert listing[2].split()[2:4] == ["sft", "base"]  # no lineage: trained before DPO and incremental training
    assert listing[-1] == "applied: v0002; history: v0001, v0002"
    assert main(["adapters", "rollback", "--scenario", "sc", *root]) == 0
    assert "rolled back to v0001" in capsys.readouterr().out
    assert (tmp_path / "adapters" / "sc" / "current").read_text().strip() == "v0001"


def test_adapters_errors_are_one_line(tmp_path: Path, capsys):
    _fake_versions(tmp_path, "sc", [0.5])
    assert main(["adapters", "apply", "--scenario", "sc", "--version", "v0009", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "swarm-learn adapters: error: scenario sc: no adapter version 'v0009'; known: v0001"
    assert main(["adapters", "apply", "--scenario", "sc", "--version", "v0001", "--applicator", "vllm",
                 "--data-root", str(tmp_path)]) == 1
    assert "needs a server url" in capsys.readouterr().err
    assert main(["adapters", "list", "--scenario", "../etc", "--data-root", str(tmp_path)]) == 1
    assert "../etc" in capsys.readouterr().err


def test_small_doors_name_the_path(tmp_path: Path, capsys):
    """status on a missing data root and adapters list on a truncated eval.json: one line each,
    naming the path looked at."""
    missing = tmp_path / "nowhere"
    assert main(["status", "--data-root", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"swarm-learn status: error: data root {missing} does not exist") and "\n" not in err
    assert not missing.exists()
    _fake_versions(tmp_path, "sc", [0.5])
    (tmp_path / "adapters" / "sc" / "v0001" / "eval.json").write_text('{"models": {"adap')
    assert main(["adapters", "list", "--scenario", "sc", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"swarm-learn adapters: error: {tmp_path}/adapters/sc/v0001/eval.json: not valid JSON")
    assert "\n" not in err


def test_trigger_check_and_a_manual_training(tmp_path: Path):
    """`trigger check` explains the default trigger; `train` trains by hand (tiny base model), and
    the trigger then counts from that training."""

    from swarm_learn_assets.simulate import simulate
    from swarm_learn_assets.training.tiny_model import build_tiny_model_for_data

    root = tmp_path / "data"
    simulate(root, scenarios=1, sessions=16, seed=3)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "SWARM_LEARN_DATA": str(root)}
    assert _run("materialize", "--assets", "raw_records,episodes,session_snapshot,scenario_model", env=env).returncode == 0
    scenario = next((root / "landing").iterdir()).name
    check = _run("trigger", "check", "--scenario", scenario, env=env)
    assert check.returncode == 0, check.stderr
    assert f"scenario {scenario}: trigger 'episodes>=100 | every 1h' (mode lora, job train_adapter)" in check.stdout
    assert "yes: never trained" in check.stdout and "would train now" in check.stdout

    model = build_tiny_model_for_data(tmp_path / "tiny", root)
    train = _run("train", "--scenario", scenario, env={**env, "SWARM_LEARN_BASE_MODEL": str(model)})
    assert train.returncode == 0, train.stderr[-2000:]
    assert f"{scenario}: trained v0001 (no adapter is applied yet: training from the base model): exact match" \
        in train.stdout  # applied only if it beat the base
    assert ("applied: v0001" in train.stdout) != ("stopped by a blocking check" in train.stderr)
    assert (root / "adapters" / scenario / "v0001" / "eval.json").is_file()
    after = _run("trigger", "check", "--scenario", scenario, env=env)
    assert "no: 0 new episodes since the last training, needs 100" in after.stdout
    missing = _run("train", "--scenario", "nope", env=env)
    assert missing.returncode == 1 and "no landing sessions for scenario(s) nope" in missing.stderr


def test_status_names_a_broken_global_model(tmp_path: Path, capsys):
    (tmp_path / "landing").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "global_model.json").write_text('{"scenario": "glo')
    assert main(["status", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{tmp_path / 'models' / 'global_model.json'}: not valid JSON" in err[-1]
