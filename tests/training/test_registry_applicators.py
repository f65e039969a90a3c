"""Adapter registry (versions, current pointer, history of 5, rollback) and the applicators,
against a local server speaking the vLLM API and a stand-in llama-server process (the real one
is exercised by the slow llama.cpp tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from swarm_learn_assets.training.applicators import (
    ApplicatorError,
    NoOpApplicator,
    VllmApplicator,
    make_applicator,
)
from swarm_learn_assets.training.registry import MAX_HISTORY, AdapterRegistry, RegistryError

from .servers import FakeVllm, serve


def _trained(registry: AdapterRegistry, exact_match: float) -> str:
    version = registry.new_version_dir()
    (version.path / "adapter_config.json").write_text("{}")
    (version.path / "eval.json").write_text(json.dumps({"models": {"adapter": {"exact_match": exact_match}},
                                                        "gate": {"passed": exact_match >= 0.5}}))
    return version.version


def test_versions_are_numbered_and_incomplete_ones_are_not_listed(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first = _trained(registry, 0.5)
    unfinished = registry.new_version_dir()  # a training that crashed: no eval.json
    second = _trained(registry, 0.7)
    assert (first, unfinished.version, second) == ("v0001", "v0002", "v0003")
    assert [v.version for v in registry.versions()] == ["v0001", "v0003"]
    assert registry.get("v0003").exact_match == 0.7
    with pytest.raises(RegistryError, match="no adapter version 'v0002'.*known: v0001, v0003"):
        registry.get("v0002")


def test_newest_passed_is_the_newest_version_whose_gate_passed(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    assert registry.newest_passed() is None
    passed = _trained(registry, 0.9)
    _trained(registry, 0.2)  # newer, failed its gate
    registry.new_version_dir()  # newest folder on disk, unfinished
    assert registry.newest_passed().version == passed
    assert [v.passed_gate for v in registry.versions()] == [True, False]


def test_apply_moves_current_keeps_five_and_rolls_back(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    versions = [_trained(registry, 0.1 * i) for i in range(7)]
    assert registry.current is None
    previous = None
    for version in versions:
        assert registry.apply(version, NoOpApplicator()) == previous
        previous = version
    assert registry.current.version == versions[-1]
    assert registry.history() == versions[-MAX_HISTORY:]
    assert registry.rollback(NoOpApplicator()) == versions[-2]
    assert registry.current.version == versions[-2]
    assert (tmp_path / "sc" / "current").read_text().strip() == versions[-2]


def test_rollback_without_history_is_a_clear_error(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    registry.apply(_trained(registry, 0.5), NoOpApplicator())
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback(NoOpApplicator())


class _Failing:
    name = "failing"

    def apply(self, *args):
        raise ApplicatorError("server down")


def test_a_failed_apply_leaves_the_pointer_where_it_was(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first, second = _trained(registry, 0.5), _trained(registry, 0.6)
    registry.apply(first, NoOpApplicator())
    with pytest.raises(ApplicatorError):
        registry.apply(second, _Failing())
    assert registry.current.version == first and registry.history() == [first]


@pytest.mark.parametrize("crash_after", [0, 1])
def test_a_crash_between_the_two_writes_leaves_a_consistent_registry(tmp_path: Path, monkeypatch, crash_after: int):
    """Applying writes history.json, then current; killed after `crash_after` of those writes, the
    registry read afterwards names one applied version in both files."""
    from swarm_learn_assets.training import registry as module

    registry = AdapterRegistry(tmp_path, "sc")
    first, second = _trained(registry, 0.5), _trained(registry, 0.6)
    registry.apply(first, NoOpApplicator())
    real, writes = {"json": module.write_json, "text": module.write_text}, []

    def crashing(kind):
        def write(payload, path):
            if len(writes) == crash_after:
                raise KeyboardInterrupt("killed")  # the process dies here
            writes.append(path)
            return real[kind](payload, path)
        return write

    monkeypatch.setattr(module, "write_json", crashing("json"))
    monkeypatch.setattr(module, "write_text", crashing("text"))
    with pytest.raises(KeyboardInterrupt):
        registry.apply(second, NoOpApplicator())
    monkeypatch.undo()
    after = AdapterRegistry(tmp_path, "sc")
    expected = [first, second][:crash_after + 1][-1]
    assert after.current.version == expected and after.history()[-1] == expected
    assert (tmp_path / "sc" / "current").read_text().strip() == expected  # repaired on read
    after.apply(first if expected == second else second, NoOpApplicator())  # and it goes on working


def test_a_broken_registry_is_an_error_naming_the_file(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first = _trained(registry, 0.5)
    registry.apply(first, NoOpApplicator())
    (tmp_path / "sc" / first / "eval.json").unlink()  # the applied version lost its evaluation
    with pytest.raises(RegistryError, match=r"history.json: the applied version v0001 has no .*v0001/eval.json"):
        registry.current
    (tmp_path / "sc" / "history.json").write_text('["v00')
    with pytest.raises(RegistryError, match=r"sc/history.json: not valid JSON .*expected a list of version names"):
        registry.current
    (tmp_path / "sc" / "history.json").write_text('{"v0001": 1}')
    with pytest.raises(RegistryError, match=r"sc/history.json: expected a list of version names"):
        registry.history()
    second = _trained(registry, 0.6)
    (tmp_path / "sc" / second / "eval.json").write_text('{"models": {"adap')  # truncated
    with pytest.raises(RegistryError, match=r"v0002/eval.json: not valid JSON"):
        registry.get(second).exact_match


def test_a_registry_with_only_a_current_file_keeps_its_applied_version(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first = _trained(registry, 0.5)
    (tmp_path / "sc" / "current").write_text(first + "\n")
    assert registry.current.version == first and registry.history() == [first]


def test_vllm_loads_under_a_new_name_smokes_then_unloads_the_old(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first, second = _trained(registry, 0.5), _trained(registry, 0.6)
    fake = FakeVllm()
    with serve(fake) as (url, calls):
        applicator = VllmApplicator(url)
        registry.apply(first, applicator)
        registry.apply(second, applicator)
    assert set(fake.loaded) == {"sc-v0002"}
    paths = [c[1] for c in calls]
    assert paths == ["/v1/load_lora_adapter", "/v1/completions",
                     "/v1/load_lora_adapter", "/v1/completions", "/v1/unload_lora_adapter"]
    assert calls[2][2] == {"lora_name": "sc-v0002", "lora_path": str((tmp_path / "sc" / "v0002").resolve())}
    assert calls[4][2] == {"lora_name": "sc-v0001"}


def test_vllm_failed_smoke_unloads_the_new_one_and_keeps_the_old(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first, second = _trained(registry, 0.5), _trained(registry, 0.6)
    fake = FakeVllm()
    fake.broken.add("sc-v0002")
    with serve(fake) as (url, _):
        registry.apply(first, VllmApplicator(url))
        with pytest.raises(ApplicatorError, match=r"smoke request to sc-v0002 failed.*500.*v0001 keeps serving"):
            registry.apply(second, VllmApplicator(url))
    assert set(fake.loaded) == {"sc-v0001"} and registry.current.version == first


def test_vllm_error_replies_become_clear_errors(tmp_path: Path):
    fake = FakeVllm()
    with serve(fake) as (url, _):
        with pytest.raises(ApplicatorError, match="could not load sc-v0009.*400.*No adapter found"):
            VllmApplicator(url).apply("sc", "v0009", tmp_path / "missing", None)
    with pytest.raises(ApplicatorError, match="failed"):
        VllmApplicator("http://127.0.0.1:9", timeout=2).apply("sc", "v1", tmp_path, None)


def test_vllm_rollback_loads_the_previous_version_again(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first, second = _trained(registry, 0.5), _trained(registry, 0.6)
    fake = FakeVllm()
    with serve(fake) as (url, _):
        registry.apply(first, VllmApplicator(url))
        registry.apply(second, VllmApplicator(url))
        assert registry.rollback(VllmApplicator(url)) == first
    assert set(fake.loaded) == {"sc-v0001"}


STAND_IN_SERVER = """#!{python}
# A stand-in for llama-server: same flags, /health, /v1/models and /v1/chat/completions. An adapter
# file reading `broken` makes it exit at start; `mute` makes its completions fail (the smoke test).
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
args = sys.argv[1:]
flag = lambda name: args[args.index(name) + 1]
lora = open(flag("--lora")).read()
if lora == "broken":
    print("error: failed to load adapter", flush=True)
    sys.exit(1)
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply(200, {{"status": "ok"}} if self.path == "/health" else {{"data": [{{"id": lora}}]}})
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        if lora == "mute":
            return self.reply(500, {{"error": {{"message": "failed to decode"}}}})
        self.reply(200, {{"choices": [{{"message": {{"content": lora}}}}]}})
