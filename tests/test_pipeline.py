"""End to end through the real stage scripts (subprocesses, as a user runs them) on a tiny random Llama."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def stage(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / f"{name}.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_four_stages_chain_through_the_run_folder(tiny_model_path, data_dir, tmp_path):
    run = tmp_path / "run"
    trained = stage("train", "--config", str(ROOT / "configs/demo-cpu.yaml"), "--model", tiny_model_path,
                    "--data", str(data_dir), "--output_dir", str(run), "--epochs", "1", "--logging_steps", "1")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "tok/s" in trained.stderr + trained.stdout and "no CUDA: plain LoRA" in trained.stderr

    merged = stage("merge", "--run", str(run))
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "max |logit diff|" in merged.stdout

    tested = stage("test", "--run", str(run), "--max_new_tokens", "12", "--batch_size", "3")
    assert tested.returncode == 0, tested.stderr[-3000:]
    table = pd.read_csv(run / "eval.csv", keep_default_na=False)
    assert len(table) == 4 and table["row_id"].tolist() == [0, 1, 2, 3]
    assert {"base_output", "finetuned_output", "reference", "base_new_tokens", "finetuned_seconds"} <= set(table.columns)
    assert (table["finetuned_new_tokens"] <= 12).all() and not (run / "eval.partial.jsonl").exists()

    scored = stage("metrics", "--run", str(run), "--bootstrap_resamples", "200")
    assert scored.returncode == 0, scored.stderr[-3000:]
    summary = pd.read_csv(run / "eval_summary.csv")
    assert {"base", "finetuned", "reference", "copy_input"} <= set(summary["system"])
    assert {"rouge_l", "bertscore_f1", "repetition", "seq_rep_4", "distinct_2", "company_named"} <= set(summary["metric"])
    copy_rouge = summary.query("subset == 'all' and system == 'copy_input' and metric == 'rouge_l'")["mean"].item()
    assert 0 < copy_rouge < 1
    assert (run / "plots" / "metrics_bar.png").stat().st_size > 10_000 and (run / "report.md").is_file()
    for folder in ("adapter", "merged"):  # the model cards carry the fresh eval table
        assert "| rouge_l |" in (run / folder / "README.md").read_text()
    versions = json.loads((run / "versions.json").read_text())
    assert set(versions) == {"train", "merge", "test", "metrics"} and "torch" in versions["metrics"]
    for name in ("train", "merge", "test", "metrics"):
        assert (run / f"{name}_config.yaml").is_file()

    # the resolved config is itself a valid preset: a re-run from it with --resume finds the finished adapter
    again = stage("merge", "--config", str(run / "merge_config.yaml"))
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("train", ["--data", "missing/train.csv", "--output_dir", "{tmp}/r"], "missing/train.csv: file not found"),
        ("train", ["--lora_rank", "4"], "unknown key 'lora_rank' (did you mean 'lora_r'?)"),
        ("train", ["--model", "{tmp}/no-such-model", "--data", "{data}", "--output_dir", "{tmp}/r"], "model folder not found"),
        ("merge", ["--run", "{tmp}/nothing"], "run folder not found"),
        ("test", ["--run", "{tmp}"], "not a train run folder"),
        ("metrics", ["--run", "{tmp}"], "no eval.csv in this run"),
    ],
)
def test_user_errors_exit_2_with_one_line(script, args, expected, tmp_path, data_dir):
    done = stage(script, *[a.format(tmp=tmp_path, data=data_dir) for a in args])
    assert_one_line_error(done, expected)
    assert not (tmp_path / "r").exists(), "nothing is written when the input is bad"


def test_test_split_given_as_train_split_is_refused(tmp_path, data_dir):
    (data_dir / "train.csv").write_text((data_dir / "test.csv").read_text())
    done = stage("train", "--data", str(data_dir), "--output_dir", str(tmp_path / "r"))
    assert_one_line_error(done, "the training data is the test split")
    assert not (tmp_path / "r").exists()


def assert_one_line_error(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
