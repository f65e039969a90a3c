"""Training benchmark: one adapter per scenario on the default base model, against a plain loop.

Not part of the test suite. It simulates scenarios × sessions, builds the datasets, and per
scenario trains twice on the same rows with the same hyperparameters, each in a fresh process:

* swarm-learn's `train_lora` (+ `evaluate_adapter`: base vs adapter on the held-out sessions);
* a plain `transformers.Trainer` + `peft` loop (padding collator, same masking), training only.

It prints per scenario: wall time, tokens/s, peak RSS, eval exact match of base and adapter, and
checks the targets: adapter exact match ≥ 0.9 with base ≤ 0.1; tokens/s ≥ the plain loop's; under
10 minutes per scenario.

    python benchmarks/training.py --json-out /tmp/training.json
    python benchmarks/training.py --scenarios 1 --sessions 10 --epochs 1 --max-eval-rows 16   # quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_EM_ADAPTER = 0.9
TARGET_EM_BASE = 0.1
TARGET_SECONDS = 600.0

# Runs in a fresh interpreter so that each training's peak RSS is its own. argv: job json, result json.
OURS = """
import json, resource, sys, time
from pathlib import Path
from datasets import load_from_disk
from swarm_learn_assets.training.lora import LoraSettings, evaluate_adapter, train_lora
job = json.loads(Path(sys.argv[1]).read_text())
ds = load_from_disk(job["dataset"])
start = time.perf_counter()
result = train_lora(Path(job["model_dir"]), job["model_id"], list(ds["train"]), LoraSettings(**job["settings"]),
                    Path(job["out"]), log=lambda m: print(m, file=sys.stderr, flush=True))
train_wall = time.perf_counter() - start
scores = evaluate_adapter(Path(job["model_dir"]), Path(job["out"]), list(ds["eval"])[: job["max_eval_rows"]],
                          job["max_new_tokens"])
