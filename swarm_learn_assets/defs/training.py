"""Stage 6 and 7: SFT dataset → LoRA adapter (trained in its own process via Dagster Pipes) →
applied adapter, only when the adapter beats the applied one and the base model."""

import base64
import io
import json
import sys
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from ..core.llm.gate import DEFAULT_GATE_ALPHA, DEFAULT_MIN_EXACT_MATCH, GateSettings
from ..core.llm.incremental import InitChoice, choose_init
from ..core.storage.atomic import write_json, write_text
from ..training.base_model import ResolvedModel
from ..training.dataset_store import untrainable_reason
from ..training.lora import LoraSettings
from ..training.registry import AdapterRegistry, AdapterVersion
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
    """LoRA hyperparameters (the reference LoraTrainerConfig; defaults from `LoraSettings`), the
    training objective and starting point, evaluation limits, and the gate: the adapter is applied
    only when its exact match on the trained sources reaches `min_exact_match` and a one-sided sign
    test puts it above the base model and the applied adapter at `gate_alpha`."""

    format: Literal["sft", "dpo"] = Field(
        default="sft", description="sft: the train_on sources' SFT rows; dpo: the DPO pairs (chosen vs "
                                   "rejected episode of a comparison group), DPO loss against the starting model")
    init_from: Literal["base", "applied"] = Field(
        default="applied", description="applied: continue from the applied adapter's weights on the sessions it "
                                       "has not seen plus a replay sample (falls back to base, with the reason, "
                                       "when the base model, its revision or the LoRA shape changed)")
    replay_fraction: float = Field(
        default=0.5, description="when continuing: the share of the training rows replayed from sessions the "
                                 "parent already saw (0 <= x < 1)")
    dpo_learning_rate: float = Field(
        default=5e-4, description="the learning rate when format is dpo (learning_rate is SFT's): DPO on top of "
                                  "an SFT adapter unlearns its answers at SFT's rate")
    dpo_beta: float = LoraSettings.dpo_beta
    dpo_sft_weight: float = LoraSettings.dpo_sft_weight

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
    trainable_layers: int = LoraSettings.trainable_layers
    max_train_rows: int = 160  # 0: all; a bound on training time as history grows
    max_eval_rows: int = 32
    max_new_tokens: int = 64
    min_exact_match: float = DEFAULT_MIN_EXACT_MATCH
    gate_alpha: float = DEFAULT_GATE_ALPHA

    def settings(self) -> LoraSettings:
        fields = self.model_dump(include=set(LoraSettings.__dataclass_fields__))
        rate = self.dpo_learning_rate if self.format == "dpo" else self.learning_rate
        return LoraSettings(**{**fields, "target_modules": tuple(self.target_modules), "learning_rate": rate})

    def gate(self) -> GateSettings:
        return GateSettings(self.min_exact_match, self.gate_alpha)


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


def eval_lines(scores: dict) -> str:
    """One markdown line per slice of the eval (all rows, each source, unseen contexts)."""
    def cell(part: dict | None) -> str:
        return "-" if part is None else f"{part['exact_match']:.3f} / {part['valid']:.3f}"

    slices = [("all", {"rows": scores["rows"], **scores["models"]}), *scores["by_source"].items(),
              ("unseen contexts", scores["unseen_context"])]
    return "\n".join(f"  - {name} ({part['rows']} rows): base {cell(part['base'])}, adapter {cell(part['adapter'])}, "
                     f"applied {cell(part.get('applied'))}" for name, part in slices)


