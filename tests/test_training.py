"""Training on a tiny random Llama: labels of a real batch, one prompt for training and generation, LoRA learns,
merge is exact, resume continues."""

from pathlib import Path

import pytest
import torch

from coverlora.config import MergeConfig, TrainConfig
from coverlora.data import load_split
from coverlora.generate.batched import generate_batch
from coverlora.merge.stage import merge
from coverlora.models import load_model, load_tokenizer
from coverlora.prompts import PromptFormat
from coverlora.runs.layout import RunLayout
from coverlora.train.stage import build_trainer, tokenize_rows, train


def tiny_cfg(model, data, out, **overrides) -> TrainConfig:
    values = dict(model=model, data=str(data), output_dir=str(out), epochs=1, batch_size=4, warmup_steps=0,
                  logging_steps=1, learning_rate=5e-3, lora_r=4, lora_alpha=8, lora_target_modules="q_proj,v_proj,o_proj")
    values.update(overrides)
    return TrainConfig(**values)


def test_real_batch_masks_prompt_and_padding_but_keeps_eos(tiny_model_path, data_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_model_path)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the trap this test is about
    fmt = PromptFormat.for_tokenizer(tokenizer)
    frame = load_split(str(data_dir), "train")
    dataset, _, _ = tokenize_rows(frame, fmt, max_length=768)
    cfg = tiny_cfg(tiny_model_path, data_dir, tmp_path / "run", group_by_length=False)
    trainer = build_trainer(cfg, RunLayout(tmp_path / "run"), load_model(tiny_model_path, torch.float32),
                            tokenizer, dataset, None, torch.float32)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 4
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) > 1, "rows of different lengths, so some are padded"
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        n = int(mask.sum())
        real_ids, real_labels = ids[:n].tolist(), labels[:n].tolist()
        row = next(r for r in frame.to_dict("records") if fmt.training_example(r)["input_ids"] == real_ids)
        prompt = fmt.prompt_ids(row)
        # the prompt the model trains on is the very prompt generation will feed it
        assert real_ids[: len(prompt)] == prompt
        assert all(label == -100 for label in real_labels[: len(prompt)])
        assert real_labels[len(prompt):] == real_ids[len(prompt):]
        assert real_labels[-1] == tokenizer.eos_token_id, "EOS must be learned even though pad == eos"
        assert (labels[n:] == -100).all(), "padding is never a target"
    text = tokenizer.decode(prompt)
    assert text.rstrip().endswith("<|im_start|>assistant") and "### Job Description:" in text


def test_plain_prompt_when_chat_template_is_off(tokenizer):
    fmt = PromptFormat.for_tokenizer(tokenizer, chat_template="off")
    row = {"job_title": "Nurse", "hiring_company": "Acme", "applicant_name": "Ana", "cover_letter": "Hi."}
    text = tokenizer.decode(fmt.prompt_ids(row))
    assert "<|im_start|>" not in text and text.rstrip().endswith("### Cover Letter:")
    assert "Skills:" not in text, "empty optional fields are left out"
    assert "Total Experience" not in text, "no years in the resume, no total"
    row.update(current_experience="Nurse at A for 3 years", past_experience="Aide at B for 4 years")
    assert "Total Experience: 7 years" in tokenizer.decode(fmt.prompt_ids(row))


def _lora_state(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "adapter_model.safetensors"))


def test_train_changes_lora_merge_is_exact_and_rerun_is_safe(tiny_model_path, data_dir, tmp_path):
    layout = train(tiny_cfg(tiny_model_path, data_dir, tmp_path / "run", epochs=2))
    weights = _lora_state(layout.adapter)
    b_matrices = [t for name, t in weights.items() if "lora_B" in name]
    assert b_matrices and all(t.abs().max() > 0 for t in b_matrices), "LoRA B starts at zero: training must move it"
    assert (layout.root / "train_config.yaml").is_file() and (layout.root / "versions.json").is_file()
    assert layout.train_log.read_text().count("eval_loss") >= 2  # validated every epoch

    run, max_diff = merge(MergeConfig(run=str(layout.root)))
    assert max_diff < 1e-4
    # merged checkpoint reloads as a plain model and matches base + adapter on a fresh prompt
    from peft import PeftModel

    tokenizer = load_tokenizer(str(layout.merged))
    ids = torch.tensor([PromptFormat.for_tokenizer(tokenizer).prompt_ids(load_split(str(data_dir), "test").iloc[0])])
    merged = load_model(str(layout.merged), torch.float32).eval()
    adapted = PeftModel.from_pretrained(load_model(tiny_model_path, torch.float32), str(layout.adapter)).eval()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)
        base = load_model(tiny_model_path, torch.float32).eval()
        assert not torch.allclose(base(ids).logits, adapted(ids).logits, atol=1e-4), "the adapter does something"

    first = (layout.merged / "model.safetensors").stat().st_size
    merge(MergeConfig(run=str(layout.root)))  # re-run replaces merged/ whole
    assert (layout.merged / "model.safetensors").stat().st_size == first
    assert not list(layout.root.glob(".merged*"))

    texts, counts = generate_batch(merged, tokenizer, [ids[0].tolist(), ids[0, :-3].tolist()], max_new_tokens=5)
    assert len(texts) == 2 and all(0 < c <= 5 for c in counts)


