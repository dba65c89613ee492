"""The memory estimate: right order of magnitude against measured peaks, and a clear refusal."""

import json

import pytest

from coverlora.errors import UserError
from coverlora.train import memory as resources

LLAMA2_7B = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 32000, "intermediate_size": 11008,
             "num_attention_heads": 32, "num_key_value_heads": 32}


def test_llama2_7b_has_6_7b_parameters():
    assert abs(resources.parameter_count(LLAMA2_7B) - 6.74e9) < 0.02e9


@pytest.mark.parametrize(("tokens", "checkpointing", "measured_gib"), [(4 * 768, True, 6.29), (8192, False, 48.5)])
def test_estimate_is_within_30_percent_of_the_h100_benchmark(tokens, checkpointing, measured_gib):
    estimate = resources.estimate_bytes(LLAMA2_7B, 0.55, tokens, training=True, checkpointing=checkpointing) / 2**30
    assert abs(estimate - measured_gib) / measured_gib < 0.3


def test_refuses_a_model_that_cannot_fit(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B))
    monkeypatch.setattr(resources, "available_bytes", lambda: (4 * 2**30, "this GPU (T4) has"))
    with pytest.raises(UserError, match=r"needs ~\d+\.\d GiB, this GPU \(T4\) has 4.0 GiB free.*fix: use t4") as caught:
        resources.check_fits(str(tmp_path), 2, 4 * 768, training=True, advice="use t4")
    assert "\n" not in str(caught.value)


def test_warns_without_refusing_within_the_margin(tmp_path, monkeypatch, caplog):
    # 4-bit inference needs ~3.9 GiB: over the 3.5 GiB free, but within the estimate's 25% margin
    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B))
    monkeypatch.setattr(resources, "available_bytes", lambda: (3.5 * 2**30, "this GPU has"))
    with caplog.at_level("INFO", logger="coverlora"):
        resources.check_fits(str(tmp_path), 0.55, 768, training=False, advice="use t4")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "memory is tight: needs ~3.9 GiB, this GPU has 3.5 GiB free (use t4)")]


def test_gpu_oom_while_training_is_one_line_with_the_settings_to_change(tiny_model_path, data_dir, tmp_path, monkeypatch):
    import torch
    from transformers import Trainer

    from coverlora.config import TrainConfig
    from coverlora.train.stage import train

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", out_of_memory)
    cfg = TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"), batch_size=4)
    with pytest.raises(UserError, match=r"out of GPU memory while training \(batch_size 4, max_length 768, "
                                        r"gradient_checkpointing False\).*--gradient_checkpointing true") as caught:
        train(cfg)
    assert "\n" not in str(caught.value)
