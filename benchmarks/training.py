"""Training benchmark: one adapter per scenario on the default base model, against a plain loop.

Not part of the test suite. It simulates scenarios × sessions, builds the datasets, and per scenario
runs, each in a fresh process so that its peak RSS is its own:

* swarm-learn's training process exactly as `lora_adapter` runs it (`train_job.run_job`: train on
  the `train_on` rows, then base vs adapter on the held-out sessions' rows, gate);
* a plain `transformers.Trainer` + `peft` loop with the same LoRA (same layers and modules), rows and
  hyperparameters (padding collator, same label masking), training only.

It prints per scenario and source: rows, exact match of base / adapter / adapter on unseen contexts,
tokens/s against the plain loop, wall time and peak RSS, and checks the targets:
task_decision ≥ 0.9 with base ≤ 0.1 and ≥ 0.8 on unseen contexts; llm_decision ≥ 0.9; tokens/s ≥ 1.0×
the plain loop; peak RSS ≤ 2 GB; training + evaluation ≤ 3 minutes per scenario.

    python benchmarks/training.py --json-out /tmp/training.json
    python benchmarks/training.py --scenarios 1 --plain-scenarios 0      # one scenario, no plain loop

`--objectives` runs the other comparison, per scenario on the same held-out `task_decision` rows:
SFT, DPO from the base, SFT then DPO (continuing from the SFT adapter), TRL's `DPOTrainer` on the
same pairs and LoRA (when `trl` is installed; it is not a dependency), and incremental training — a
first round on the earlier sessions, then a second round that continues from it on the new
sessions plus replay, against the same second round trained from scratch on all rows:

    python benchmarks/training.py --objectives --json-out /tmp/objectives.json
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

TARGETS = {"task_em": 0.9, "task_base": 0.1, "task_unseen": 0.8, "llm_em": 0.9, "speed_ratio": 1.0,
           "rss_bytes": 2 * 1024**3, "seconds": 180.0}

# argv: job json, result json. The job is what `lora_adapter` hands the training process.
OURS = """
import json, resource, sys, time
from pathlib import Path
from swarm_learn_assets.training.train_job import run_job
job = json.loads(Path(sys.argv[1]).read_text())
start = time.perf_counter()
run_job(job, lambda m: print(m, file=sys.stderr, flush=True))
out = Path(job["output_dir"])
Path(sys.argv[2]).write_text(json.dumps({
    "seconds": time.perf_counter() - start, "metrics": json.loads((out / "training_metrics.json").read_text()),
    "eval": json.loads((out / "eval.json").read_text()),
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

PLAIN = """
import json, resource, sys, time
from pathlib import Path
import torch
from datasets import Dataset, load_from_disk
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments
from swarm_learn_assets.core.llm.dataset_rows import rows_of_sources, sample_rows
from swarm_learn_assets.training.lora import encode_example, first_adapted_layer
job = json.loads(Path(sys.argv[1]).read_text())
s = job["settings"]
tok = AutoTokenizer.from_pretrained(job["model_dir"])
rows = rows_of_sources(load_from_disk(job["dataset"] + "/sft")["train"].to_list(), job["train_on"])
if job["max_train_rows"]:
    rows = sample_rows(rows, job["max_train_rows"])
enc = [encode_example(tok, r["messages"], s["max_seq_length"]) for r in rows]
data = Dataset.from_list([{"input_ids": i, "attention_mask": [1] * len(i), "labels": l} for i, l in enc])
model = AutoModelForCausalLM.from_pretrained(job["model_dir"], dtype=torch.float32)
layers = model.config.num_hidden_layers
first = first_adapted_layer(layers, s["trainable_layers"])
model = get_peft_model(model, LoraConfig(r=s["rank"], lora_alpha=s["alpha"], lora_dropout=s["dropout"],
                                         target_modules=list(s["target_modules"]), task_type="CAUSAL_LM",
                                         layers_to_transform=list(range(first, layers)) if first else None))
args = TrainingArguments(output_dir=job["output_dir"], per_device_train_batch_size=s["batch_size"],
                         gradient_accumulation_steps=s["gradient_accumulation"], learning_rate=s["learning_rate"],
                         num_train_epochs=s["epochs"], logging_steps=10, save_strategy="no", report_to=[],
                         seed=s["seed"], use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=data,
                  data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
start = time.perf_counter()
out = trainer.train()
seconds = time.perf_counter() - start
tokens = sum(len(i) for i, _ in enc) * s["epochs"]
Path(sys.argv[2]).write_text(json.dumps({
    "seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds, "final_loss": out.training_loss,
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


# argv: job json, result json. TRL's DPOTrainer on the job's DPO pairs with the same LoRA and
# hyperparameters, then the same evaluation as ours.
TRL_DPO = """
import json, resource, sys, time
from pathlib import Path
import torch
from datasets import Dataset, load_from_disk
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
from swarm_learn_assets.core.llm.dataset_rows import rows_of_sources, sample_rows
from swarm_learn_assets.core.llm.gate import GateSettings
from swarm_learn_assets.training.lora import evaluate_models, first_adapted_layer
job = json.loads(Path(sys.argv[1]).read_text())
s = job["settings"]
tok = AutoTokenizer.from_pretrained(job["model_dir"])
pairs = load_from_disk(job["dataset"] + "/dpo")["train"].to_list()
data = Dataset.from_list([{"prompt": [{"role": "system", "content": r["system"]}, {"role": "user", "content": r["prompt"]}],
                           "chosen": [{"role": "assistant", "content": r["chosen"]}],
                           "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in pairs])
model = AutoModelForCausalLM.from_pretrained(job["model_dir"], dtype=torch.float32)
layers = model.config.num_hidden_layers
first = first_adapted_layer(layers, s["trainable_layers"])
peft = LoraConfig(r=s["rank"], lora_alpha=s["alpha"], lora_dropout=s["dropout"], target_modules=list(s["target_modules"]),
                  task_type="CAUSAL_LM", layers_to_transform=list(range(first, layers)) if first else None)
args = DPOConfig(output_dir=job["output_dir"], per_device_train_batch_size=s["batch_size"], beta=s["dpo_beta"],
                 gradient_accumulation_steps=s["gradient_accumulation"], learning_rate=s["learning_rate"],
                 num_train_epochs=s["epochs"], logging_steps=10, save_strategy="no", report_to=[], seed=s["seed"],
                 use_cpu=not torch.cuda.is_available(), bf16=False, dataloader_num_workers=0,
                 max_length=s["max_seq_length"],
                 # our dpo_sft_weight: TRL's sigmoid (DPO) loss plus its "sft" loss on the chosen reply
                 **({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, s["dpo_sft_weight"]]}
                    if s["dpo_sft_weight"] else {}))
trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=peft)
start = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - start
out = Path(job["output_dir"])
trainer.model.save_pretrained(out)
tok.save_pretrained(out)
sft = load_from_disk(job["dataset"] + "/sft")
rows = sample_rows(rows_of_sources(sft["eval"].to_list(), ["task_decision"]), job["max_eval_rows"])
scores = evaluate_models(Path(job["model_dir"]), out, rows, None, GateSettings(**job["gate"]), job["max_new_tokens"],
                         log=lambda m: None)
Path(sys.argv[2]).write_text(json.dumps({
    "seconds": seconds, "metrics": {"seconds": seconds, "train_rows": len(pairs), "new_rows": len(pairs), "replay_rows": 0},
    "eval": scores, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
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
    from swarm_learn_assets.defs.training import LoraConfig

    defaults = LoraConfig()
    p = argparse.ArgumentParser(description="Train one adapter per scenario on the default base model, vs a plain loop.")
    p.add_argument("--scenarios", type=int, default=3)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    p.add_argument("--trainable-layers", type=int, default=defaults.trainable_layers)
    p.add_argument("--max-eval-rows", type=int, default=defaults.max_eval_rows)
    p.add_argument("--max-train-rows", type=int, default=defaults.max_train_rows)
    p.add_argument("--plain-scenarios", type=int, default=None,
                   help="run the plain Trainer loop for only the first N scenarios (default: all)")
    p.add_argument("--objectives", action="store_true",
                   help="compare SFT, DPO, SFT then DPO, TRL DPO and incremental training instead")
    p.add_argument("--dpo-learning-rate", type=float, default=None,
                   help="--objectives: learning rate of the DPO runs (default: the config's dpo_learning_rate)")
    p.add_argument("--dpo-sft-weight", type=float, default=defaults.dpo_sft_weight)
    p.add_argument("--round1-sessions", type=int, default=None,
                   help="--objectives: sessions of the first incremental round (default: 3/4 of --sessions)")
    p.add_argument("--trl-scenarios", type=int, default=1,
                   help="--objectives: run TRL's DPOTrainer for the first N scenarios (needs trl installed)")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if args.objectives:
        return objectives(args, defaults)

    from swarm_learn_assets.core.llm.dataset_rows import DEFAULT_TRAIN_ON
    from swarm_learn_assets.core.stages.session_batch import process_sessions
    from swarm_learn_assets.core.storage.layout import DataLayout
    from swarm_learn_assets.simulate import simulate
    from swarm_learn_assets.training.base_model import resolve_base_model
    from swarm_learn_assets.training.dataset_store import build_scenario_datasets

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
    config = defaults.model_copy(update={"epochs": args.epochs, "batch_size": args.batch_size,
                                         "learning_rate": args.learning_rate,
                                         "trainable_layers": args.trainable_layers})
    settings = config.settings()
    settings_json = {**settings.__dict__, "target_modules": list(settings.target_modules)}
    report: dict[str, Any] = {"base_model": model.model_id, "settings": settings_json, "scenarios": {}}
    for index, scenario in enumerate(sorted({f.scenario for f in files})):
        built = build_scenario_datasets(layout, scenario)
        job = {"dataset": str(built.path), "model_dir": str(model.path), "model_id": model.model_id,
               "train_on": list(DEFAULT_TRAIN_ON), "settings": settings_json, "max_eval_rows": args.max_eval_rows,
               "max_train_rows": args.max_train_rows,
               "max_new_tokens": config.max_new_tokens, "gate": config.gate().__dict__, "applied_dir": None,
               "eval_sessions": built.manifest["eval_sessions"]}
        rows = built.manifest["rows_by_source"]
        print(f"{scenario}: train/eval rows {json.dumps(rows)}", file=sys.stderr)
        ours = run_child(OURS, {**job, "output_dir": str(work / "adapters" / scenario)}, work, f"{scenario}-ours")
        skip_plain = args.plain_scenarios is not None and index >= args.plain_scenarios
        plain = None if skip_plain else run_child(PLAIN, {**job, "output_dir": str(work / "plain" / scenario)}, work,
                                                        f"{scenario}-plain")
        report["scenarios"][scenario] = {"rows": rows, "ours": ours, "plain": plain}
        print_scenario(scenario, rows, ours, plain)
    targets = check_targets(report)
    report["targets"] = targets
    for name, target in targets.items():
        print(f"{'met   ' if target['met'] else 'MISSED'} {name}: {target['value']}")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(t["met"] for t in targets.values()) else 1


def objectives(args: argparse.Namespace, defaults: Any) -> int:
    """SFT vs DPO vs SFT→DPO (vs TRL DPO), and incremental vs from-scratch second rounds, per scenario."""
    import importlib.util

    from swarm_learn_assets.core.stages.session_batch import process_sessions
    from swarm_learn_assets.core.storage.layout import DataLayout
    from swarm_learn_assets.simulate import simulate
    from swarm_learn_assets.training.base_model import resolve_base_model
    from swarm_learn_assets.training.dataset_store import build_scenario_datasets

    work = Path(tempfile.mkdtemp(prefix="swarm-learn-objectives-"))
    first_round = args.round1_sessions or args.sessions * 3 // 4
    layouts = {}
    for name, sessions in (("round1", first_round), ("all", args.sessions)):
        # The simulator is deterministic per session: round 1's sessions are the first ones of "all".
        simulate(work / name, scenarios=args.scenarios, sessions=sessions, seed=args.seed)
        layouts[name] = DataLayout(work / name)
        files, _ = layouts[name].scan_landing()
        process_sessions(layouts[name], [f.key for f in files])
    model = resolve_base_model()
    config = defaults.model_copy(update={"epochs": args.epochs, "batch_size": args.batch_size,
                                         "learning_rate": args.learning_rate, "trainable_layers": args.trainable_layers,
                                         "dpo_sft_weight": args.dpo_sft_weight})
    settings = config.settings()
    sft_settings = {**settings.__dict__, "target_modules": list(settings.target_modules)}
    dpo_settings = {**sft_settings, "learning_rate": args.dpo_learning_rate or config.dpo_learning_rate}
    has_trl = importlib.util.find_spec("trl") is not None
    report: dict[str, Any] = {"base_model": model.model_id, "settings": sft_settings, "dpo_settings": dpo_settings,
                              "sessions": {"round1": first_round, "all": args.sessions}, "scenarios": {}}
    scenarios = sorted(p.name for p in (work / "all" / "landing").iterdir())
    for index, scenario in enumerate(scenarios):
        built = {name: build_scenario_datasets(layout, scenario, train_on=("task_decision",))
                 for name, layout in layouts.items()}

        def job(name: str, out: str, **extra: Any) -> dict[str, Any]:
            return {"dataset": str(built[name].path), "format": "sft", "model_dir": str(model.path),
                    "model_id": model.model_id, "train_on": ["task_decision"], "settings": sft_settings,
                    "max_train_rows": 0, "max_eval_rows": args.max_eval_rows, "max_new_tokens": config.max_new_tokens,
                    "gate": config.gate().__dict__, "applied_dir": None,
                    "eval_sessions": built[name].manifest["eval_sessions"], "output_dir": str(work / scenario / out),
                    **extra}

        runs: dict[str, dict[str, Any]] = {}
        print(f"{scenario}: SFT rows {built['all'].manifest['rows_by_source']['train']['task_decision']}, "
              f"DPO pairs {built['all'].manifest['dpo']['train']['rows']}", file=sys.stderr)
        runs["SFT (scratch, all rows)"] = run_child(OURS, job("all", "sft"), work, f"{scenario}-sft")
        runs["DPO (from base)"] = run_child(OURS, job("all", "dpo", format="dpo", settings=dpo_settings), work,
                                            f"{scenario}-dpo")
        runs["SFT then DPO"] = run_child(OURS, job("all", "sft-dpo", format="dpo", settings=dpo_settings,
                                                   init_adapter=str(work / scenario / "sft")), work, f"{scenario}-sftdpo")
        if has_trl and index < args.trl_scenarios:
            try:
                runs["TRL DPOTrainer (from base)"] = run_child(TRL_DPO, job("all", "trl-dpo", settings=dpo_settings),
                                                               work, f"{scenario}-trl")
            except RuntimeError as exc:  # TRL's API moves between versions: report, go on
                print(f"TRL DPOTrainer failed: {str(exc)[-600:]}", file=sys.stderr)
        runs["round 1 SFT (earlier sessions)"] = run_child(OURS, job("round1", "round1"), work, f"{scenario}-round1")
        runs["round 2 incremental"] = run_child(OURS, job(
            "all", "incremental", init_adapter=str(work / scenario / "round1"), replay_fraction=0.5,
            seen_sessions=built["round1"].manifest["train_sessions"]), work, f"{scenario}-incremental")
        report["scenarios"][scenario] = runs
        print_objectives(scenario, runs)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_objectives(scenario: str, runs: dict[str, dict[str, Any]]) -> None:
    """One line per run: task_decision exact match on the held-out rows (all, unseen contexts), valid
    answers, rows trained (new + replayed), training seconds, process wall seconds, peak RSS."""
    print(f"\n{scenario}\n| run | rows (new + replay) | exact match | unseen contexts | valid | train s | wall s | peak RSS MiB |"
          "\n|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        ev, metrics = run["eval"], run["metrics"]
        part = ev["by_source"].get("task_decision") or {"rows": 0}
        unseen = ev["unseen_context"]
        cell = lambda p, k="exact_match": f"{p['adapter'][k]:.3f}" if p["rows"] else "-"  # noqa: E731
        print(f"| {name} | {metrics['train_rows']} ({metrics.get('new_rows', metrics['train_rows'])} + "
              f"{metrics.get('replay_rows', 0)}) | {cell(part)} ({part['rows']} rows) | {cell(unseen)} ({unseen['rows']}) "
              f"| {cell(part, 'valid')} | {metrics['seconds']:.0f} | {run['wall_seconds']:.0f} | {run['peak_rss'] / 2**20:.0f} |",
              flush=True)


def print_scenario(scenario: str, rows: dict, ours: dict, plain: dict | None) -> None:
    ev, metrics = ours["eval"], ours["metrics"]
    line = (f"{scenario:<16} ours: train {metrics['seconds']:6.1f} s at {metrics['tokens_per_second']:5.0f} tok/s, "
            f"train+eval {ours['seconds']:6.1f} s (process {ours['wall_seconds']:.0f} s), "
            f"peak RSS {ours['peak_rss'] / 2**20:5.0f} MiB; gate {'passed' if ev['gate']['passed'] else 'failed'}")
    if plain is not None:
        line += (f"\n{'':<16} plain Trainer: {plain['seconds']:6.1f} s at {plain['tokens_per_second']:5.0f} tok/s, "
                 f"peak RSS {plain['peak_rss'] / 2**20:5.0f} MiB; ours/plain "
                 f"{metrics['tokens_per_second'] / plain['tokens_per_second']:.2f}x")
    for source, part in {**ev["by_source"], "unseen contexts": ev["unseen_context"]}.items():
        train = f"{rows['train'][source]:4d} train, " if source in rows["train"] else ""
        line += (f"\n{'':<16}   {source:<16} {train}{part['rows']:3d} eval rows: exact match base "
                 f"{part['base']['exact_match']:.3f}, adapter {part['adapter']['exact_match']:.3f} "
                 f"(valid {part['adapter']['valid']:.3f})")
    print(line, flush=True)


def check_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for scenario, r in report["scenarios"].items():
        ev, ours = r["ours"]["eval"], r["ours"]
        task, llm, unseen = ev["by_source"].get("task_decision"), ev["by_source"].get("llm_decision"), ev["unseen_context"]
        em = lambda part, model="adapter": part[model]["exact_match"] if part and part["rows"] else None  # noqa: E731
        checks = {
            f"task_decision exact match >= {TARGETS['task_em']}, base <= {TARGETS['task_base']}":
                ([em(task), em(task, "base")], em(task) is not None and em(task) >= TARGETS["task_em"]
                 and em(task, "base") <= TARGETS["task_base"]),
            f"unseen contexts exact match >= {TARGETS['task_unseen']}":
                (em(unseen), em(unseen) is not None and em(unseen) >= TARGETS["task_unseen"]),
            f"llm_decision exact match >= {TARGETS['llm_em']}": (em(llm), em(llm) is not None and em(llm) >= TARGETS["llm_em"]),
            "peak RSS <= 2 GiB": (round(ours["peak_rss"] / 2**30, 2), ours["peak_rss"] <= TARGETS["rss_bytes"]),
            f"train + eval <= {TARGETS['seconds']:.0f} s": (round(ours["wall_seconds"], 1),
                                                            ours["wall_seconds"] <= TARGETS["seconds"]),
        }
        if r["plain"] is not None:
            ratio = ours["metrics"]["tokens_per_second"] / r["plain"]["tokens_per_second"]
            checks["tokens/s >= plain Trainer loop"] = (round(ratio, 2), ratio >= TARGETS["speed_ratio"])
        out.update({f"{scenario}: {name}": {"value": value, "met": met} for name, (value, met) in checks.items()})
    return out


if __name__ == "__main__":
    sys.exit(main())