Path(sys.argv[2]).write_text(json.dumps({
    "train_seconds": result.seconds, "train_wall": train_wall, "tokens": result.tokens,
    "tokens_per_second": result.tokens_per_second, "final_loss": result.final_loss, "autocast": result.autocast,
    "total_seconds": time.perf_counter() - start, "eval": scores,
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

PLAIN = """
import json, resource, sys, time
from pathlib import Path
import torch
from datasets import Dataset, load_from_disk
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments
from swarm_learn_assets.training.lora import encode_example
job = json.loads(Path(sys.argv[1]).read_text())
s = job["settings"]
tok = AutoTokenizer.from_pretrained(job["model_dir"])
rows = list(load_from_disk(job["dataset"])["train"])
enc = [encode_example(tok, r["messages"], s["max_seq_length"]) for r in rows]
data = Dataset.from_list([{"input_ids": i, "attention_mask": [1] * len(i), "labels": l} for i, l in enc])
model = AutoModelForCausalLM.from_pretrained(job["model_dir"], torch_dtype=torch.float32)
model = get_peft_model(model, LoraConfig(r=s["rank"], lora_alpha=s["alpha"], lora_dropout=s["dropout"],
                                         target_modules=list(s["target_modules"]), task_type="CAUSAL_LM"))
args = TrainingArguments(output_dir=job["out"], per_device_train_batch_size=s["batch_size"],
                         gradient_accumulation_steps=s["gradient_accumulation"], learning_rate=s["learning_rate"],
                         num_train_epochs=s["epochs"], logging_steps=10, save_strategy="no", report_to=[],
                         seed=s["seed"], use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                         bf16=job["bf16"])
trainer = Trainer(model=model, args=args, train_dataset=data,
                  data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
start = time.perf_counter()
out = trainer.train()
seconds = time.perf_counter() - start
tokens = sum(len(i) for i, _ in enc) * s["epochs"]
Path(sys.argv[2]).write_text(json.dumps({
    "train_seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
    "final_loss": out.training_loss, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def run_child(code: str, job: dict[str, Any], workdir: Path, name: str) -> dict[str, Any]:
    job_file, result_file = workdir / f"{name}-job.json", workdir / f"{name}-result.json"
    job_file.write_text(json.dumps(job))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(job_file), str(result_file)], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**json.loads(result_file.read_text()), "wall_seconds": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train one adapter per scenario on the default base model, vs a plain loop.")
    p.add_argument("--scenarios", type=int, default=3)
    p.add_argument("--sessions", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--gradient-accumulation", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--max-eval-rows", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--plain-scenarios", type=int, default=None,
                   help="run the plain Trainer loop for only the first N scenarios (default: all)")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)

    from swarm_learn_assets.core.layout import DataLayout
    from swarm_learn_assets.core.stages import process_sessions
    from swarm_learn_assets.simulate import simulate
    from swarm_learn_assets.training.base_model import resolve_base_model
    from swarm_learn_assets.training.dataset_store import build_scenario_datasets
    from swarm_learn_assets.training.lora import LoraSettings

    work = Path(tempfile.mkdtemp(prefix="swarm-learn-train-bench-"))
    root = work / "data"
    print(f"simulating {args.scenarios} x {args.sessions} sessions into {root}", file=sys.stderr)
    simulate(root, scenarios=args.scenarios, sessions=args.sessions, seed=args.seed)
    layout = DataLayout(root)
    files, _ = layout.scan_landing()
    process_sessions(layout, [f.key for f in files])
    started = time.perf_counter()
    model = resolve_base_model()
    print(f"base model {model.model_id} at {model.path} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    settings = LoraSettings(epochs=args.epochs, batch_size=args.batch_size,
                            gradient_accumulation=args.gradient_accumulation, learning_rate=args.learning_rate)
    settings_json = {**settings.__dict__, "target_modules": list(settings.target_modules)}
    report: dict[str, Any] = {"base_model": model.model_id, "settings": settings_json, "scenarios": {}}
    from swarm_learn_assets.training.lora import autocast_dtype

    bf16 = autocast_dtype("cpu") is not None  # give the plain loop the same bf16 the hardware offers
    for index, scenario in enumerate(sorted({f.scenario for f in files})):
        built = build_scenario_datasets(layout, scenario)
        job = {"dataset": str(built.path / "sft"), "model_dir": str(model.path), "model_id": model.model_id,
               "settings": settings_json, "max_eval_rows": args.max_eval_rows, "max_new_tokens": args.max_new_tokens,
               "bf16": bf16}
        print(f"{scenario}: {built.manifest['sft']['train']['rows']} train rows, "
              f"{built.manifest['sft']['eval']['rows']} eval rows", file=sys.stderr)
        ours = run_child(OURS, {**job, "out": str(work / "adapters" / scenario)}, work, f"{scenario}-ours")
        skip_plain = args.plain_scenarios is not None and index >= args.plain_scenarios
        plain = None if skip_plain else run_child(PLAIN, {**job, "out": str(work / "plain" / scenario)}, work,
                                                        f"{scenario}-plain")
        report["scenarios"][scenario] = {"rows": built.manifest["sft"], "ours": ours, "plain": plain}
        print_row(scenario, ours, plain)
    targets = check_targets(report)
    report["targets"] = targets
    print(json.dumps(targets, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(t["met"] for t in targets.values()) else 1


def print_row(scenario: str, ours: dict, plain: dict | None) -> None:
    ev = ours["eval"]
    line = (f"{scenario:<20} ours: train {ours['train_seconds']:6.1f} s, {ours['tokens_per_second']:7.0f} tok/s, "
            f"total {ours['wall_seconds']:6.1f} s, RSS {ours['peak_rss'] / 2**20:5.0f} MiB, "
            f"EM base {ev['base']['exact_match']:.3f} adapter {ev['adapter']['exact_match']:.3f} "
            f"(valid {ev['adapter']['valid_sequence']:.3f}, {ev['rows']} rows)")
    if plain is not None:
        line += (f"\n{'':<20} plain Trainer: train {plain['train_seconds']:6.1f} s, {plain['tokens_per_second']:7.0f} tok/s,"
                 f" RSS {plain['peak_rss'] / 2**20:5.0f} MiB; ours/plain {ours['tokens_per_second'] / plain['tokens_per_second']:.2f}x")
    for name, part in ev.get("by_learn_model", {}).items():
        line += (f"\n{'':<20}   {name}: {part['rows']} rows, EM base {part['base']['exact_match']:.3f} "
                 f"adapter {part['adapter']['exact_match']:.3f}")
    print(line, flush=True)


def check_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for scenario, r in report["scenarios"].items():
        ev = r["ours"]["eval"]
        out[f"{scenario}: adapter EM >= {TARGET_EM_ADAPTER}, base <= {TARGET_EM_BASE}"] = {
            "value": [ev["adapter"]["exact_match"], ev["base"]["exact_match"]],
            "met": ev["adapter"]["exact_match"] >= TARGET_EM_ADAPTER and ev["base"]["exact_match"] <= TARGET_EM_BASE}
        if r["plain"] is not None:
            ratio = r["ours"]["tokens_per_second"] / r["plain"]["tokens_per_second"]
            out[f"{scenario}: tokens/s >= plain loop"] = {"value": ratio, "met": ratio >= 1.0}
        out[f"{scenario}: under {TARGET_SECONDS:.0f} s"] = {"value": r["ours"]["wall_seconds"],
                                                           "met": r["ours"]["wall_seconds"] < TARGET_SECONDS}
    return out


if __name__ == "__main__":
    sys.exit(main())
