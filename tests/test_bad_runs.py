"""Stage inputs from the wrong run: an adapter for another base model, an eval.csv this run did not write."""

import json

import pytest

from coverlora.config import MergeConfig, TrainConfig
from coverlora.errors import UserError
from coverlora.merge.stage import merge
from coverlora.metrics import read_eval_csv
from coverlora.runs.layout import RunLayout, file_sha256
from coverlora.train.stage import train


def test_merge_refuses_an_adapter_trained_on_another_base(tiny_model_path, data_dir, tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    layout = train(TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"),
                               max_steps=1, eval_strategy="no", batch_size=4))
    other = tmp_path / "wider-llama"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(other)
    tokenizer.save_pretrained(other)
    saved = layout.stage_config("train")
    saved.write_text(saved.read_text().replace(tiny_model_path, str(other)))
    with pytest.raises(UserError, match="cannot read the adapter .*trained on .*wider-llama"):
        merge(MergeConfig(run=str(layout.root)))
    assert not layout.merged.exists()


def test_a_truncated_adapter_is_one_line_in_merge_and_test(tiny_model_path, data_dir, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    layout = train(TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"),
                               max_steps=1, eval_strategy="no", batch_size=4))
    weights = layout.adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    repo = Path(__file__).resolve().parent.parent
    for script in ("merge.py", "test.py"):
        done = subprocess.run([sys.executable, str(repo / script), "--run", str(layout.root), "--limit", "1"][: 4 if script == "merge.py" else 6],
                              capture_output=True, text=True, cwd=repo)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and "cannot read the adapter" in lines[-1] and "Traceback" not in done.stderr
    assert not layout.merged.exists() and not layout.eval_csv.exists()


def test_metrics_refuses_an_eval_csv_this_run_did_not_write(tmp_path):
    layout = RunLayout(tmp_path)
    layout.eval_csv.write_text("row_id,job_title\n0,Nurse\n")
    layout.versions.write_text(json.dumps({"test": {"eval_csv_sha256": file_sha256(layout.eval_csv)}}))
    layout.eval_csv.write_text("row_id,job_title\n0,Data Analyst\n")  # another test set's file copied in
    with pytest.raises(UserError, match="not the one this run's test.py wrote.*python test.py --run"):
        read_eval_csv(layout)


def test_metrics_names_missing_columns(tmp_path):
    layout = RunLayout(tmp_path)
    layout.eval_csv.write_text("row_id,job_title\n0,Nurse\n")
    with pytest.raises(UserError, match="eval.csv lacks columns"):
        read_eval_csv(layout)


@pytest.mark.parametrize("diff", [float("nan"), float("inf")])
def test_the_merge_check_fails_on_non_finite_logits(diff):
    """NaN compares as 'not above' any limit: without its own check a diverged adapter would merge with exit 0."""
    import torch

    from coverlora.merge.stage import check_merge

    for dtype in (torch.float32, torch.bfloat16):
        with pytest.raises(UserError, match="not finite"):
            check_merge(diff, 1.0, dtype, 0.0, "adapter")
    check_merge(1e-5, 1.0, torch.float32, 0.0, "adapter")  # a finite, tiny difference passes


def test_a_hub_model_id_offline_fails_within_five_seconds(monkeypatch):
    import time

    from coverlora.models import resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(UserError, match="model 'meta-llama/Llama-2-7b-chat-hf'.*hub id, and the Hugging Face Hub cannot"):
        resolve_model("meta-llama/Llama-2-7b-chat-hf")
    assert time.perf_counter() - started < 5
