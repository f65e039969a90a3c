"""LoRA training of the decision LLM on SFT rows or DPO pairs, and greedy exact-match evaluation.

Plain PyTorch + PEFT, written for the hardware at hand: batches of similar length (little padding),
loss on the assistant tokens only, bf16 autocast where the CPU (or GPU) supports it, all cores used.
The same code runs on a GPU when one is there.

DPO (Rafailov et al. 2023) uses its own loss rather than TRL's `DPOTrainer`: the reference model's
log-probabilities are computed once before the first step (the reference is the frozen model the
training starts from), and the frozen lower layers are computed once per sequence, as for SFT —
`benchmarks/training.py --objectives` measures the difference.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.llm.gate import GateSettings, decide_gate
from ..core.llm.prompts import Score, score_answer
from ..core.llm.training_data import DPO, SFT, preference_chats
from ..core.storage.faults import TRAIN_STEP, crash_point

# Attention and MLP projections of Llama-family models. Never embeddings or lm_head: adapters on
# them cannot be converted to GGUF for llama.cpp.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FORBIDDEN_TARGETS = ("embed_tokens", "lm_head", "wte", "wpe")
IGNORE = -100


class TrainingError(RuntimeError):
    """Training cannot start or went wrong, said in one line."""


@dataclass(frozen=True)
class LoraSettings:
    """The reference LoraTrainerConfig's hyperparameters, with defaults measured by
    `benchmarks/training.py` on the simulated scenarios (2 CPU cores): LoRA on the top 8 layers,
    batch 1 at 3e-3 for 2 epochs learns both sources to >= 0.9 exact match on held-out sessions in
    about two minutes; 2e-3 left one scenario's decide rows at 0.875, larger batches at the same cost
    at 0.6-0.85."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0  # dropout would copy every adapted layer's input once per target module
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    epochs: int = 2
    batch_size: int = 1
    gradient_accumulation: int = 1
    learning_rate: float = 3e-3
    max_seq_length: int = 2048
    seed: int = 0
    # LoRA on the top N decoder layers only (0: all). The layers below stay frozen and unadapted,
    # so their output for each training row is computed once and reused every epoch, and backward
    # stops at the first adapted layer: most of the cost of a step is gone.
    trainable_layers: int = 8
    # DPO only: the scale of the implicit reward, i.e. how far the policy may move from the reference.
    dpo_beta: float = 0.1
    # DPO only: weight of the chosen reply's per-token cross-entropy added to the DPO loss (RPO,
    # TRL's `rpo_alpha`; 0: plain DPO). Measured by `benchmarks/training.py --objectives`: plain DPO
    # lowers the chosen reply along with the rejected one and unlearns the answer format (SFT's exact
    # match 1.0 fell to 0.58 at 5e-5, to 0 at 5e-4); with weight 1 it stays at 1.0.
    dpo_sft_weight: float = 1.0

    def __post_init__(self) -> None:
        bad = [m for m in self.target_modules if any(f in m for f in FORBIDDEN_TARGETS)]
        if bad:
            raise TrainingError(f"target_modules {bad}: embeddings and lm_head cannot be LoRA targets "
                                "(their adapters break GGUF conversion for llama.cpp)")
        for name in ("rank", "epochs", "batch_size", "gradient_accumulation", "max_seq_length"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.dpo_beta <= 0:
            raise TrainingError(f"dpo_beta: expected > 0, got {self.dpo_beta}")
        if self.dpo_sft_weight < 0:
            raise TrainingError(f"dpo_sft_weight: expected >= 0, got {self.dpo_sft_weight}")
        if self.trainable_layers < 0:
            raise TrainingError(f"trainable_layers: expected >= 0 (0: all layers), got {self.trainable_layers}")


@dataclass
class TrainingResult:
    steps: list[dict[str, float]] = field(default_factory=list)  # per optimizer step: step, epoch, loss, lr
    train_rows: int = 0
    tokens: int = 0  # tokens seen (padding excluded), all epochs
    seconds: float = 0.0
    autocast: str = "none"
    objective: str = SFT
    init_adapter: str | None = None  # the adapter whose weights training started from (None: a fresh LoRA)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def final_loss(self) -> float | None:
        return self.steps[-1]["loss"] if self.steps else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second, "final_loss": self.final_loss}