def model_card(scenario: str, version: str, lineage: dict, metrics: dict, scores: dict) -> str:
    base = lineage["base_model"]
    objective = ("SFT: successful episodes' answers" if lineage["format"] == "sft"
                 else "DPO: the successful episode of a comparison group preferred over a failed one")
    return f"""---
base_model: {base['id']}
library_name: peft
tags: [lora, swarm-learn, {scenario}]
---
# swarm-learn adapter `{scenario}` {version}

LoRA adapter for the swarm's decision LLM, trained by swarm-learn on the scenario's episodes
({objective}), evaluated on held-out sessions.

* **Base model:** `{base['id']}` (revision `{base['revision'][:16]}`), loaded from `{base['path']}`
* **Data:** `{lineage['dataset']['path']}`; train split sha256 `{lineage['dataset']['train_sha256'][:16]}`
  ({lineage['dataset']['train_rows']} rows), eval split sha256 `{lineage['dataset']['eval_sha256'][:16]}`
  ({lineage['dataset']['eval_rows']} rows)
* **Sessions:** {len(lineage['train_sessions'])} for training, eval sessions: {', '.join(lineage['eval_sessions']) or 'none'}
* **Training:** {metrics['train_rows']} rows, final loss {metrics['final_loss']:.4f}, {metrics['tokens_per_second']:.0f} tokens/s,
  {metrics['seconds']:.1f} s, autocast {metrics['autocast']}; config `{json.dumps(lineage['config'], sort_keys=True)}`
* **Trained on:** {', '.join(lineage['train_on']) if lineage['format'] == 'sft' else 'DPO pairs'};
  {lineage['init']['reason']} ({metrics['new_rows']} new rows, {metrics['replay_rows']} replayed)
* **Eval** ({scores['rows']} rows of held-out sessions, greedy decoding; exact match / valid answers):
{eval_lines(scores)}
* **Gate:** {'passed' if scores['gate']['passed'] else 'failed'}: {'; '.join(scores['gate']['reasons'])}

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
    reason = untrainable_reason(manifest, config.format)
    if reason:
        context.log.warning(f"{scenario}: {reason}")
        yield dg.AssetObservation(asset_key=LORA_ADAPTER, partition=scenario, metadata={"skipped": reason})
        return
    model = base_model.resolve()
    registry = AdapterRegistry(layout.adapters_root, scenario)
    applied = registry.current
    init = choose_init(config.init_from, applied.version if applied else None,
                       applied.read("lineage.json") if applied else None,
                       {"id": model.model_id, "revision": model.revision}, config.model_dump(), config.format,
                       manifest["train_sessions"])
    context.log.info(f"{scenario}: {init.reason}")
    version = registry.new_version_dir()
    job = _training_job(config, dataset, manifest, model, version.path,
                        registry.get(init.parent).path if init.parent else None, init, applied)
    try:
        pipes_subprocess_client.run(command=[sys.executable, "-m", "swarm_learn_assets.training.train_job"],
                                    context=context, env=OFFLINE_ENV, extras={"job": job})
    except Exception as exc:  # the process failed (dagster raises DagsterPipesExecutionError)
        raise dg.Failure(description=training_failure(scenario, version.path, str(exc)),
                         metadata={"version": version.version, "adapter_path": str(version.path)}) from exc
    metrics = json.loads((version.path / "training_metrics.json").read_text())
    scores = json.loads((version.path / "eval.json").read_text())
    lineage = {
        "scenario": scenario, "version": version.version,
        "base_model": {"id": model.model_id, "revision": model.revision, "path": str(model.path)},
        # the split trained on (sft/ or dpo/); evaluation always reads the SFT eval split
        "dataset": {"path": str(dataset / config.format), "train_sha256": manifest[config.format]["train"]["sha256"],
                    "train_rows": manifest[config.format]["train"]["rows"],
                    "eval_sha256": manifest["sft"]["eval"]["sha256"], "eval_rows": manifest["sft"]["eval"]["rows"]},
        "train_on": manifest["train_on"], "format": config.format,
        "parent": init.parent, "init": {**init.to_json(), "new_rows": metrics["new_rows"],
                                        "replay_rows": metrics["replay_rows"]},
        "train_sessions": manifest["train_sessions"], "eval_sessions": manifest["eval_sessions"],
        "config": config.model_dump(),
        "eval": {k: scores[k] for k in ("rows", "models", "by_source", "unseen_context", "gate")},
        "applied_before": applied.version if applied else None,
        "run_id": context.run.run_id,
    }
    write_json(lineage, version.path / "lineage.json")
    write_text(model_card(scenario, version.version, lineage, metrics, scores), version.path / "README.md")
    yield _adapter_result(config, manifest, model.model_id, version, init, applied, metrics, scores)


def _training_job(config: LoraConfig, dataset: Path, manifest: dict, model: ResolvedModel, output: Path,
                  init_adapter: Path | None, init: InitChoice, applied: AdapterVersion | None) -> dict:
    """What the training process (`training/train_job.py`) is told: data, model, where to start, settings."""
    settings = config.settings()
    return {
        "dataset": str(dataset), "format": config.format, "model_dir": str(model.path),
        "model_id": model.model_id, "output_dir": str(output), "train_on": manifest["train_on"],
        "init_adapter": str(init_adapter) if init_adapter else None,
        "seen_sessions": list(init.seen_sessions), "replay_fraction": config.replay_fraction,
        "settings": {**settings.__dict__, "target_modules": list(settings.target_modules)},
        "max_train_rows": config.max_train_rows, "max_eval_rows": config.max_eval_rows,
        "max_new_tokens": config.max_new_tokens,
        "gate": config.gate().__dict__, "applied_dir": str(applied.path) if applied else None,
        "eval_sessions": manifest["eval_sessions"],
    }


def _adapter_result(config: LoraConfig, manifest: dict, model_id: str, version: AdapterVersion, init: InitChoice,
                    applied: AdapterVersion | None, metrics: dict, scores: dict) -> dg.MaterializeResult:
    """The version's metadata (training, evaluation per source, lineage) and the gate as a blocking check."""
    models, verdict, gate = scores["models"], scores["gate"], config.gate()
    source_scores = {f"eval_exact_match_{source}": part["adapter"]["exact_match"]
                     for source, part in scores["by_source"].items()}
    return dg.MaterializeResult(
        asset_key=LORA_ADAPTER,
        metadata={
            "version": version.version,
            "final_loss": metrics["final_loss"],
            "tokens_per_second": round(metrics["tokens_per_second"], 1),
            "training_seconds": round(metrics["seconds"], 1),
            "loss_curve": dg.MetadataValue.md(loss_curve_markdown(metrics["steps"])),
            "eval_exact_match_adapter": models["adapter"]["exact_match"],
            "eval_exact_match_base": models["base"]["exact_match"],
            "eval_exact_match_applied": models["applied"]["exact_match"] if models["applied"] else "none",
            "eval_valid_adapter": models["adapter"]["valid"],
            **source_scores,
            "eval_exact_match_unseen_context": scores["unseen_context"]["adapter"]["exact_match"],
            "eval_rows": scores["rows"],
            "eval": dg.MetadataValue.md(eval_lines(scores)),
            "gate_passed": verdict["passed"],
            "trained_on": ", ".join(manifest["train_on"]) if config.format == "sft" else "dpo pairs",
            "format": config.format,
            "init_from": init.init_from,
            "init_reason": init.reason,
            "parent_version": init.parent or "none",
            "train_rows_new": metrics["new_rows"],
            "train_rows_replayed": metrics["replay_rows"],
            "trained_sessions": dg.MetadataValue.json(manifest["train_sessions"]),
            "base_model": model_id,
            "adapter_path": dg.MetadataValue.path(str(version.path)),
        },
        check_results=[dg.AssetCheckResult(
            asset_key=LORA_ADAPTER, check_name=BEATS_CHECK.name, passed=verdict["passed"],
            description="; ".join(verdict["reasons"]),
            metadata={"adapter": models["adapter"]["exact_match"], "base": models["base"]["exact_match"],
                      "applied": "none" if applied is None else f"{applied.version}: {models['applied']['exact_match']}",
                      "p_vs_base": verdict["p_vs_base"],
                      "p_vs_applied": "none" if verdict["p_vs_applied"] is None else verdict["p_vs_applied"],
                      "min_exact_match": gate.min_exact_match, "gate_alpha": gate.alpha,
                      "version": version.version},
        )],
    )


