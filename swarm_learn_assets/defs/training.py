"""Stage 6 and 7: SFT dataset → LoRA adapter (trained in its own process via Dagster Pipes) →
applied adapter, only when the adapter beats the applied one and the base model."""

import base64
import io
import json
import sys
from pathlib import Path

import dagster as dg

from ..core.atomic import write_json, write_text
from ..training.lora import LoraSettings
from ..training.registry import AdapterRegistry
from ..training.train_job import ERROR_FILE
from .datasets import SFT_DATASET
from .partitions import scenarios_partitions
from .resources import AdapterServing, BaseModel, SwarmData

LORA_ADAPTER = dg.AssetKey("lora_adapter")
BEATS_CHECK = dg.AssetCheckSpec("adapter_beats_applied_and_base", asset=LORA_ADAPTER, blocking=True)
TRAINING_POOL = "training"
# The training process reads local files only; these make any accidental hub lookup fail fast.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class LoraConfig(dg.Config):
    """LoRA hyperparameters (the reference LoraTrainerConfig; defaults from `LoraSettings`) and
    evaluation limits."""

    rank: int = LoraSettings.rank
    alpha: float = LoraSettings.alpha
    dropout: float = LoraSettings.dropout
    target_modules: list[str] = list(LoraSettings.target_modules)
    epochs: int = LoraSettings.epochs
    batch_size: int = LoraSettings.batch_size
    gradient_accumulation: int = LoraSettings.gradient_accumulation
    learning_rate: float = LoraSettings.learning_rate
    max_seq_length: int = LoraSettings.max_seq_length
    seed: int = LoraSettings.seed
    max_eval_rows: int = 200
    max_new_tokens: int = 64

    def settings(self) -> LoraSettings:
        return LoraSettings(self.rank, self.alpha, self.dropout, tuple(self.target_modules), self.epochs,
                            self.batch_size, self.gradient_accumulation, self.learning_rate, self.max_seq_length,
                            self.seed)


def loss_curve_markdown(steps: list[dict]) -> str:
    """The loss per step as a PNG inside markdown (what the Dagster UI shows as a picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    ax.plot([s["step"] for s in steps], [s["loss"] for s in steps])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return f"![loss curve](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def training_failure(scenario: str, version_dir: Path, error: str) -> str:
    """The training process's own cause, or what its exit code says (killed: probably out of memory)."""
    cause_file = version_dir / ERROR_FILE
    if cause_file.is_file():
        cause = cause_file.read_text().strip()
    elif "code -9" in error or "code 137" in error:
        cause = "the training process was killed (SIGKILL), most likely out of memory; lower batch_size or max_seq_length"
    else:
        cause = error
    return f"training the {scenario} adapter ({version_dir.name}) failed: {cause}"


def model_card(scenario: str, version: str, lineage: dict, metrics: dict, scores: dict) -> str:
    base = lineage["base_model"]
    return f"""---
base_model: {base['id']}
library_name: peft
tags: [lora, swarm-learn, {scenario}]
---
# swarm-learn adapter `{scenario}` {version}

LoRA adapter for the swarm's decision LLM, trained by swarm-learn on the scenario's successful
episodes (SFT), evaluated on held-out sessions.

* **Base model:** `{base['id']}` (revision `{base['revision'][:16]}`), loaded from `{base['path']}`
* **Data:** `{lineage['dataset']['path']}`; train split sha256 `{lineage['dataset']['train_sha256'][:16]}`
  ({lineage['dataset']['train_rows']} rows), eval split sha256 `{lineage['dataset']['eval_sha256'][:16]}`
  ({lineage['dataset']['eval_rows']} rows)
* **Sessions:** {len(lineage['train_sessions'])} for training, eval sessions: {', '.join(lineage['eval_sessions']) or 'none'}
* **Training:** {metrics['train_rows']} rows, final loss {metrics['final_loss']:.4f}, {metrics['tokens_per_second']:.0f} tokens/s,
  {metrics['seconds']:.1f} s, autocast {metrics['autocast']}; config `{json.dumps(lineage['config'], sort_keys=True)}`
* **Eval** ({scores['rows']} rows, greedy decoding, exact match of the action sequence):
  base {scores['base']['exact_match']:.3f} / adapter {scores['adapter']['exact_match']:.3f};
  valid action lists: base {scores['base']['valid_sequence']:.3f} / adapter {scores['adapter']['valid_sequence']:.3f}

Serve it with vLLM (`--enable-lora`, runtime loading) or convert it with llama.cpp's
`convert_lora_to_gguf.py` and start `llama-server --lora <file>`.
"""


