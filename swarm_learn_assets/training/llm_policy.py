"""The decision LLM as a simulator policy: in-process (transformers + peft) or a served endpoint.

`make_policy` turns a parsed `--policy` into the `DecisionPolicy` of one scenario: `base` is the
base model alone, `current` the scenario's applied adapter (the base model when none is applied),
`adapter:VERSION` a given version, `offline` the scenario model, `endpoint:URL` an OpenAI-compatible
chat-completions server (llama-server, vLLM). All ask the same `decide` prompt, as one user turn,
which is what the swarm sends and what `llm_decision` rows were trained on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from ..core.llm.policy import DecideAnswer, DecideRequest, DecisionPolicy, OfflinePolicy, PolicyError, PolicySpec
from ..core.storage.layout import DataLayout
from .registry import AdapterRegistry

DECIDE_MAX_NEW_TOKENS = 32  # `{"action": "RestoreBackup", "target": "db-analytics-16"}` is 20 tokens
IN_PROCESS_ENDPOINT = "in-process"


def _conversation(request: DecideRequest) -> list[dict[str, str]]:
    return [{"role": "user", "content": request.prompt}]


class InProcessPolicy:
    """The base model, with an adapter or without, answering a tick's questions in one batch."""

    records_llm_calls = True
    endpoint = IN_PROCESS_ENDPOINT

    def __init__(self, model_dir: Path, model_id: str, adapter_dir: Path | None, version: str | None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        network = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        if adapter_dir is not None:
            from peft import PeftModel

            network = PeftModel.from_pretrained(network, adapter_dir)
        self.network = network.eval()
        self.model = model_id
        self.lora = version
        self.name = "base" if version is None else f"adapter:{version}"

    def decide(self, requests: Sequence[DecideRequest]) -> list[DecideAnswer]:
        from .lora import generate_chat

        start = time.perf_counter()
        answers = generate_chat(self.network, self.tokenizer, [_conversation(r) for r in requests],
                                DECIDE_MAX_NEW_TOKENS)
        latency = round((time.perf_counter() - start) * 1000)
        return [DecideAnswer(a, latency) for a in answers]


class EndpointPolicy:
    """An OpenAI-compatible chat-completions server; a tick's questions are sent concurrently, so a
    server with several slots (llama-server `-np`, vLLM) answers them as one batch."""

    records_llm_calls = True

    def __init__(self, url: str, model: str | None = None, lora: str | None = None, timeout: float = 60.0) -> None:
        self.endpoint = url.rstrip("/")
        self.timeout = timeout
        try:
            listed = requests.get(f"{self.endpoint}/v1/models", timeout=min(timeout, 10.0))
            listed.raise_for_status()
            served = [m.get("id") for m in listed.json().get("data", []) if m.get("id")]
        except (requests.RequestException, ValueError) as exc:
            raise PolicyError(f"endpoint {self.endpoint} is unreachable or not OpenAI-compatible "
                              f"(GET /v1/models: {exc})") from exc
        if model is None and not served:
            raise PolicyError(f"endpoint {self.endpoint} lists no model; pass --model NAME")
        self.model = model or served[0]
        self.lora = lora
        self.name = f"endpoint:{self.endpoint}"

    def _ask(self, request: DecideRequest) -> DecideAnswer:
        start = time.perf_counter()
        body = {"model": self.model, "messages": _conversation(request), "max_tokens": DECIDE_MAX_NEW_TOKENS,
                "temperature": 0}
        try:
            reply = requests.post(f"{self.endpoint}/v1/chat/completions", json=body, timeout=self.timeout)
            reply.raise_for_status()
            text = reply.json()["choices"][0]["message"]["content"] or ""
            error = None
        except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as exc:
            text, error = "", f"{type(exc).__name__}: {exc}"[:300]
        return DecideAnswer(text.strip(), round((time.perf_counter() - start) * 1000), error)

    def decide(self, requests_: Sequence[DecideRequest]) -> list[DecideAnswer]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, len(requests_))) as pool:
            return list(pool.map(self._ask, requests_))


def served_version(layout: DataLayout, scenario: str, url: str) -> str | None:
    """The adapter version `serving.json` says is served at `url`, if it names that URL."""
    path = layout.adapters_root / scenario / "serving.json"
    try:
        serving = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return serving.get("version") if str(serving.get("url", "")).rstrip("/") == url.rstrip("/") else None


def make_policy(
    spec: PolicySpec, scenario: str, layout: DataLayout, base_model: str = "default", model_name: str | None = None
) -> DecisionPolicy:
    """The policy `spec` names, for one scenario (`scripted` is the simulator's own, not a policy)."""
    if spec.kind == "offline":
        path = layout.scenario_model(scenario)
        if not path.is_file():
            raise PolicyError(f"policy offline: {path} does not exist; run `swarm-learn materialize` first")
        return OfflinePolicy(json.loads(path.read_text())["offline_model"])
    if spec.kind == "endpoint":
        return EndpointPolicy(spec.argument or "", model_name, served_version(layout, scenario, spec.argument or ""))
    if spec.kind not in ("base", "current", "adapter"):
        raise PolicyError(f"policy {spec}: not a decision policy")
    from .base_model import resolve_base_model
    from .registry import RegistryError

    registry = AdapterRegistry(layout.adapters_root, scenario)
    version = None
    if spec.kind == "current":
        version = registry.current
    elif spec.kind == "adapter":
        try:
            version = registry.get(spec.argument or "")
        except RegistryError as exc:
            raise PolicyError(f"policy {spec}: {exc}") from exc
    resolved = resolve_base_model(base_model)
    return InProcessPolicy(resolved.path, resolved.model_id, version.path if version else None,
                           version.version if version else None)