HTTPServer((flag("--host"), int(flag("--port"))), H).serve_forever()
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in llama-server binary and a base GGUF file, as `$SWARM_LEARN_LLAMA_SERVER` would give."""
    import sys

    binary = tmp_path / "bin" / "llama-server"
    binary.parent.mkdir()
    binary.write_text(STAND_IN_SERVER.format(python=sys.executable))
    binary.chmod(0o755)
    monkeypatch.setenv("SWARM_LEARN_LLAMA_SERVER", str(binary))
    base = tmp_path / "base.gguf"
    base.write_bytes(b"GGUF")
    return base


def _with_gguf(registry: AdapterRegistry, exact_match: float, content: str) -> str:
    version = _trained(registry, exact_match)
    (registry.get(version).path / "adapter.gguf").write_text(content)
    return version


def _alive(pid: int) -> bool:
    from swarm_learn_assets.serving.llama_cpp import is_llama_server

    return is_llama_server(pid)


def test_llamacpp_blue_green_starts_a_new_server_then_stops_the_old(tmp_path: Path, stand_in: Path):
    from swarm_learn_assets.training.applicators import BlueGreenLlamaCpp, read_serving, stop_serving

    registry = AdapterRegistry(tmp_path / "adapters", "sc")
    first, second = _with_gguf(registry, 0.5, "v1-answers"), _with_gguf(registry, 0.6, "v2-answers")
    applicator = BlueGreenLlamaCpp(str(stand_in), timeout=10)
    try:
        registry.apply(first, applicator)
        blue = read_serving(registry.root)
        assert blue["version"] == first and _alive(blue["pid"])
        assert requests.post(f"{blue['url']}/v1/chat/completions", json={}).json()["choices"][0]["message"]["content"] == "v1-answers"
        registry.apply(second, applicator)
        green = read_serving(registry.root)
        assert green["version"] == second and green["url"] != blue["url"] and _alive(green["pid"])
        assert not _alive(blue["pid"])  # the old server is gone
        assert requests.post(f"{green['url']}/v1/chat/completions", json={}).json()["choices"][0]["message"]["content"] == "v2-answers"
    finally:
        stopped = stop_serving(registry.root)
    assert stopped["version"] == second and not _alive(stopped["pid"]) and read_serving(registry.root) is None


@pytest.mark.parametrize("content, says", [("broken", "exited with 1 while starting.*failed to load adapter"),
                                           ("mute", "smoke request to .* failed.*500")])
def test_llamacpp_failure_keeps_the_old_server_and_serving_json(tmp_path: Path, stand_in: Path, content, says):
    from swarm_learn_assets.training.applicators import BlueGreenLlamaCpp, read_serving, stop_serving

    registry = AdapterRegistry(tmp_path / "adapters", "sc")
    good, bad = _with_gguf(registry, 0.5, "good"), _with_gguf(registry, 0.6, content)
    applicator = BlueGreenLlamaCpp(str(stand_in), timeout=10)
    try:
        registry.apply(good, applicator)
        before = (registry.root / "serving.json").read_bytes()
        with pytest.raises(ApplicatorError, match=f"{says}.*the old server keeps serving"):
            registry.apply(bad, applicator)
        assert (registry.root / "serving.json").read_bytes() == before
        assert _alive(read_serving(registry.root)["pid"]) and registry.current.version == good
        servers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _alive(int(p.name))
                   and str(registry.root) in (p / "cmdline").read_bytes().decode(errors="replace")]
        assert len(servers) == 1  # the failed new server was stopped
    finally:
        stop_serving(registry.root)


def test_llamacpp_needs_a_gguf_base_model(tmp_path: Path, stand_in: Path):
    from swarm_learn_assets.training.applicators import BlueGreenLlamaCpp

    registry = AdapterRegistry(tmp_path / "adapters", "sc")
    version = _with_gguf(registry, 0.5, "good")
    with pytest.raises(ApplicatorError, match="needs a GGUF base model.*nothing was serving"):
        registry.apply(version, BlueGreenLlamaCpp(str(tmp_path), timeout=10))
    assert registry.current is None and not (registry.root / "serving.json").exists()


def test_make_applicator_checks_its_config():
    assert isinstance(make_applicator("noop"), NoOpApplicator)
    assert isinstance(make_applicator("vllm", "http://x:8000"), VllmApplicator)
    with pytest.raises(ValueError, match="needs a server url"):
        make_applicator("vllm")
    assert make_applicator("llamacpp", base_model="/models/x.gguf").base_model == "/models/x.gguf"
    with pytest.raises(ValueError, match="unknown applicator 'ollama'"):
        make_applicator("ollama", "http://x")
