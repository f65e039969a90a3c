"""Applicators: how a trained adapter reaches the server that answers the swarm's decision calls.

One small interface (the reference's `ModelApplicator`): `apply` makes the given version the one
served, runs a smoke request, and on any failure puts the previous state back before raising.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from ..core.llm.prompts import SMOKE_PROMPT
from ..core.storage.atomic import write_json


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


SERVING_FILE = "serving.json"


def read_serving(scenario_dir: Path) -> dict[str, Any] | None:
    """`adapters/<scenario>/serving.json`: the llama-server that serves the scenario now, if any."""
    path = Path(scenario_dir) / SERVING_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ApplicatorError(f"{path}: not valid JSON ({exc}); expected {{url, version, pid}}") from exc


def smoke_chat(url: str, timeout: float) -> None:
    """One chat completion of the smoke prompt; raises ApplicatorError unless it answers text."""
    reply = _call("POST", f"{url}/v1/chat/completions", timeout, f"smoke request to {url} failed",
                  json={"messages": [{"role": "user", "content": SMOKE_PROMPT}], "max_tokens": 8, "temperature": 0})
    try:
        text = reply.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        text = None
    if not isinstance(text, str):
        raise ApplicatorError(f"smoke request to {url} failed: no answer in {reply.text[:200]}")


@dataclass
class BlueGreenLlamaCpp:
    """llama.cpp blue-green, as the reference's BlueGreenManager: llama-server cannot load a new
    adapter file while it runs, so a new server starts idle with the base GGUF and the version's
    adapter on a free port; once healthy and the smoke request answered, `serving.json` is switched
    to it atomically and the old server stops. On any failure the new server is stopped, and the old
    one keeps serving with `serving.json` unchanged."""

    base_model: str = "default"
    timeout: float = 60.0
    smoke: Callable[[str, float], None] = smoke_chat
    name: str = "llama.cpp"

    def apply(self, scenario: str, version: str, adapter_dir: Path, previous: str | None) -> list[str]:
        from ..serving.llama_cpp import (
            ADAPTER_GGUF,
            LlamaCppError,
            export_adapter_gguf,
            is_llama_server,
            llama_server_binary,
            start_llama_server,
            stop_server,
        )  # fmt: skip
        from .base_model import BaseModelError, base_gguf, resolve_base_model

        adapter_dir = Path(adapter_dir)
        scenario_dir = adapter_dir.parent
        old = read_serving(scenario_dir)
        try:
            base = base_gguf(self.base_model)
            gguf = adapter_dir / ADAPTER_GGUF
            if not gguf.is_file():
                gguf = export_adapter_gguf(adapter_dir, resolve_base_model(self.base_model).path)
            server = start_llama_server(llama_server_binary(), base, gguf, scenario_dir / f"llama-server-{version}.log")
        except (LlamaCppError, BaseModelError) as exc:
            raise ApplicatorError(f"{scenario} {version}: {exc}; "
                                  f"{'the old server keeps serving' if old else 'nothing was serving'}") from exc
        try:
            self.smoke(server.url, self.timeout)
            write_json({"url": server.url, "version": version, "pid": server.pid, "scenario": scenario,
                        "adapter": str(gguf), "base_model": str(base), "log": str(server.log),
                        "started_at_ms": int(time.time() * 1000)}, scenario_dir / SERVING_FILE)
        except BaseException as exc:
            stop_server(server.pid)
            if isinstance(exc, ApplicatorError):
                raise ApplicatorError(f"{exc}; {'the old server keeps serving' if old else 'nothing was serving'}") from exc
            raise
        notes = []
        if old and isinstance(old.get("pid"), int) and is_llama_server(old["pid"]):
            stop_server(old["pid"])
            notes.append(f"stopped the old server of {old.get('version')} at {old.get('url')}")
        return notes


def stop_serving(scenario_dir: Path) -> dict[str, Any] | None:
    """Stop the scenario's llama-server and remove `serving.json`; returns what was serving."""
    from ..serving.llama_cpp import is_llama_server, stop_server

    old = read_serving(scenario_dir)
    if old is None:
        return None
    if isinstance(old.get("pid"), int) and is_llama_server(old["pid"]):
        stop_server(old["pid"])
    (Path(scenario_dir) / SERVING_FILE).unlink(missing_ok=True)
    return old


def make_applicator(kind: str, url: str = "", timeout: float = 60.0, base_model: str = "default") -> ModelApplicator:
    """The applicator named in config: `noop`, `vllm` (needs the server's `url`) or `llamacpp`
    (starts its own llama-server with `base_model`'s GGUF)."""
    if kind == "noop":
        return NoOpApplicator()
    if kind == "vllm":
        if not url:
            raise ValueError("applicator 'vllm' needs a server url (e.g. http://localhost:8000)")
        return VllmApplicator(url, timeout)
    if kind == "llamacpp":
        return BlueGreenLlamaCpp(base_model, timeout)
    raise ValueError(f"unknown applicator {kind!r}; expected noop, vllm or llamacpp")
