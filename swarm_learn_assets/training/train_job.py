"""The training process: started by the `lora_adapter` asset through Dagster Pipes.

Training runs in its own process so that a crash or an out-of-memory kill fails the step with its
message instead of taking the run worker down; its log lines (progress bar included) stream back
to the Dagster run. Inputs come as the Pipes extra `job`; outputs are files in the version folder.

    python -m swarm_learn_assets.training.train_job   (only under Dagster Pipes)
"""

from __future__ import annotations

import gc
import signal
import warnings
from pathlib import Path
from typing import Any

from ..core.llm.dataset_rows import rows_of_sources, sample_rows
from ..core.llm.gate import GateSettings
from ..core.llm.incremental import select_training_rows
from ..core.llm.training_data import DPO, SFT
from ..core.storage.atomic import write_json
from .lora import LoraSettings, evaluate_models, train_lora


def run_job(job: dict[str, Any], log: Any) -> dict[str, Any]:
    """Train on the training rows (the `train_on` sources of the SFT split, or the DPO pairs), new
    sessions plus replay when continuing from a parent adapter; score base, adapter and applied
    adapter on a capped sample of the trained sources' SFT eval rows; write the metrics and `eval.json`."""
    from datasets import load_from_disk

    dataset = Path(job["dataset"])
    train_format = job.get("format", SFT)
    sft = load_from_disk(str(dataset / SFT))
    if train_format == DPO:
        candidates = load_from_disk(str(dataset / DPO))["train"].to_list()
        evaluated = sorted({r["source"] for r in candidates}) or list(job["train_on"])
    else:
        candidates = rows_of_sources(sft["train"].to_list(), job["train_on"])
        evaluated = list(job["train_on"])
    init_adapter = Path(job["init_adapter"]) if job.get("init_adapter") else None
    picked = select_training_rows(candidates, job.get("seen_sessions") or [],
                                  job.get("replay_fraction", 0.0) if init_adapter else 0.0, job.get("max_train_rows") or 0)
    if init_adapter is not None and not picked.new_rows:
        log(f"the new sessions hold no {train_format} rows: continuing from {init_adapter.name} on all rows")
        picked = select_training_rows(candidates, [], 0.0, job.get("max_train_rows") or 0)
    eval_rows = sample_rows(rows_of_sources(sft["eval"].to_list(), evaluated), job["max_eval_rows"])
    out = Path(job["output_dir"])
    settings = LoraSettings(**{**job["settings"], "target_modules": tuple(job["settings"]["target_modules"])})
    log(f"training ({train_format}) on {len(picked.rows)} rows ({picked.new_rows} new, {picked.replay_rows} replayed"
        f"; {', '.join(evaluated)}) from {dataset} with base {job['model_id']}"
        + (f", starting from {init_adapter}" if init_adapter else ", starting from a fresh LoRA"))
    result = train_lora(Path(job["model_dir"]), job["model_id"], picked.rows, settings, out, log=log,
                        objective=train_format, init_adapter=init_adapter)
    gc.collect()  # the trained model holds reference cycles (PEFT hooks): free it before evaluation loads one
    write_json({**result.to_json(), "new_rows": picked.new_rows, "replay_rows": picked.replay_rows},
               out / "training_metrics.json")
    applied = Path(job["applied_dir"]) if job.get("applied_dir") else None
    log(f"trained in {result.seconds:.1f} s at {result.tokens_per_second:.0f} tokens/s; evaluating base, adapter"
        f"{' and applied ' + applied.name if applied else ''} on {len(eval_rows)} rows")
    scores = evaluate_models(Path(job["model_dir"]), out, eval_rows, applied, GateSettings(**job["gate"]),
                             job["max_new_tokens"], log=log)
    scores["eval_sessions"] = job["eval_sessions"]
    scores["applied_version"] = applied.name if applied else None
    write_json(scores, out / "eval.json")
    models = scores["models"]
    log(f"exact match: base {models['base']['exact_match']:.3f}, adapter {models['adapter']['exact_match']:.3f}"
        + (f", applied {models['applied']['exact_match']:.3f}" if models["applied"] else "")
        + f"; gate {'passed' if scores['gate']['passed'] else 'failed'}: {'; '.join(scores['gate']['reasons'])}")
    return {"final_loss": result.final_loss, "tokens_per_second": result.tokens_per_second,
            "gate_passed": scores["gate"]["passed"]}


ERROR_FILE = "error.txt"  # the cause of a failed training, for the step's failure message


def _die_with_parent() -> None:
    """Linux: be killed when the run process that started the training dies (a crash, SIGKILL),
    instead of training on as an orphan that writes into a version folder nobody will finish."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    from dagster_pipes import open_dagster_pipes
    from transformers.utils import logging as transformers_logging

    _die_with_parent()
    transformers_logging.disable_progress_bar()  # the run's log gets the training's own progress lines
    # raised by peft's own call into transformers, nothing a user can act on
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    with open_dagster_pipes() as pipes:
        job = pipes.get_extra("job")
        try:
            run_job(job, pipes.log.info)  # what it measured is in the version folder's files
        except Exception as exc:
            (Path(job["output_dir"]) / ERROR_FILE).write_text(f"{type(exc).__name__}: {exc}"[:2000])
            raise


if __name__ == "__main__":
    main()
