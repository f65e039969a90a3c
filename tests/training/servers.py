"""Local HTTP servers that speak the vLLM adapter API and the OpenAI chat API, with their error replies."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")

    def do_GET(self) -> None:
        self.server.calls.append(("GET", self.path, None))
        self.server.app.get(self)

    def do_POST(self) -> None:
        body = self._json()
        self.server.calls.append(("POST", self.path, body))
        self.server.app.post(self, body)


class FakeVllm:
    """`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`, `/v1/completions` as vLLM answers them."""

    def __init__(self) -> None:
        self.loaded: dict[str, str] = {}
        self.broken: set[str] = set()  # adapter names whose completions fail

    def get(self, h: _Handler) -> None:
        h._reply(404, {"detail": "Not Found"})

    def post(self, h: _Handler, body: dict) -> None:
        if h.path == "/v1/load_lora_adapter":
            name, path = body.get("lora_name"), body.get("lora_path")
            if name in self.loaded:
                return h._reply(400, {"message": f"The lora adapter '{name}' has already been loaded."})
            if not path or not Path(path).is_dir():
                return h._reply(400, {"message": f"Loading lora {name} failed: No adapter found for {path}"})
            self.loaded[name] = path
            return h._reply(200, "Success: LoRA adapter '%s' added successfully." % name)
        if h.path == "/v1/unload_lora_adapter":
            name = body.get("lora_name")
            if name not in self.loaded:
                return h._reply(404, {"message": f"The lora adapter '{name}' cannot be found."})
            del self.loaded[name]
            return h._reply(200, f"Success: LoRA adapter '{name}' removed successfully.")
        if h.path == "/v1/completions":
            model = body.get("model")
            if model not in self.loaded:
                return h._reply(404, {"message": f"The model `{model}` does not exist."})
            if model in self.broken:
                return h._reply(500, {"message": "Internal Server Error"})
            return h._reply(200, {"choices": [{"text": " CheckStatus", "index": 0}], "model": model})
        h._reply(404, {"detail": "Not Found"})


@contextmanager
def serve(app: Any) -> Iterator[tuple[str, list]]:
    """Run `app` on a free loopback port; yields its base URL and the list of calls it received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.app, server.calls = app, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server.calls
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class FakeOpenAI:
    """`/v1/models` and `/v1/chat/completions` as an OpenAI-compatible server (llama-server, vLLM)
    answers them; `answer(prompt)` gives the assistant's text for the last user turn."""

    def __init__(self, answer: Any, model: str = "fake-model") -> None:
        self.answer, self.model = answer, model

    def get(self, h: _Handler) -> None:
        if h.path == "/v1/models":
            return h._reply(200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
        h._reply(404, {"error": {"code": 404, "message": "File Not Found"}})

    def post(self, h: _Handler, body: Any) -> None:
        if h.path == "/v1/chat/completions":
            prompt = body["messages"][-1]["content"]
            return h._reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": self.answer(prompt)}}],
                                  "model": body.get("model")})
        h._reply(404, {"error": {"code": 404, "message": "File Not Found"}})