@dg.asset(
    partitions_def=scenarios_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    deps=[LORA_ADAPTER],
    group_name="training",
    kinds={"lora"},
    description="The adapter version the swarm uses: the newest version that passed its gate, never "
                "just the newest folder on disk.",
)
def applied_adapter(
    context: dg.AssetExecutionContext, swarm_data: SwarmData, adapter_serving: AdapterServing, base_model: BaseModel
) -> dg.MaterializeResult:
    scenario = context.partition_key
    registry = AdapterRegistry(swarm_data.layout.adapters_root, scenario)
    current, candidate = registry.current, registry.newest_passed()
    if candidate is None or (current is not None and int(candidate.version[1:]) <= int(current.version[1:])):
        newest = registry.versions()[-1].version if registry.versions() else "none"
        reason = ("no version has passed its gate" if candidate is None
                  else f"no version newer than the applied {current.version} has passed its gate")
        context.log.info(f"{scenario}: nothing applied: {reason} (newest version: {newest})")
        return dg.MaterializeResult(metadata={
            "version": current.version if current else "none", "changed": False, "reason": reason,
            "newest_version": newest, "history": dg.MetadataValue.json(registry.history()),
        })
    applicator = adapter_serving.make(base_model.model)
    previous = registry.apply(candidate.version, applicator)
    context.log.info(f"{scenario}: applied {candidate.version} via {applicator.name} (previous: {previous or 'none'})")
    return dg.MaterializeResult(metadata={
        "version": candidate.version,
        "changed": True,
        "previous": previous or "none",
        "applicator": applicator.name,
        "exact_match": candidate.exact_match,
        "history": dg.MetadataValue.json(registry.history()),
        "current_file": dg.MetadataValue.path(str(registry.root / "current")),
    })