def _ids(encoded: Any) -> list[int]:
    """`apply_chat_template(tokenize=True)` returns a list or a mapping, by transformers version."""
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def encode_example(tokenizer: Any, messages: Sequence[dict[str, str]], max_len: int) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat and labels that keep only the assistant's reply (and its end)."""
    prompt = _ids(tokenizer.apply_chat_template(list(messages[:-1]), add_generation_prompt=True, tokenize=True))
    full = _ids(tokenizer.apply_chat_template(list(messages), tokenize=True))
    if full[: len(prompt)] != prompt:
        raise TrainingError("the chat template does not render the prompt as a prefix of the whole chat")
    labels = [IGNORE] * len(prompt) + full[len(prompt):]
    return full[:max_len], labels[:max_len]


def autocast_dtype(device: str) -> Any:
    """bf16 where the hardware does it natively, else None (emulated bf16 is slower than fp32)."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    checks = [getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None)]
    return torch.bfloat16 if any(c is not None and c() for c in checks) else None


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of examples of similar length, in random order: little padding, still shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(batch: list[list[int]], value: int, left: bool = False) -> list[list[int]]:
    width = max(len(x) for x in batch)
    return [([value] * (width - len(x)) + x) if left else (x + [value] * (width - len(x))) for x in batch]


def reply_token_logprobs(model: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, Any]:
    """The log-probability of every reply token (labels other than IGNORE), row-major, and the row
    each belongs to; only the positions that predict a reply token are projected onto the
    vocabulary: the prompt (most of each sequence) never reaches the lm_head, which for a 49k
    vocabulary is a fifth of the model's work per token."""
    import torch
    import torch.nn.functional as F

    target = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = target != IGNORE
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    logprobs = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target[target != IGNORE],
                                reduction="none")
    return logprobs, keep.nonzero()[:, 0]  # the kept logits come in the same row-major order


def assistant_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Mean cross-entropy over the assistant tokens (SFT)."""
    return -reply_token_logprobs(model, ids, mask, labels)[0].mean()


def response_logprobs(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Per sequence, the summed log-probability of its reply tokens: the quantity DPO compares
    between chosen and rejected replies."""
    import torch

    logprobs, owner = reply_token_logprobs(model, ids, mask, labels)
    return torch.zeros(ids.shape[0], device=ids.device).index_add(0, owner, logprobs)


def dpo_loss(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any,
             beta: float) -> tuple[Any, Any, Any]:
    """The DPO loss −log σ(β·[(π_c − ref_c) − (π_r − ref_r)]) over a batch of pairs, with the share of
    pairs whose implicit reward already prefers the chosen reply and the mean reward margin."""
    import torch.nn.functional as F

    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin).mean(), (margin > 0).float().mean(), margin.mean()


def first_adapted_layer(num_layers: int, trainable_layers: int) -> int:
    """Index of the lowest decoder layer that gets LoRA weights."""
    return num_layers - trainable_layers if 0 < trainable_layers < num_layers else 0


MIN_SHARED_PREFIX = 8  # tokens; a shorter common opening is not worth a separate pass


def shared_prefix_groups(sequences: Sequence[Sequence[int]]) -> list[tuple[int, list[int]]]:
    """Groups of sequences (by index) that open with the same tokens, each with the length of the
    opening all its members share (0 when it is too short to be worth sharing). Every sequence keeps
    at least one token of its own after the shared part."""
    by_opening: dict[tuple[int, ...], list[int]] = {}
    for i, seq in enumerate(sequences):
        by_opening.setdefault(tuple(seq[:MIN_SHARED_PREFIX]), []).append(i)
    groups = []
    for members in by_opening.values():
        first = sequences[members[0]]
        shared = min(len(sequences[i]) for i in members) - 1
        for i in members[1:]:
            other = sequences[i]
            shared = min(shared, next((k for k in range(shared) if other[k] != first[k]), shared))
        groups.append((shared if shared >= MIN_SHARED_PREFIX and len(members) > 1 else 0, members))
    return groups


