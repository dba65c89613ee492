"""Several processes: the row split, merging the processes' partial files, and a 2-process gloo run on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import free_port

import coverlora.generate.batched as generation
import coverlora.generate.letters as letters
import coverlora.generate.stage as testing
from coverlora import distributed
from coverlora.config import TestConfig
from coverlora.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
FINGERPRINT = {"data": "abc", "models": ["base", "finetuned"]}


def write_partial(path: Path, records: list[dict], fingerprint: dict = FINGERPRINT, tail: str = "") -> Path:
    lines = [json.dumps({"fingerprint": fingerprint})] + [json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n" + tail, encoding="utf-8")
    return path


def letter(model: str, row_id: int, output: str | None = None) -> dict:
    return {"model": model, "row_id": row_id, "output": output or f"{model} {row_id}", "new_tokens": 3,
            "prompt_tokens": 10, "seconds": 0.1}


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [0, 1, 4, 11])
def test_shards_are_disjoint_and_cover_every_row(world, n):
    rows = [10 * i for i in range(n)]
    shares = [distributed.shard(rows, rank, world) for rank in range(world)]
    flat = [row for share in shares for row in share]
    assert sorted(flat) == rows and len(flat) == len(set(flat))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1, "balanced"
    assert all(share == sorted(share) for share in shares), "each share keeps the row order"


def test_shard_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError):
        distributed.shard([1, 2], 2, 2)


def test_rank_and_world_come_from_the_launcher_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(name, raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    assert distributed.is_main() and not distributed.is_distributed() and not distributed.fsdp_enabled()
    distributed.barrier()  # a single process never waits

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (3, 4, 1)
    assert not distributed.is_main() and distributed.is_distributed() and distributed.fsdp_enabled()
    assert distributed.cuda_device_index() == 1


def test_partial_file_names_per_process(tmp_path):
    base = tmp_path / "eval.partial.jsonl"
    assert distributed.rank_partial_path(base, 0, 1) == base, "a single process keeps today's file"
    assert distributed.rank_partial_path(base, 1, 2).name == "eval.partial.rank1.jsonl"
    validation = tmp_path / "eval_validation.partial.jsonl"
    assert distributed.rank_partial_path(validation, 0, 2).name == "eval_validation.partial.rank0.jsonl"

    for name in ("eval.partial.rank10.jsonl", "eval.partial.rank2.jsonl", "eval.partial.jsonl",
                 "eval_validation.partial.rank0.jsonl", "eval.partial.rankX.jsonl", "eval.partial.rank1.jsonl.tmp"):
        (tmp_path / name).write_text("{}\n")
    found = [path.name for path in distributed.partial_paths(base)]
    assert found == ["eval.partial.jsonl", "eval.partial.rank2.jsonl", "eval.partial.rank10.jsonl"]
    assert [p.name for p in distributed.partial_paths(validation)] == ["eval_validation.partial.rank0.jsonl"]


def test_merge_restores_row_order_without_duplicates_or_losses(tmp_path):
    """Rows of a killed 1-process run, then of a resumed 3-process run that redid one of them."""
    base = tmp_path / "eval.partial.jsonl"
    write_partial(base, [letter("base", 2), letter("base", 0)], tail='{"model": "base", "row_id": 5, "outp')
    write_partial(tmp_path / "eval.partial.rank0.jsonl", [letter("base", 3), letter("finetuned", 5)])
    write_partial(tmp_path / "eval.partial.rank1.jsonl", [letter("base", 4), letter("base", 2, "redone"),
                                                         letter("finetuned", 0)])
    write_partial(tmp_path / "eval.partial.rank2.jsonl", [letter("base", 1), letter("base", 5)])
    done = distributed.merge_partials(distributed.partial_paths(base), FINGERPRINT)
    assert len(done) == 8
    rows = distributed.in_row_order(done, "base", [0, 1, 2, 3, 4, 5])
    assert [r["row_id"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[2]["output"] == "redone", "a row found twice keeps the copy read last"
    with pytest.raises(UserError, match=r"4 finetuned letters are missing .*row_id 1, 2, 3, 4.*rerun"):
        distributed.in_row_order(done, "finetuned", range(6))


def test_a_line_cut_by_a_kill_is_skipped_and_later_rows_survive(tmp_path):
    own = write_partial(tmp_path / "eval.partial.rank0.jsonl", [letter("base", 0)], tail='{"model": "base", "row_')
    distributed.end_line(own)  # what run_test does before appending to its own file again
    distributed.end_line(own)  # idempotent
    with open(own, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(letter("base", 1)) + "\n" + "not json\n" + json.dumps(letter("base", 2)) + "\n")
    header, records = distributed.read_partial(own)
    assert header == {"fingerprint": FINGERPRINT}
    assert [r["row_id"] for r in records] == [0, 1, 2]
    distributed.end_line(tmp_path / "missing.jsonl")  # no file: nothing to do
    assert not (tmp_path / "missing.jsonl").exists()


def test_files_of_another_setup_are_refused(tmp_path):
    base = tmp_path / "eval.partial.jsonl"
    write_partial(tmp_path / "eval.partial.rank0.jsonl", [letter("base", 0)])
    write_partial(tmp_path / "eval.partial.rank1.jsonl", [letter("base", 1)], fingerprint={"data": "other"})
    with pytest.raises(UserError, match="rank1.jsonl: unfinished results from a different setup.*--overwrite"):
        distributed.merge_partials(distributed.partial_paths(base), FINGERPRINT)
    assert len(distributed.merge_partials(distributed.partial_paths(base))) == 2, "no fingerprint: no check"


# ---- two processes under `accelerate launch` on the CPU (gloo) ----

def launch(script: str, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "configs/accelerate/cpu-gloo.yaml"), "--num_processes", str(processes),
               "--main_process_port", str(free_port()), str(ROOT / script), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # ~80 s on 2 cores: three launches of 2 processes each
def test_two_processes_train_and_test_like_one(tiny_model_path, data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    trained = launch("train.py", "--model", tiny_model_path, "--data", str(data_dir), "--output_dir", str(run),
                     "--max_steps", "2", "--batch_size", "2", "--logging_steps", "1", "--lora_dropout", "0")
    assert trained.returncode == 0, trained.stderr[-3000:]
    # one writer: each log record once, the info lines of the main process only, one adapter
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert trained.stderr.count("training on 11 rows") == 1 and trained.stderr.count("adapter saved to") == 1
    assert (run / "adapter" / "adapter_model.safetensors").is_file() and not (run / ".adapter.tmp").exists()
    versions = json.loads((run / "versions.json").read_text())
    assert versions["train"]["processes"] == 2 and not versions["train"]["fsdp"]
    assert log[0]["epoch"] == pytest.approx(1 / 3, abs=1e-3), "11 rows, 2 processes x 2 rows a step: 3 steps an epoch"

    # a resume continues from the last checkpoint, in both processes: only the new step is trained and logged
    assert (run / "checkpoints" / "checkpoint-2").is_dir()
    resumed = launch("train.py", "--model", tiny_model_path, "--data", str(data_dir), "--output_dir", str(run),
                     "--max_steps", "3", "--batch_size", "2", "--logging_steps", "1", "--lora_dropout", "0", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert (run / "checkpoints" / "checkpoint-3").is_dir() and (run / "adapter" / "adapter_model.safetensors").is_file()

    # one process, in this pytest process: the reference letters (batch size 1, so padding cannot differ)
    settings = dict(run=str(run), max_new_tokens=6, batch_size=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each launched process runs: the same float sums, so the same greedy letters
    try:
        _, reference = testing.run_test(TestConfig(**settings))
    finally:
        torch.set_num_threads(threads)

    # a 1-process run killed after its first letter, whose row is then marked to see that it is not redone
    real, calls = generation.generate_batch, []

    def killed_after_first_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(letters, "generate_batch", killed_after_first_batch)  # what generate_all passes on
    with pytest.raises(KeyboardInterrupt):
        testing.run_test(TestConfig(**settings))
    base = run / "eval.partial.jsonl"
    header, (first,) = distributed.read_partial(base)
    write_partial(base, [{**first, "output": "KEPT"}], header["fingerprint"], tail='{"model": "finetuned", "ro')

    tested = launch("test.py", "--run", str(run), "--max_new_tokens", "6", "--batch_size", "1")
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "[process 0/2]" in tested.stderr and "[process 1/2]" in tested.stderr, "both processes generated"
    table = pd.read_csv(run / "eval.csv", keep_default_na=False)
    assert table["row_id"].tolist() == [0, 1, 2, 3], "every row once, in the test split's order"
    assert not list(run.glob("eval.partial*")), "partial files are removed once eval.csv is written"
    kept = table["row_id"] == first["row_id"]
    assert table.loc[kept, f"{first['model']}_output"].item() == "KEPT", "the finished row was not generated again"
    for tag in ("base", "finetuned"):
        redone = table[f"{tag}_output"] != reference[f"{tag}_output"].values
        assert table.loc[redone, f"{tag}_output"].tolist() == (["KEPT"] if tag == first["model"] else []), tag
    assert json.loads((run / "versions.json").read_text())["test"]["processes"] == 2


def test_plain_python_with_several_gpus_trains_on_one(tmp_path, monkeypatch, caplog):
    """Trainer would wrap the model in nn.DataParallel over every visible GPU, which SFTTrainer refuses."""
    from trl import SFTConfig

    from coverlora.train import stage as training

    args = SFTConfig(output_dir=str(tmp_path), report_to="none", bf16=False)
    args._n_gpu = 2  # what TrainingArguments finds on a 2-GPU machine when no launcher started the process
    assert args.n_gpu == 2
    with caplog.at_level("WARNING", logger="coverlora"):
        assert training.one_gpu_per_process(args).n_gpu == 1
    assert "accelerate launch" in caplog.text and "--num_processes 2" in caplog.text

    args._n_gpu = 2
    monkeypatch.setattr(training.distributed, "is_distributed", lambda: True)  # under accelerate launch: untouched
    assert training.one_gpu_per_process(args).n_gpu == 2
