"""Adapter registry (versions, current pointer, history of 5, rollback) and the applicators,
against local servers speaking the vLLM and llama.cpp APIs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarm_learn_assets.training.applicators import (
    ApplicatorError,
    LlamaCppApplicator,
    NoOpApplicator,
    VllmApplicator,
    make_applicator,
)
from swarm_learn_assets.training.registry import MAX_HISTORY, AdapterRegistry, RegistryError

from .servers import FakeLlamaCpp, FakeVllm, serve


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


def _gguf_adapters(registry: AdapterRegistry, versions: list[str]) -> list[Path]:
    paths = []
    for v in versions:
        path = registry.get(v).path / "adapter.gguf"
        path.write_bytes(b"GGUF")
        paths.append(path)
    return paths


def test_llamacpp_switches_scales_to_the_version_loaded_at_start(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first, second = _trained(registry, 0.5), _trained(registry, 0.6)
    fake = FakeLlamaCpp(_gguf_adapters(registry, [first, second]))
    with serve(fake) as (url, calls):
        registry.apply(first, LlamaCppApplicator(url))
        assert [a["scale"] for a in fake.adapters] == [1.0, 0.0]
        registry.apply(second, LlamaCppApplicator(url))
    assert [a["scale"] for a in fake.adapters] == [0.0, 1.0]
    assert ("POST", "/completion") in [(c[0], c[1]) for c in calls]


def test_llamacpp_without_the_adapter_loaded_says_to_restart_with_it(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first, second = _trained(registry, 0.5), _trained(registry, 0.6)
    fake = FakeLlamaCpp(_gguf_adapters(registry, [first]))
    with serve(fake) as (url, _):
        with pytest.raises(ApplicatorError, match=r"no adapter of sc v0002 loaded.*restart it with --lora"):
            registry.apply(second, LlamaCppApplicator(url))
    assert registry.current is None


def test_llamacpp_failed_smoke_restores_the_previous_scales(tmp_path: Path):
    registry = AdapterRegistry(tmp_path, "sc")
    first, second = _trained(registry, 0.5), _trained(registry, 0.6)
    fake = FakeLlamaCpp(_gguf_adapters(registry, [first, second]))
    fake.broken.add(1)
    with serve(fake) as (url, _):
        registry.apply(first, LlamaCppApplicator(url))
        with pytest.raises(ApplicatorError, match="smoke request with v0002 failed.*restored"):
            registry.apply(second, LlamaCppApplicator(url))
    assert [a["scale"] for a in fake.adapters] == [1.0, 0.0]
    assert registry.current.version == first


def test_make_applicator_checks_its_config():
    assert isinstance(make_applicator("noop"), NoOpApplicator)
    assert isinstance(make_applicator("vllm", "http://x:8000"), VllmApplicator)
    with pytest.raises(ValueError, match="needs a server url"):
        make_applicator("llamacpp")
    with pytest.raises(ValueError, match="unknown applicator 'ollama'"):
        make_applicator("ollama", "http://x")
