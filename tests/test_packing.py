"""Packing keeps samples apart: a packed, padding-free batch from coverlora's trainer (TRL BFD packing via
build_trainer, SDPA attention, no attention_mask) gives every token the loss it gets when its sample runs alone.

A tiny random Llama (hidden 64, 2 layers, vocabulary 1000) and a word-level tokenizer built here: no downloads.
"""

from __future__ import annotations

import pytest
import torch

VOCAB = 1000
BOS, EOS, UNK = 1, 2, 3


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """(trainer, first packed micro-batch) for a coverlora TrainConfig with packing on."""
    import datasets
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from coverlora.config import TrainConfig
    from coverlora.runs.layout import RunLayout
    from coverlora.train.stage import build_trainer

    word_level = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token=f"t{UNK}"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token=f"t{BOS}", eos_token=f"t{EOS}",
                                        pad_token=f"t{EOS}", unk_token=f"t{UNK}")

    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(16):  # prompt + letter + EOS, as PromptFormat.training_example builds them
        prompt, letter = (int(x) for x in torch.randint(4, 24, (2,), generator=g))
        ids = [BOS] + torch.randint(4, VOCAB, (prompt + letter,), generator=g).tolist() + [EOS]
        rows.append({"input_ids": ids, "completion_mask": [0] * (prompt + 1) + [1] * (letter + 1)})

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    out = tmp_path_factory.mktemp("packing")
    cfg = TrainConfig(model="tiny", data="unused", output_dir=str(out), packing=True, pack_length=128, batch_size=1,
                      group_by_length=False, eval_strategy="no", max_steps=1, lora_r=4, lora_alpha=8,
                      attn_implementation="sdpa", precision="fp32", quantization="none")
    trainer = build_trainer(cfg, RunLayout(out), model, tokenizer, datasets.Dataset.from_list(rows), None, torch.float32)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()  # no dropout; LoRA B is still zero, so this is the random base model
    return trainer, batch


def _segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each packed sample; padding (position 0, one token each) is left out."""
    starts = (position_ids == 0).nonzero().flatten().tolist() + [len(position_ids)]
    return [(a, b) for a, b in zip(starts[:-1], starts[1:]) if b - a > 1]


def _token_losses(trainer, input_ids, labels, **kwargs) -> torch.Tensor:
    """Loss of each next-token prediction (0 where the label is -100), from the model's own backbone and head."""
    base = trainer.model.get_base_model()
    with torch.no_grad():
        hidden = base.model(input_ids=input_ids, **kwargs).last_hidden_state
        logits = base.lm_head(hidden)[0, :-1].float()
    return torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="none")


def test_packed_batch_is_padding_free_with_several_samples(packed):
    _, batch = packed
    assert "attention_mask" not in batch, "SDPA finds sample boundaries from position_ids only when no mask is passed"
    assert batch["input_ids"].shape == (1, 128), "padded to pack_length: one shape for every micro-batch"
    trainer, _ = packed
    assert trainer.model.get_base_model().config._attn_implementation == "sdpa"
    segments = _segments(batch["position_ids"][0])
    assert len(segments) >= 3
    real = segments[-1][1]
    assert sum(b - a for a, b in segments) == real, "samples sit back to back, padding only at the end"
    assert (batch["labels"][0, real:] == -100).all(), "padding is never a target"


def test_packed_token_losses_equal_unpacked(packed):
    trainer, batch = packed
    ids, labels, pos = batch["input_ids"], batch["labels"], batch["position_ids"]
    packed_losses = _token_losses(trainer, ids, labels, position_ids=pos)
    leaky_losses = _token_losses(trainer, ids, labels, position_ids=pos, attention_mask=torch.ones_like(ids))
    separate_sum, separate_count, leak = 0.0, 0, []
    for a, b in _segments(pos[0]):
        assert labels[0, a] == -100, "a sample's first token is never predicted from the previous sample"
        alone = _token_losses(trainer, ids[:, a:b], labels[:, a:b])
        # position t predicts token t+1: the packed row's predictions inside this sample are a .. b-2
        torch.testing.assert_close(packed_losses[a: b - 1], alone, atol=1e-5, rtol=1e-5)
        leak.append((leaky_losses[a: b - 1] - alone).abs().max().item())
        separate_sum += alone.sum().item()
        separate_count += int((labels[0, a + 1: b] != -100).sum())
    # the check has teeth: one causal mask over the whole row changes every later sample's losses
    assert leak[0] < 1e-5 and min(leak[1:]) > 1e-3, leak

    # and the trainer's own loss (TRL's fused LM head) is the mean over the samples' letter tokens
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
    assert abs(loss.item() - separate_sum / separate_count) < 1e-4