def test_second_run_into_same_folder_is_refused(tiny_model_path, data_dir, tmp_path):
    from coverlora.errors import UserError

    train(tiny_cfg(tiny_model_path, data_dir, tmp_path / "run", max_steps=1, eval_strategy="no"))
    with pytest.raises(UserError, match="already holds a training run.*--resume"):
        train(tiny_cfg(tiny_model_path, data_dir, tmp_path / "run", max_steps=1, eval_strategy="no"))
    with pytest.raises(UserError, match="differ from the saved run: lora_r"):
        train(tiny_cfg(tiny_model_path, data_dir, tmp_path / "run", max_steps=1, eval_strategy="no", lora_r=8, resume=True))


def test_missing_target_module_is_named(tiny_model_path, data_dir, tmp_path):
    from coverlora.errors import ConfigError

    with pytest.raises(ConfigError, match="no module named query_key_value.*choose from"):
        train(tiny_cfg(tiny_model_path, data_dir, tmp_path / "run", lora_target_modules="query_key_value"))
    assert not (tmp_path / "run" / "train_config.yaml").exists()


def test_a_nan_weight_decay_stops_training_in_one_line_and_keeps_no_adapter(tiny_model_path, data_dir, tmp_path):
    """AdamW with weight_decay NaN turns every LoRA weight into NaN; the guard stops at that step."""
    from coverlora.errors import UserError

    cfg = tiny_cfg(tiny_model_path, data_dir, tmp_path / "run", max_steps=3, logging_steps=1)
    object.__setattr__(cfg, "weight_decay", float("nan"))  # past the config's own check, as a diverging run would be
    with pytest.raises(UserError, match=r"training diverged at step 1: loss is nan|training diverged at step \d"):
        train(cfg)
    assert not (tmp_path / "run" / "adapter").exists()
    assert not (tmp_path / "run" / ".coverlora.lock").exists()


def test_a_second_stage_on_a_locked_run_folder_is_refused(tmp_path):
    from coverlora.errors import UserError
    from coverlora.runs.layout import run_lock

    folder = tmp_path / "run"
    with run_lock(folder, "train"):
        with pytest.raises(UserError, match=r"in use by train\.py \(PID \d+"):
            with run_lock(folder, "test"):
                pass
    assert not folder.exists(), "a folder the lock created and nobody wrote into is removed"
    folder.mkdir()
    (folder / ".coverlora.lock").write_text("train.py (PID 999999, since yesterday)")  # a killed run's leftover
    with run_lock(folder, "merge"):
        assert "merge.py" in (folder / ".coverlora.lock").read_text()
    assert folder.exists()


@pytest.mark.parametrize(("upcast", "precision", "norm_dtype"), [
    ("all", "bf16", torch.float32), ("none", "bf16", torch.bfloat16), ("auto", "bf16", torch.bfloat16),
    ("auto", "fp16", torch.float32), ("none", "fp16", torch.float16)])
def test_kbit_upcast_decides_the_frozen_norms_dtype(tiny_model_path, data_dir, tmp_path, upcast, precision, norm_dtype):
    from coverlora.train.stage import prepare_model

    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    model = load_model(tiny_model_path, compute)
    cfg = tiny_cfg(tiny_model_path, data_dir, tmp_path / "r", precision=precision, kbit_upcast=upcast)
    model = prepare_model(model, cfg, quantize=True)  # peft's k-bit preparation, as on a 4-bit model
    frozen = {name: p.dtype for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen["model.norm.weight"] == norm_dtype and frozen["model.embed_tokens.weight"] == norm_dtype
