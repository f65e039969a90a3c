"""Stage 5: a scenario's episodes → SFT and DPO datasets (Hugging Face `datasets`, train/eval)."""

import statistics

import dagster as dg

from ..core.llm.dataset_rows import DEFAULT_TRAIN_ON, EVAL, TRAIN, DatasetConfig, chat_format_problems
from ..training.dataset_store import build_scenario_datasets
from .episodes import EPISODES
from .metadata import markdown_table
from .partitions import scenarios_partitions
from .resources import BaseModel, SwarmData

SFT_DATASET = dg.AssetKey("sft_dataset")
CHAT_FORMAT_CHECK = dg.AssetCheckSpec("chat_format_valid", asset=SFT_DATASET, blocking=True)
ENOUGH_ROWS_CHECK = dg.AssetCheckSpec("enough_training_rows", asset=SFT_DATASET)


class DatasetBuildConfig(dg.Config):
    """Share of sessions held out for evaluation (by a hash of the session id); the sources the
    adapter trains on (`task_decision`, `llm_decision`, and the reference `worker_task`,
    `worker_decision_sequence`; the dataset always holds all of them; the opt-in `task_step`, one
    decide row per step of a successful task, is built when named here); and the fewest training
    rows of those sources worth training on (fewer: the adapter is skipped, not failed)."""

    eval_fraction: float = 0.2
    train_on: list[str] = list(DEFAULT_TRAIN_ON)
    min_train_rows: int = 20


def token_lengths(tokenizer, rows: list[dict]) -> list[int]:
    return [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=False)) for r in rows]


@dg.asset(
    partitions_def=scenarios_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    deps=[dg.AssetDep(EPISODES, partition_mapping=dg.AllPartitionMapping())],
    group_name="training",
    kinds={"huggingface", "parquet"},
    check_specs=[CHAT_FORMAT_CHECK, ENOUGH_ROWS_CHECK],
    description="SFT rows (reference TrainingData + chat messages) and DPO pairs, split by session.",
)
def sft_dataset(context: dg.AssetExecutionContext, config: DatasetBuildConfig, swarm_data: SwarmData,
                base_model: BaseModel) -> dg.MaterializeResult:
    from transformers import AutoTokenizer

    layout = swarm_data.layout
    tokenizer = AutoTokenizer.from_pretrained(base_model.resolve().path)
    scenario = context.partition_key
    built = build_scenario_datasets(layout, scenario, DatasetConfig(eval_fraction=config.eval_fraction),
                                    config.min_train_rows, tuple(config.train_on))
    sft, dpo = built.rows.sft, built.rows.dpo
    lengths = token_lengths(tokenizer, [r for r in sft[TRAIN] if r["source"] in config.train_on])
    problems = chat_format_problems(sft[TRAIN] + sft[EVAL])
    train_rows = built.manifest["train_on_rows"]
    by_source = built.manifest["rows_by_source"]
    preview = [(r["source"], r["prompt"].replace("\n", " ")[:90], r["chosen"][:60], r["count"], f"{r['agreement']:.2f}")
               for source in by_source[TRAIN] for r in [x for x in sft[TRAIN] if x["source"] == source][:2]]
    unseen = sum(r["unseen_context"] for r in sft[EVAL])
    return dg.MaterializeResult(
        asset_key=SFT_DATASET,
        metadata={
            "dagster/row_count": len(sft[TRAIN]) + len(sft[EVAL]),
            "train_on": ", ".join(config.train_on),
            "train_on_rows": train_rows,
            "sft_train_rows": len(sft[TRAIN]),
            "sft_eval_rows": len(sft[EVAL]),
            "eval_rows_unseen_context": unseen,
            "rows_by_source": markdown_table(
                ["source", "train", "eval"], [(s, by_source[TRAIN][s], by_source[EVAL][s]) for s in by_source[TRAIN]]),
            "dpo_train_rows": len(dpo[TRAIN]),
            "dpo_eval_rows": len(dpo[EVAL]),
            "duplicates_removed": dg.MetadataValue.json(built.rows.duplicates),
            "eval_sessions": dg.MetadataValue.json(built.rows.eval_sessions),
            "token_lengths": dg.MetadataValue.json(_distribution(lengths)),
            "preview": markdown_table(["source", "prompt", "chosen", "count", "agreement"], preview),
            "dataset_path": dg.MetadataValue.path(str(built.path)),
        },
        check_results=[
            dg.AssetCheckResult(
                asset_key=SFT_DATASET, check_name=CHAT_FORMAT_CHECK.name, passed=not problems,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"problems": len(problems), "first": "\n".join(problems[:5]) or "none"},
            ),
            dg.AssetCheckResult(
                asset_key=SFT_DATASET, check_name=ENOUGH_ROWS_CHECK.name,
                passed=train_rows >= config.min_train_rows, severity=dg.AssetCheckSeverity.WARN,
                metadata={"train_on_rows": train_rows, "min_train_rows": config.min_train_rows},
            ),
        ],
    )


def _distribution(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {"rows": 0}
    ordered = sorted(lengths)
    return {"rows": len(ordered), "min": ordered[0], "median": statistics.median(ordered),
            "p90": ordered[int(0.9 * (len(ordered) - 1))], "max": ordered[-1]}