# A multi-asset only so that the adapter and its check may both be left out (too few rows: skipped
# with a reason, not failed); Dagster makes check outputs optional only for subsettable steps.
@dg.multi_asset(
    name="lora_adapter",
    specs=[dg.AssetSpec(
        LORA_ADAPTER, deps=[SFT_DATASET], group_name="training", kinds={"pytorch", "huggingface"}, skippable=True,
        description="A LoRA adapter trained on the scenario's SFT train split, evaluated against the base model.",
    )],
    check_specs=[BEATS_CHECK],
    partitions_def=scenarios_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    pool=TRAINING_POOL,
    can_subset=True,
)
def lora_adapter(
    context: dg.AssetExecutionContext,
    config: LoraConfig,
    swarm_data: SwarmData,
    base_model: BaseModel,
    pipes_subprocess_client: dg.PipesSubprocessClient,
):
    layout = swarm_data.layout
    scenario = context.partition_key
    dataset = layout.dataset_dir(scenario)
    manifest = json.loads((dataset / "manifest.json").read_text())
    if not manifest["trainable"]:
        reason = (f"skipped: {manifest['sft']['train']['rows']} SFT training rows, fewer than the configured "
                  f"minimum of {manifest['min_train_rows']}")
        context.log.warning(f"{scenario}: {reason}")
        yield dg.AssetObservation(asset_key=LORA_ADAPTER, partition=scenario, metadata={"skipped": reason})
        return
    model = base_model.resolve()
    registry = AdapterRegistry(layout.adapters_root, scenario)
    applied = registry.current
    version = registry.new_version_dir()
    settings = config.settings()
    try:
        pipes_subprocess_client.run(
            command=[sys.executable, "-m", "swarm_learn_assets.training.train_job"],
            context=context,
            env=OFFLINE_ENV,
            extras={"job": {
                "dataset": str(dataset / "sft"), "model_dir": str(model.path), "model_id": model.model_id,
                "output_dir": str(version.path),
                "settings": {**settings.__dict__, "target_modules": list(settings.target_modules)},
                "max_eval_rows": config.max_eval_rows, "max_new_tokens": config.max_new_tokens,
                "eval_sessions": manifest["eval_sessions"],
            }},
        )
    except Exception as exc:  # the process failed (dagster raises DagsterPipesExecutionError)
        raise dg.Failure(description=training_failure(scenario, version.path, str(exc)),
                         metadata={"version": version.version, "adapter_path": str(version.path)}) from exc
    metrics = json.loads((version.path / "training_metrics.json").read_text())
    scores = json.loads((version.path / "eval.json").read_text())
    lineage = {
        "scenario": scenario, "version": version.version,
        "base_model": {"id": model.model_id, "revision": model.revision, "path": str(model.path)},
        "dataset": {"path": str(dataset), "train_sha256": manifest["sft"]["train"]["sha256"],
                    "eval_sha256": manifest["sft"]["eval"]["sha256"], "train_rows": manifest["sft"]["train"]["rows"],
                    "eval_rows": manifest["sft"]["eval"]["rows"]},
        "train_sessions": manifest["train_sessions"], "eval_sessions": manifest["eval_sessions"],
        "config": config.model_dump(), "eval": {k: scores[k] for k in ("rows", "base", "adapter")},
        "run_id": context.run.run_id,
    }
    write_json(lineage, version.path / "lineage.json")
    write_text(model_card(scenario, version.version, lineage, metrics, scores), version.path / "README.md")
    adapter, base = scores["adapter"]["exact_match"], scores["base"]["exact_match"]
    applied_score = applied.exact_match if applied is not None else None
    beats = adapter > base and (applied_score is None or adapter > applied_score)
    yield dg.MaterializeResult(
        asset_key=LORA_ADAPTER,
        metadata={
            "version": version.version,
            "final_loss": metrics["final_loss"],
            "tokens_per_second": round(metrics["tokens_per_second"], 1),
            "training_seconds": round(metrics["seconds"], 1),
            "loss_curve": dg.MetadataValue.md(loss_curve_markdown(metrics["steps"])),
            "eval_exact_match_adapter": adapter,
            "eval_exact_match_base": base,
            "eval_valid_sequence_adapter": scores["adapter"]["valid_sequence"],
            "eval_rows": scores["rows"],
            "trained_sessions": dg.MetadataValue.json(manifest["train_sessions"]),
            "base_model": model.model_id,
            "adapter_path": dg.MetadataValue.path(str(version.path)),
        },
        check_results=[dg.AssetCheckResult(
            asset_key=LORA_ADAPTER, check_name=BEATS_CHECK.name, passed=beats,
            metadata={"adapter": adapter, "base": base,
                      "applied": "none" if applied is None else f"{applied.version}: {applied_score}",
                      "version": version.version},
        )],
    )


@dg.asset(
    partitions_def=scenarios_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    deps=[LORA_ADAPTER],
    group_name="training",
    kinds={"lora"},
    description="The adapter version the swarm uses; moved only after the blocking check passed.",
)
def applied_adapter(
    context: dg.AssetExecutionContext, swarm_data: SwarmData, adapter_serving: AdapterServing
) -> dg.MaterializeResult:
    scenario = context.partition_key
    registry = AdapterRegistry(swarm_data.layout.adapters_root, scenario)
    newest = registry.versions()[-1]
    applicator = adapter_serving.make()
    previous = registry.apply(newest.version, applicator)
    context.log.info(f"{scenario}: applied {newest.version} via {applicator.name} (previous: {previous or 'none'})")
    return dg.MaterializeResult(metadata={
        "version": newest.version,
        "previous": previous or "none",
        "applicator": applicator.name,
        "exact_match": newest.exact_match,
        "history": dg.MetadataValue.json(registry.history()),
        "current_file": dg.MetadataValue.path(str(registry.root / "current")),
    })