class FrozenPrefix:
    """The output of the frozen, unadapted decoder layers below the first adapted one, computed once
    per training row and then fed to the adapted layers in place of recomputing it.

    While active, the lower layers of the model are swapped for stand-ins: all but the last pass
    their input through, the last returns the cached states of the current batch (right-padded, so
    every real token sees exactly what it saw when cached: attention is causal). `restore` puts
    the real layers back.
    """

    def __init__(self, model: Any, first: int):
        import torch

        class PassThrough(torch.nn.Module):
            def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
                return hidden_states

        class Cached(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.states: Any = None

            def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
                return self.states

        self.layers = model.get_base_model().model.layers
        self.first = first
        self.originals = list(self.layers[:first])
        self._cached = Cached()
        self._stand_ins = [PassThrough() for _ in range(first - 1)] + [self._cached]
        self.states: list[Any] = []

    def compute(self, model: Any, examples: Sequence[tuple[list[int], list[int]]], pad: int, device: str,
                batch_size: int = 16) -> None:
        """Run the lower layers once over every example (no gradients) and keep each one's states.

        Rows of one source share a long opening (chat template, system prompt, `Current context:`):
        that shared prefix runs once per group, and only the rest of each row runs on top of its
        cached keys and values."""
        import copy

        import torch
        from transformers import DynamicCache

        class Stop(Exception):
            pass

        captured: list[Any] = []

        def grab(_module: Any, _inputs: Any, output: Any) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise Stop

        def lower_layers(**inputs: Any) -> Any:
            captured.clear()
            try:
                model(**inputs, logits_to_keep=1)
            except Stop:
                pass
            return captured[0]

        hook = self.layers[self.first - 1].register_forward_hook(grab)
        self.states = [None] * len(examples)
        try:
            with torch.no_grad():
                for shared, members in shared_prefix_groups([ids for ids, _ in examples]):
                    cache, head = None, None
                    if shared:
                        cache = DynamicCache(config=model.config)
                        prompt = torch.tensor([examples[members[0]][0][:shared]], device=device)
                        head = lower_layers(input_ids=prompt, past_key_values=cache, use_cache=True)[0]
                    order = sorted(members, key=lambda i: len(examples[i][0]))
                    for at in range(0, len(order), batch_size):
                        chunk = order[at : at + batch_size]
                        tails = [examples[i][0][shared:] for i in chunk]
                        ids = torch.tensor(_pad(tails, pad), device=device)
                        mask = torch.tensor([[1] * shared + m for m in _pad([[1] * len(t) for t in tails], 0)],
                                            device=device)
                        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
                        if cache is not None:
                            batch_cache = copy.deepcopy(cache)
                            batch_cache.batch_repeat_interleave(len(chunk))
                            inputs.update(past_key_values=batch_cache, use_cache=True)
                        out = lower_layers(**inputs)
                        for row, (i, tail) in enumerate(zip(chunk, tails)):
                            states = out[row, : len(tail)]
                            self.states[i] = (torch.cat([head, states]) if head is not None else states).clone()
        finally:
            hook.remove()

    def activate(self) -> None:
        for i, stand_in in enumerate(self._stand_ins):
            self.layers[i] = stand_in

    def feed(self, batch: Sequence[int]) -> None:
        """The cached states of these examples, right-padded to the batch's width."""
        import torch

        width = max(self.states[i].shape[0] for i in batch)
        self._cached.states = torch.stack([
            torch.nn.functional.pad(self.states[i], (0, 0, 0, width - self.states[i].shape[0])) for i in batch
        ])

    def restore(self) -> None:
        for i, layer in enumerate(self.originals):
            self.layers[i] = layer
        self._cached.states = None


def load_trainable_model(model_dir: Path, model_id: str, settings: LoraSettings,
                         init_adapter: Path | None = None) -> tuple[Any, int]:
    """The base model with trainable LoRA weights: a fresh LoRA of `settings`' shape, or the weights
    of `init_adapter` (incremental training; its shape was checked against `settings` by
    `core.incremental.choose_init`). Returns the model and its first adapted layer."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, torch_dtype=torch.float32)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in settings.target_modules if m in present]
    if not targets:
        raise TrainingError(f"none of target_modules {list(settings.target_modules)} exist in {model_id}")
    layers = model.config.num_hidden_layers
    first = first_adapted_layer(layers, settings.trainable_layers)
    if init_adapter is not None:
        return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True), first
    return get_peft_model(model, LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets,
        task_type="CAUSAL_LM", layers_to_transform=list(range(first, layers)) if first else None,
    )), first


def encode_rows(tokenizer: Any, rows: Sequence[dict[str, Any]], objective: str,
                max_len: int) -> tuple[list[tuple[list[int], list[int]]], list[list[int]]]:
    """Token ids and labels of every sequence to train on, and the units a batch is made of: one
    sequence per SFT row (`messages`); for a DPO row (`prompt`/`chosen`/`rejected`) its chosen and
    its rejected chat, side by side (even index chosen, odd rejected)."""
    if objective == SFT:
        sequences = [encode_example(tokenizer, r["messages"], max_len) for r in rows]
        return sequences, [[i] for i in range(len(sequences))]
    if objective != DPO:
        raise TrainingError(f"objective {objective!r}: expected {SFT} or {DPO}")
    sequences = [encode_example(tokenizer, chat, max_len) for r in rows for chat in preference_chats(r)]
    return sequences, [[2 * i, 2 * i + 1] for i in range(len(rows))]


def reference_logprobs(model: Any, sequences: Sequence[tuple[list[int], list[int]]], pad: int, device: str,
                       amp: Any, prefix: FrozenPrefix | None, batch_size: int = 8) -> Any:
    """Each sequence's response log-probability under the model as training starts (the frozen DPO
    reference), computed once instead of by a second model on every step."""
    import torch

    out = torch.zeros(len(sequences))
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    with torch.no_grad():
        for at in range(0, len(order), batch_size):
            chunk = order[at : at + batch_size]
            ids, mask, labels = _batch_tensors(sequences, chunk, pad, device)
            if prefix is not None:
                prefix.feed(chunk)
            with torch.autocast(device, dtype=amp, enabled=amp is not None):
                out[chunk] = response_logprobs(model, ids, mask, labels).float().cpu()
    return out


def _batch_tensors(sequences: Sequence[tuple[list[int], list[int]]], batch: Sequence[int], pad: int,
                   device: str) -> tuple[Any, Any, Any]:
    import torch

    ids = torch.tensor(_pad([sequences[i][0] for i in batch], pad), device=device)
    mask = torch.tensor(_pad([[1] * len(sequences[i][0]) for i in batch], 0), device=device)
    labels = torch.tensor(_pad([sequences[i][1] for i in batch], IGNORE), device=device)
    return ids, mask, labels


def train_lora(
    model_dir: Path,
    model_id: str,
    rows: Sequence[dict[str, Any]],
    settings: LoraSettings,
    output_dir: Path,
    log: Callable[[str], None] = print,
    objective: str = SFT,
    init_adapter: Path | None = None,
) -> TrainingResult:
    """Train a LoRA adapter and save it (PEFT files) to `output_dir`: on SFT rows (`messages`,
    cross-entropy on the reply) or DPO rows (`prompt`/`chosen`/`rejected`, DPO loss against the
    model training starts from), from a fresh LoRA or continuing from `init_adapter`'s weights."""
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(settings.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model, first = load_trainable_model(model_dir, model_id, settings, init_adapter)
    model.to(device)
    sequences, units = encode_rows(tokenizer, rows, objective, settings.max_seq_length)
    if not sequences:
        raise TrainingError("no training rows")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    amp = autocast_dtype(device)
    began = time.perf_counter()
    prefix, reference = _precompute(model, first, sequences, len(units), pad, device, amp, objective, log)
    rng = random.Random(settings.seed)
    per_epoch = math.ceil(len(units) / settings.batch_size)
    total_steps = max(1, math.ceil(per_epoch * settings.epochs / settings.gradient_accumulation))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizer(params, settings.learning_rate, total_steps)
    result = TrainingResult(train_rows=len(units), autocast=str(amp).replace("torch.", "") if amp else "none",
                            objective=objective, init_adapter=str(init_adapter) if init_adapter else None)
    unit_lengths = [max(len(sequences[i][0]) for i in unit) for unit in units]
    model.train()
    start, step, micro, micro_at_last_step = time.perf_counter(), 0, 0, 0
    window: dict[str, float] = {}
    for epoch in range(settings.epochs):
        for batch_units in length_grouped_batches(unit_lengths, settings.batch_size, rng):
            batch = [i for u in batch_units for i in units[u]]
            ids, mask, labels = _batch_tensors(sequences, batch, pad, device)
            if prefix is not None:
                prefix.feed(batch)
            with torch.autocast(device, dtype=amp, enabled=amp is not None):
                loss, extra = _batch_loss(model, ids, mask, labels, None if reference is None else reference[batch],
                                          settings)
            (loss / settings.gradient_accumulation).backward()
            for key, value in {"loss": loss.item(), **extra}.items():
                window[key] = window.get(key, 0.0) + value
            result.tokens += int(mask.sum())
            micro += 1
            if micro % settings.gradient_accumulation == 0 or micro == per_epoch * settings.epochs:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                crash_point(TRAIN_STEP)
                means = {k: round(v / (micro - micro_at_last_step), 6) for k, v in window.items()}
                micro_at_last_step, window = micro, {}
                result.steps.append({"step": step, "epoch": epoch + 1, **means, "lr": scheduler.get_last_lr()[0]})
                if step == 1 or step % max(1, total_steps // 20) == 0 or step == total_steps:
                    log(_progress(step, total_steps, epoch, means, result.tokens / (time.perf_counter() - start)))
    result.seconds = time.perf_counter() - began
    if prefix is not None:
        prefix.restore()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    _set_base_model_name(output_dir / "adapter_config.json", model_id)
    return result


def _precompute(model: Any, first: int, sequences: list, pairs: int, pad: int, device: str, amp: Any, objective: str,
                log: Callable[[str], None]) -> tuple[FrozenPrefix | None, Any | None]:
    """What stays fixed during training, computed once before the first step: the frozen layers'
    output for every sequence (when LoRA starts above layer 0), and for DPO the reference
    log-probabilities of every pair under the model training starts from."""
    began = time.perf_counter()
    prefix = None
    if first:
        prefix = FrozenPrefix(model, first)
        prefix.compute(model, sequences, pad, device)
        prefix.activate()
        log(f"LoRA on layers {first}-{model.config.num_hidden_layers - 1}; frozen layers 0-{first - 1} computed once "
            f"for {len(sequences)} sequences in {time.perf_counter() - began:.1f} s")
    reference = None
    if objective == DPO:
        model.eval()
        reference = reference_logprobs(model, sequences, pad, device, amp, prefix).to(device)
        log(f"reference log-probabilities of {pairs} pairs computed once ({time.perf_counter() - began:.1f} s so far)")
    return prefix, reference


def _optimizer(params: list, learning_rate: float, total_steps: int) -> tuple[Any, Any]:
    """AdamW with a linear warm-up over the first tenth of the steps, then a linear decay to zero."""
    import torch

    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, total_steps // 10)) * max(0.0, 1 - s / total_steps)
    )
    return optimizer, scheduler


def _batch_loss(model: Any, ids: Any, mask: Any, labels: Any, reference: Any | None,
                settings: LoraSettings) -> tuple[Any, dict[str, float]]:
    """The batch's loss: cross-entropy on the replies (SFT), or — given the reference log-probs of
    the batch's chosen/rejected pairs — the DPO loss plus `dpo_sft_weight` times the chosen replies'
    per-token cross-entropy, with the reward accuracy and margin."""
    if reference is None:
        return assistant_loss(model, ids, mask, labels), {}
    logps = response_logprobs(model, ids, mask, labels)
    loss, accuracy, margin = dpo_loss(logps[0::2], logps[1::2], reference[0::2], reference[1::2], settings.dpo_beta)
    if settings.dpo_sft_weight:
        reply_tokens = (labels[0::2, 1:] != IGNORE).sum(dim=1)
        loss = loss - settings.dpo_sft_weight * (logps[0::2] / reply_tokens).mean()
    return loss, {"reward_accuracy": accuracy.item(), "reward_margin": margin.item()}


def _progress(step: int, total_steps: int, epoch: int, means: dict[str, float], tokens_per_second: float) -> str:
    done = int(20 * step / total_steps)
    rewards = f" reward accuracy {means['reward_accuracy']:.2f}" if "reward_accuracy" in means else ""
    return (f"[{'#' * done}{'.' * (20 - done)}] step {step}/{total_steps} epoch {epoch + 1} "
            f"loss {means['loss']:.4f}{rewards} {tokens_per_second:.0f} tok/s")


def _set_base_model_name(config_file: Path, model_id: str) -> None:
    """PEFT leaves `base_model_name_or_path` empty or a temp path for some bases: write the real one."""
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = model_id
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def score_rows(rows: Sequence[dict[str, Any]], answers: Sequence[str]) -> list[Score]:
    """Each answer scored against its row's reference (exact match, valid) by the one prompt module."""
    return [score_answer(r["prompt"], r["chosen"], a) for r, a in zip(rows, answers)]


def summarise_scores(scores: Sequence[Score]) -> dict[str, float]:
    """`{exact_match, valid}` as shares of the rows (0 for none)."""
    n = len(scores)
    return {"exact_match": sum(s.exact for s in scores) / n if n else 0.0,
            "valid": sum(s.valid for s in scores) / n if n else 0.0}


def generate(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """Greedy answers to the rows' prompts (system + user turns)."""
    return generate_chat(model, tokenizer, [r["messages"][:-1] for r in rows], max_new_tokens, batch_size)


def generate_chat(
    model: Any, tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]], max_new_tokens: int,
    batch_size: int = 64,
) -> list[str]:
    """Greedy answers to chat conversations, batched by length with left padding; an answer ends at
    the chat template's end-of-turn token."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    stop = stop if isinstance(stop, int) and stop >= 0 else tokenizer.eos_token_id
    prompts = [_ids(tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=True))
               for c in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids = torch.tensor(_pad([prompts[i] for i in chunk], pad, left=True), device=device)
            mask = torch.tensor(_pad([[1] * len(prompts[i]) for i in chunk], 0, left=True), device=device)
            generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                       do_sample=False, pad_token_id=pad, eos_token_id=stop)
            for i, seq in zip(chunk, generated[:, ids.shape[1]:]):
                out[i] = tokenizer.decode(seq, skip_special_tokens=True).strip()
    return out


APPLIED = "applied"


def evaluate_models(
    model_dir: Path,
    adapter_dir: Path,
    rows: Sequence[dict[str, Any]],
    applied_dir: Path | None = None,
    gate: GateSettings = GateSettings(),
    max_new_tokens: int = 64,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Base model, new adapter and (when given) the applied adapter answer the same eval rows in one
    process; returns `eval.json` (DESIGN §8) with the gate's verdict on these rows."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    tokenizer.padding_side = "left"
    base = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)
    if applied_dir is not None:
        model.load_adapter(str(applied_dir), adapter_name=APPLIED)
    if torch.cuda.is_available():
        model.to("cuda")
    # An answer longer than every reference (and its end token) cannot match one: stop there.
    longest = max((len(tokenizer(r["chosen"])["input_ids"]) for r in rows), default=0)
    budget = max(1, min(max_new_tokens, longest + 2))
    started = time.perf_counter()
    answers: dict[str, list[str]] = {}
    with model.disable_adapter():
        answers["base"] = generate(model, tokenizer, rows, budget)
    answers["adapter"] = generate(model, tokenizer, rows, budget)
    if applied_dir is not None:
        model.set_adapter(APPLIED)
        answers[APPLIED] = generate(model, tokenizer, rows, budget)
    log(f"evaluated {len(answers)} models on {len(rows)} rows in {time.perf_counter() - started:.1f} s "
        f"(up to {budget} new tokens)")
    scored = {name: score_rows(rows, texts) for name, texts in answers.items()}

    def table(picked: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {name: summarise_scores([scored[name][i] for i in picked]) for name in scored}
        return {"rows": len(picked), **out, APPLIED: out.get(APPLIED)}

    everything = list(range(len(rows)))
    exact = {name: [s.exact for s in scores] for name, scores in scored.items()}
    verdict = decide_gate(exact["adapter"], exact["base"], exact.get(APPLIED), gate)
    by_source = {source: table([i for i in everything if rows[i]["source"] == source])
                 for source in sorted({r["source"] for r in rows})}
    return {
        "rows": len(rows),
        "models": {k: v for k, v in table(everything).items() if k != "rows"},
        "by_source": by_source,
        "unseen_context": table([i for i in everything if rows[i].get("unseen_context")]),
        "gate": {**verdict.to_json(), "min_exact_match": gate.min_exact_match, "alpha": gate.alpha},
        "examples": [{"source": r["source"], "prompt": r["prompt"], "expected": r["chosen"],
                      **{name: answers[name][i] for name in answers}}
                     for i, r in list(enumerate(rows))[:5]],
    }
