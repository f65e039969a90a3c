"""Resources: the data root, the base model, and where applied adapters are served."""

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ..core.storage.layout import DataLayout, default_data_root

if TYPE_CHECKING:
    from ..training.applicators import ModelApplicator
    from ..training.base_model import ResolvedModel


class SwarmData(dg.ConfigurableResource):
    """Where landing files arrive and all outputs go (`$SWARM_LEARN_DATA` unless configured)."""

    data_root: str = ""

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_root).resolve() if self.data_root else default_data_root())


class BaseModel(dg.ConfigurableResource):
    """The decision LLM to adapt: `default` (the embedded SmolLM2-135M-Instruct), a model folder, or
    a `.gguf` file (dequantised once into `cache_dir`)."""

    model: str = "default"
    cache_dir: str = ""

    def resolve(self) -> "ResolvedModel":
        from ..training.base_model import resolve_base_model

        return resolve_base_model(self.model, Path(self.cache_dir) if self.cache_dir else None)


class AdapterServing(dg.ConfigurableResource):
    """Where an applied adapter goes: `noop` (default), `vllm` with the server's url, or `llamacpp`
    (a llama-server of its own per scenario, switched blue-green; see `adapters/<scenario>/serving.json`)."""

    applicator: str = "noop"
    url: str = ""
    timeout_seconds: float = 60.0

    def make(self, base_model: str = "default") -> "ModelApplicator":
        from ..training.applicators import make_applicator

        return make_applicator(self.applicator, self.url, self.timeout_seconds, base_model)
