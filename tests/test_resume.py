"""Kills and resumes: the test stage keeps finished rows; a partial line cut by a kill is ignored."""

import json

import pandas as pd
import pytest

import coverlora.generate.batched as generation
import coverlora.generate.slots as slots
import coverlora.generate.stage as testing
from coverlora.config import TestConfig, TrainConfig
from coverlora.errors import UserError
from coverlora.train.stage import train


@pytest.fixture()
def trained_run(tiny_model_path, data_dir, tmp_path):
    cfg = TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "run"), max_steps=1,
                      eval_strategy="no", batch_size=4)
    return train(cfg)


@pytest.mark.parametrize("kv_cache", ["slots", "preallocated"])
def test_killed_test_stage_resumes_without_redoing_or_duplicating(trained_run, monkeypatch, kv_cache):
    cfg = TestConfig(run=str(trained_run.root), max_new_tokens=4, batch_size=2, kv_cache=kv_cache)
    real, calls = generation.letters_from, []  # every kind of decoding turns its tokens into letters here

    def killed_after_first_batch(tokenizer, new, stop_ids):
        calls.append(len(new))
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill) does mid-run
        return real(tokenizer, new, stop_ids)

    for module in (generation, slots):  # batched decoding and the slot engine each turn tokens into letters
        monkeypatch.setattr(module, "letters_from", killed_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        testing.run_test(cfg)
    partial = trained_run.eval_partial
    assert not trained_run.eval_csv.exists(), "no half-written eval.csv"
    assert len(partial.read_text().splitlines()) == 1 + 2  # header + the first batch
    with open(partial, "a") as handle:
        handle.write('{"model": "base", "row_id": 3, "outp')  # a line cut short by the kill

    calls.clear()
    for module in (generation, slots):
        monkeypatch.setattr(module, "letters_from", lambda *a: (calls.append(len(a[1])), real(*a))[1])
    _, table = testing.run_test(cfg)
    assert sum(calls) == 4 * 2 - 2, "the two finished base letters are not generated again"
    assert table["row_id"].tolist() == [0, 1, 2, 3] and table["row_id"].is_unique
    assert pd.read_csv(trained_run.eval_csv)["row_id"].tolist() == [0, 1, 2, 3]


def test_partial_results_from_other_settings_are_not_mixed_in(trained_run):
    trained_run.eval_partial.write_text(json.dumps({"fingerprint": {"data": "other"}}) + "\n")
    with pytest.raises(UserError, match="different setup.*--overwrite"):
        testing.run_test(TestConfig(run=str(trained_run.root), max_new_tokens=2, models="base"))
    _, table = testing.run_test(TestConfig(run=str(trained_run.root), max_new_tokens=2, models="base", overwrite=True))
    assert len(table) == 4 and "finetuned_output" not in table


def test_train_resume_continues_from_the_checkpoint(tiny_model_path, data_dir, tmp_path):
    """A run stopped after epoch 1 and resumed ends where an uninterrupted run does (same data order)."""
    from safetensors.torch import load_file

    common = dict(model=tiny_model_path, data=str(data_dir), batch_size=4, warmup_steps=0, learning_rate=5e-3,
                  eval_strategy="epoch", lr_scheduler="constant", lora_dropout=0.0)
    straight = train(TrainConfig(output_dir=str(tmp_path / "a"), epochs=2, **common))

    # "killed" after the first epoch's checkpoint: same config, max_steps cuts it there
    interrupted = TrainConfig(output_dir=str(tmp_path / "b"), epochs=2, max_steps=3, **common)
    layout = train(interrupted)
    import shutil

    shutil.rmtree(layout.adapter)  # the kill came before the final save...
    assert (layout.checkpoints / "checkpoint-3" / "trainer_state.json").is_file()
    half_written = layout.checkpoints / "checkpoint-5"  # ...and in the middle of the next checkpoint's save
    shutil.copytree(layout.checkpoints / "checkpoint-3", half_written)
    (half_written / "trainer_state.json").unlink()
    resumed = train(TrainConfig(output_dir=str(tmp_path / "b"), epochs=2, resume=True, **common))
    a = load_file(str(straight.adapter / "adapter_model.safetensors"))
    b = load_file(str(resumed.adapter / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5, key
    assert not half_written.exists()


def test_train_killed_with_sigkill_resumes_to_the_same_adapter(tiny_model_path, data_dir, tmp_path):
    """A real kill -9 of train.py mid-run (as soon as its first checkpoint is complete), then --resume."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from safetensors.torch import load_file

    root = Path(__file__).resolve().parent.parent

    def command(out, *extra):
        return [sys.executable, str(root / "train.py"), "--model", tiny_model_path, "--data", str(data_dir),
                "--output_dir", str(out), "--epochs", "3", "--batch_size", "4", "--warmup_steps", "0",
                "--learning_rate", "5e-3", "--lr_scheduler", "constant", "--lora_dropout", "0",
                "--eval_strategy", "no", *extra]  # no best-checkpoint pick: the adapter is the last step's

    assert subprocess.run(command(tmp_path / "a"), capture_output=True, timeout=600).returncode == 0
    victim = subprocess.Popen(command(tmp_path / "b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "b" / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not first.is_file() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "b" / "adapter").exists()
    resumed = subprocess.run(command(tmp_path / "b", "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(str(tmp_path / "a" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() < 1e-5 for k in a)


def test_sigkilled_test_py_resumes_without_lost_or_duplicated_rows(tiny_model_path, tmp_path):
    """A real `python test.py` killed with SIGKILL while decoding, then run again: every row once, and the same
    letters as a run never killed."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from conftest import make_row, write_csv

    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "train.csv", [make_row(i) for i in range(8)])
    write_csv(data / "test.csv", [make_row(100 + i) for i in range(12)])
    run = train(TrainConfig(model=tiny_model_path, data=str(data), output_dir=str(tmp_path / "run"), max_steps=1,
                            eval_strategy="no", batch_size=4))
    repo = Path(__file__).resolve().parent.parent
    command = [sys.executable, str(repo / "test.py"), "--run", str(run.root), "--batch_size", "1", "--max_new_tokens", "48"]
    child = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        lines = run.eval_partial.read_text().count("\n") if run.eval_partial.exists() else 0
        if lines >= 4:  # the fingerprint and three letters: decoding is under way
            break
        time.sleep(0.05)
    assert child.poll() is None, "test.py ended before it could be killed: raise the work per letter"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not run.eval_csv.exists()
    killed_at = run.eval_partial.read_text().count("\n") - 1
    assert 3 <= killed_at < 24
    subprocess.run(command, cwd=repo, check=True, capture_output=True)
    resumed = pd.read_csv(run.eval_csv)
    assert resumed["row_id"].tolist() == list(range(12))
    run.eval_csv.rename(tmp_path / "resumed.csv")
    subprocess.run(command + ["--overwrite", "true"], cwd=repo, check=True, capture_output=True)
    fresh = pd.read_csv(run.eval_csv)
    for column in ("base_output", "finetuned_output"):
        assert resumed[column].fillna("").tolist() == fresh[column].fillna("").tolist()
