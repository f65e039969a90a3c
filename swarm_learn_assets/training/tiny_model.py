"""A tiny Llama-architecture chat model built from a config, for tests and quick demos.

It has a real byte-level BPE tokenizer (trained on the given texts, with whole action names as
tokens) and the ChatML template SmolLM2 uses, so every code path — chat formatting, loss masking,
LoRA, generation, saving — is the one the real base model goes through, only small and fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_model(target: Path, texts: Iterable[str], words: Sequence[str] = (), seed: int = 0) -> Path:
    """Write a tiny model folder (config, safetensors weights, tokenizer) to `target`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(list(texts), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token="<|im_start|>")
    tokenizer.add_tokens([f" {w}" for w in words] + list(words))
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        # Large enough initial weights that logits can become confident: the frozen, tied embeddings
        # of a random model with the usual 0.02 cap what a LoRA adapter can learn at loss ~5.5.
        initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def build_tiny_model_for_data(target: Path, data_root: Path) -> Path:
    """A tiny model whose tokenizer is trained on the SFT texts of every scenario under `data_root`
    (so prompts and action names tokenize compactly)."""
    from ..core.llm.dataset_rows import DatasetConfig, available_actions, build_training_rows
    from ..core.storage.layout import DataLayout
    from ..core.storage.readers import read_decision_records
    from .dataset_store import read_scenario_episodes

    layout = DataLayout(Path(data_root))
    texts, actions = [], set()
    for scenario_dir in sorted(layout.folder("episodes").iterdir()):
        episodes = read_scenario_episodes(layout, scenario_dir.name)
        sessions = sorted({e["session_id"] for e in episodes})
        records = read_decision_records(layout, scenario_dir.name, sessions)
        rows = build_training_rows(episodes, DatasetConfig(eval_fraction=0.0), records).sft["train"]
        texts += [m["content"] for r in rows for m in r["messages"]]
        actions.update(available_actions(episodes))
    return build_tiny_model(target, texts, sorted(actions))
