"""Training targets (coverlora/train/targets.py): unbacked sentences masked or deleted, the applicant's sign-off,
checked on a real collated batch and in the run's manifest."""

import json

import pandas as pd
import pytest
import torch
from flagged_row import INVENTED, LETTER, ROW  # tests/flagged_row.py

from coverlora.models import load_model, load_tokenizer
from coverlora.prompts import PromptFormat
from coverlora.runs.layout import RunLayout
from coverlora.train.stage import build_trainer, tokenize_rows
from coverlora.train.targets import training_examples, with_sign_off


@pytest.fixture(scope="module")
def fmt(tiny_model_path):
    return PromptFormat.for_tokenizer(load_tokenizer(tiny_model_path))


def test_a_real_batch_carries_no_loss_on_exactly_the_unbacked_sentence(tiny_model_path, data_dir, tmp_path, fmt):
    """unbacked_sentences: mask through SFTTrainer's own collator: -100 on the prompt and on the tokens of the one
    flagged sentence, the letter's other tokens and its end token trained."""
    from coverlora.config import TrainConfig

    frame = pd.DataFrame([{**ROW, "cover_letter": LETTER}] * 4)
    dataset, _, stats = tokenize_rows(frame, fmt, 768, unbacked="mask", sign_off=True)
    assert stats.unbacked_sentences == 4 and stats.signed_off == 0 and stats.masked_tokens > 0
    cfg = TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"), batch_size=4,
                      group_by_length=False, lora_r=4, lora_alpha=8)
    trainer = build_trainer(cfg, RunLayout(tmp_path / "run"), load_model(tiny_model_path, torch.float32),
                            fmt.tokenizer, dataset, None, torch.float32)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    prompt = len(fmt.prompt_ids(ROW))
    untrained = fmt.tokenizer.decode([t for t, label in zip(ids[prompt:], labels[prompt:]) if label == -100])
    trained = fmt.tokenizer.decode([t for t, label in zip(ids[prompt:], labels[prompt:]) if label != -100])
    assert all(label == -100 for label in labels[:prompt])
    assert untrained.strip() == INVENTED, untrained
    assert "I am applying for the Data Analyst role" in trained and "I write SQL reports at Bar Inc." in trained
    assert labels[-1] == fmt.end_id and stats.masked_tokens == 4 * labels[prompt:].count(-100)


def test_the_run_manifest_and_log_count_what_the_targets_changed(tiny_model_path, tmp_path, caplog):
    from conftest import make_row, write_csv

    from coverlora.config import TrainConfig
    from coverlora.train.stage import train

    data_dir = tmp_path / "data"  # the hand-made rows, each letter with one claim its resume does not back
    data_dir.mkdir()
    rows = [make_row(i) for i in range(12)]
    for row in rows:
        row["Cover Letter"] = row["Cover Letter"].replace("\n\nSincerely", " " + INVENTED + "\n\nSincerely")
    write_csv(data_dir / "train.csv", rows)
    cfg = TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"), epochs=1,
                      batch_size=4, lora_r=4, lora_alpha=8, unbacked_sentences="mask", sign_off=True)
    with caplog.at_level("INFO", logger="coverlora"):
        layout = train(cfg)
    targets = json.loads(layout.versions.read_text())["train"]["targets"]
    assert targets["unbacked"] == "mask" and targets["sign_off"] is True
    assert targets["unbacked_sentences"] > 0 and targets["masked_tokens"] > 0 and targets["letters"] > 0
    assert f"{targets['unbacked_sentences']} unbacked sentences" in caplog.text


def test_sign_off_adds_the_name_only_where_it_is_missing():
    assert with_sign_off(LETTER, ROW) == LETTER
    unsigned = LETTER.rsplit("\n", 1)[0]  # "... Sincerely,"
    assert with_sign_off(unsigned, ROW) == unsigned + "\nAna Silva"
    body = "Dear Hiring Manager,\n\nI write SQL reports at Bar Inc."
    assert with_sign_off(body, ROW) == body + "\n\nSincerely,\nAna Silva"
    assert with_sign_off(body, {**ROW, "applicant_name": ""}) == body


def test_deleted_sentences_leave_the_target_and_are_counted(fmt):
    [example], stats = training_examples([{**ROW, "cover_letter": LETTER}], fmt, unbacked="delete")
    target = fmt.tokenizer.decode(example["input_ids"][len(fmt.prompt_ids(ROW)):-1])
    assert INVENTED not in target and "I write SQL reports at Bar Inc." in target and target.endswith("Ana Silva")
    assert (stats.unbacked_sentences, stats.deleted_sentences, stats.masked_tokens) == (1, 1, 0)
    [plain], none = training_examples([{**ROW, "cover_letter": LETTER}], fmt)
    assert plain == fmt.training_example({**ROW, "cover_letter": LETTER}) and none.unbacked_sentences == 0
