"""Applicators: how a trained adapter reaches the server that answers the swarm's decision calls.

One small interface (the reference's `ModelApplicator`): `apply` makes the given version the one
served, runs a smoke request, and on any failure puts the previous state back before raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from ..core.prompts import SMOKE_PROMPT


class ApplicatorError(RuntimeError):
    """Serving the adapter failed; the server was left as it was before."""


class ModelApplicator(Protocol):
    name: str

    def apply(self, scenario: str, version: str, adapter_dir: Path, previous: str | None) -> list[str]:
        """Serve `version`; returns notes worth showing (e.g. an old adapter that would not unload)."""
        ...


@dataclass
class NoOpApplicator:
    """The default: the registry's `current` pointer is the whole deployment."""

    name: str = "noop"

    def apply(self, scenario: str, version: str, adapter_dir: Path, previous: str | None) -> list[str]:
        return []


def _call(method: str, url: str, timeout: float, what: str, **kwargs: Any) -> requests.Response:
    try:
        response = requests.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise ApplicatorError(f"{what}: {method} {url} failed: {exc}") from exc
    if response.status_code >= 400:
        raise ApplicatorError(f"{what}: {method} {url} answered {response.status_code}: {response.text.strip()[:300]}")
    return response


@dataclass
class VllmApplicator:
    """A vLLM server with runtime LoRA updates (`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`).

    Each version is loaded under its own name (`<scenario>-<version>`), never reloaded in place, so
    requests in flight keep their adapter; the old one is unloaded only after the new one answered.
    """

    url: str
    timeout: float = 60.0
    name: str = "vllm"

    @staticmethod
    def served_name(scenario: str, version: str) -> str:
        return f"{scenario}-{version}"

    def apply(self, scenario: str, version: str, adapter_dir: Path, previous: str | None) -> list[str]:
        base = self.url.rstrip("/")
        new = self.served_name(scenario, version)
        _call("POST", f"{base}/v1/load_lora_adapter", self.timeout, f"vLLM could not load {new}",
              json={"lora_name": new, "lora_path": str(Path(adapter_dir).resolve())})
        try:
            reply = _call("POST", f"{base}/v1/completions", self.timeout, f"smoke request to {new} failed",
                          json={"model": new, "prompt": SMOKE_PROMPT, "max_tokens": 8, "temperature": 0})
            if not reply.json().get("choices"):
                raise ApplicatorError(f"smoke request to {new} failed: no choices in {reply.text[:200]}")
        except (ApplicatorError, ValueError) as exc:
            try:
                _call("POST", f"{base}/v1/unload_lora_adapter", self.timeout, f"vLLM could not unload {new}",
                      json={"lora_name": new})
            except ApplicatorError:
                pass  # the new adapter stays loaded but unused; the previous one still serves
            raise ApplicatorError(f"{exc}; {previous or 'the base model'} keeps serving") from exc
        notes = []
        if previous is not None:
            old = self.served_name(scenario, previous)
            try:
                _call("POST", f"{base}/v1/unload_lora_adapter", self.timeout, f"vLLM could not unload {old}",
                      json={"lora_name": old})
            except ApplicatorError as exc:
                notes.append(str(exc))
        return notes


@dataclass
class LlamaCppApplicator:
    """A llama.cpp `llama-server`: it can only switch (by scale) between adapters loaded at its start
    (`--lora FILE`, GGUF files converted with `convert_lora_to_gguf.py`), so applying a version means
    finding the adapter whose file lies in the version's folder and giving it scale 1, the others 0."""

    url: str
    timeout: float = 60.0
    name: str = "llama.cpp"

    def apply(self, scenario: str, version: str, adapter_dir: Path, previous: str | None) -> list[str]:
        base = self.url.rstrip("/")
        loaded = _call("GET", f"{base}/lora-adapters", self.timeout, "llama.cpp adapters unavailable").json()
        folder = Path(adapter_dir).resolve()
        target = next((a for a in loaded if Path(a["path"]).resolve().parent == folder), None)
        if target is None:
            paths = ", ".join(a["path"] for a in loaded) or "none"
            raise ApplicatorError(
                f"llama.cpp server at {self.url} has no adapter of {scenario} {version} loaded (loaded: {paths}); "
                f"it can only switch between adapters loaded at its start: restart it with "
                f"--lora {folder}/<adapter>.gguf (convert the PEFT adapter with convert_lora_to_gguf.py)"
            )
        before = [{"id": a["id"], "scale": a.get("scale", 0.0)} for a in loaded]
        after = [{"id": a["id"], "scale": 1.0 if a["id"] == target["id"] else 0.0} for a in loaded]
        _call("POST", f"{base}/lora-adapters", self.timeout, "llama.cpp refused the adapter scales", json=after)
        try:
            reply = _call("POST", f"{base}/completion", self.timeout, f"smoke request with {version} failed",
                          json={"prompt": SMOKE_PROMPT, "n_predict": 8, "temperature": 0})
            if "content" not in reply.json():
                raise ApplicatorError(f"smoke request with {version} failed: no content in {reply.text[:200]}")
        except (ApplicatorError, ValueError) as exc:
            _call("POST", f"{base}/lora-adapters", self.timeout, "llama.cpp could not restore the scales", json=before)
            raise ApplicatorError(f"{exc}; previous adapter scales restored") from exc
        return []


def make_applicator(kind: str, url: str = "", timeout: float = 60.0) -> ModelApplicator:
    """The applicator named in config: `noop`, `vllm` or `llamacpp` (the last two need `url`)."""
    if kind == "noop":
        return NoOpApplicator()
    if kind in ("vllm", "llamacpp"):
        if not url:
            raise ValueError(f"applicator {kind!r} needs a server url (e.g. http://localhost:8000)")
        return VllmApplicator(url, timeout) if kind == "vllm" else LlamaCppApplicator(url, timeout)
    raise ValueError(f"unknown applicator {kind!r}; expected noop, vllm or llamacpp")
