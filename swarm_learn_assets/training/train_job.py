"""The training process: started by the `lora_adapter` asset through Dagster Pipes.

Training runs in its own process so that a crash or an out-of-memory kill fails the step with its
message instead of taking the run worker down; its log lines (progress bar included) stream back
to the Dagster run. Inputs come as the Pipes extra `job`; outputs are files in the version folder.

    python -m swarm_learn_assets.training.train_job   (only under Dagster Pipes)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.atomic import write_json
from .lora import LoraSettings, evaluate_adapter, train_lora


def run_job(job: dict[str, Any], log: Any) -> dict[str, Any]:
    """Train on the dataset's train split, evaluate base vs adapter on its eval split."""
    from datasets import load_from_disk

    dataset = load_from_disk(job["dataset"])
    train_rows, eval_rows = list(dataset["train"]), list(dataset["eval"])[: job["max_eval_rows"]]
    out = Path(job["output_dir"])
    settings = LoraSettings(**{**job["settings"], "target_modules": tuple(job["settings"]["target_modules"])})
    log(f"training on {len(train_rows)} rows from {job['dataset']} with base {job['model_id']}")
    result = train_lora(Path(job["model_dir"]), job["model_id"], train_rows, settings, out, log=log)
    write_json(result.to_json(), out / "training_metrics.json")
    log(f"trained in {result.seconds:.1f} s at {result.tokens_per_second:.0f} tokens/s; evaluating on {len(eval_rows)} rows")
    scores = evaluate_adapter(Path(job["model_dir"]), out, eval_rows, job["max_new_tokens"]) if eval_rows else {
        "rows": 0, "base": {"exact_match": 0.0, "valid_sequence": 0.0},
        "adapter": {"exact_match": 0.0, "valid_sequence": 0.0}, "examples": [],
    }
    scores["eval_sessions"] = job["eval_sessions"]
    write_json(scores, out / "eval.json")
    log(f"exact match: base {scores['base']['exact_match']:.3f}, adapter {scores['adapter']['exact_match']:.3f}")
    return {"final_loss": result.final_loss, "tokens_per_second": result.tokens_per_second}


ERROR_FILE = "error.txt"  # the cause of a failed training, for the step's failure message


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        job = pipes.get_extra("job")
        try:
            summary = run_job(job, pipes.log.info)
        except Exception as exc:
            (Path(job["output_dir"]) / ERROR_FILE).write_text(f"{type(exc).__name__}: {exc}"[:2000])
            raise
        pipes.report_custom_message(json.dumps(summary))


if __name__ == "__main__":
    main()
