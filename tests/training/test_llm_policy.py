"""LLM policies: in-process (tiny model), an OpenAI-compatible endpoint, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from swarm_learn_assets.cli import main
from swarm_learn_assets.core.llm.policy import DecideRequest, PolicyError, parse_policy
from swarm_learn_assets.core.llm.prompts import decide_response
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.serving.llama_cpp import free_port
from swarm_learn_assets.simulate import simulate
from swarm_learn_assets.simulate.policy_run import simulate_with_policy
from swarm_learn_assets.training.llm_policy import EndpointPolicy, make_policy

from ..simulate.test_policy_run import _order_of
from .servers import FakeOpenAI, serve


def _oracle_answer(prompt: str) -> str:
    context = prompt.split("\n")[0].removeprefix("Current context: ")
    previous = prompt.split("Previous action: ")[1].split("\n")[0]
    order = _order_of(context)
    action = order[0] if previous == "none" else order[order.index(previous) + 1]
    return decide_response(action, context.rsplit(" ", 1)[1])


def test_endpoint_policy_asks_chat_completions_and_records_the_served_version(tmp_path: Path):
    layout = DataLayout(tmp_path)
    with serve(FakeOpenAI(_oracle_answer)) as (url, calls):
        (layout.adapters_root / "troubleshooting").mkdir(parents=True)
        (layout.adapters_root / "troubleshooting" / "serving.json").write_text(json.dumps({"url": url, "version": "v0002"}))
        sessions = simulate_with_policy(
            tmp_path, lambda s: make_policy(parse_policy(f"endpoint:{url}"), s, layout), scenarios=2, sessions=1, seed=4
        )
    assert all(s.succeeded == s.tasks == 12 for s in sessions)
    posts = [c for c in calls if c[0] == "POST"]
    assert len(posts) == sum(s.decisions for s in sessions)
    assert posts[0][2]["model"] == "fake-model" and posts[0][2]["temperature"] == 0
    assert posts[0][2]["messages"][0]["content"].startswith("Current context: ")
    rows = [pq.read_table(s.path).to_pylist() for s in sessions]
    loras = [{r["lora"] for r in session if r["kind"] == "action" and r["action"] not in ("tick_start", "tick_end", "done")}
             for session in rows]
    assert loras == [{"v0002"}, {None}]  # serving.json names this URL for troubleshooting only
    assert {r["endpoint"] for r in rows[0] if r["kind"] == "llm_call"} == {url}


def test_an_endpoint_that_fails_mid_run_is_a_wrong_action_not_a_crash(tmp_path: Path):
    with serve(FakeOpenAI(lambda p: 1 / 0)) as (url, _):  # the handler fails: the server answers nothing
        policy = EndpointPolicy(url, timeout=5)
        answer = policy.decide([DecideRequest("x on h", "h", ("A", "B"), None)])[0]
    assert answer.error and answer.action(("A", "B")) is None


def test_policy_errors_are_one_line(tmp_path: Path, capsys):
    root = tmp_path / "data"
    simulate(root, scenarios=1, sessions=1, seed=1)
    port = free_port()
    for policy, says in [(f"endpoint:http://127.0.0.1:{port}", "is unreachable"),
                         ("adapter:v0009", "no adapter version 'v0009'"),
                         ("offline", "scenario_model.json does not exist"),
                         ("magic", "unknown policy 'magic'")]:
        assert main(["simulate", "--data-root", str(root), "--scenarios", "1", "--sessions", "1", "--policy", policy]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("swarm-learn simulate: error:") and says in err
    assert sorted(p.name for p in (root / "landing" / "troubleshooting").iterdir()) == ["s0001.parquet"]


def test_in_process_base_policy_records_its_answers(tmp_path: Path, monkeypatch):
    from swarm_learn_assets.core.stages.session_batch import process_sessions
    from swarm_learn_assets.training.tiny_model import build_tiny_model_for_data

    src = tmp_path / "src"
    simulate(src, scenarios=1, sessions=2, seed=5)
    process_sessions(DataLayout(src), [f.key for f in DataLayout(src).scan_landing()[0]])
    tiny = build_tiny_model_for_data(tmp_path / "tiny", src)
    monkeypatch.setenv("SWARM_LEARN_BASE_MODEL", str(tiny))
    root = tmp_path / "data"
    simulate(root, scenarios=1, sessions=1, seed=5)
    assert main(["simulate", "--data-root", str(root), "--scenarios", "1", "--sessions", "1", "--policy", "current"]) == 0
    rows = pq.read_table(root / "landing" / "troubleshooting" / "s0002.parquet").to_pylist()
    calls = [r for r in rows if r["kind"] == "llm_call"]
    assert calls and all(c["call_type"] == "decide" and c["endpoint"] == "in-process" and c["latency_ms"] > 0 for c in calls)
    # no adapter is applied, so `current` is the base model: no lora on any row
    assert all(r["lora"] is None for r in rows)
    with pytest.raises(PolicyError, match="not a decision policy"):
        make_policy(parse_policy("scripted"), "troubleshooting", DataLayout(root))
