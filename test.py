"""Generate base and fine-tuned letters for every test row, into <run>/eval.csv.

Usage:
    python test.py --run runs/demo
    python test.py --config configs/demo-cpu.yaml                    # the preset's run folder and settings
    python test.py --run runs/demo --data path/to/test.csv --max_new_tokens 256 --limit 50
    python test.py --run runs/demo --models finetuned --batch_size 128

Greedy decoding, stopping at EOS, in length-sorted, left-padded batches. Finished letters are appended to
<run>/eval.partial.jsonl as they come, so a killed run resumes where it stopped; eval.csv is written
atomically at the end. The test data defaults to test.csv beside the training data.
Next: python metrics.py --run <run>
"""

from coverlora.cli import run_stage
from coverlora.config import TestConfig
from coverlora.distributed import is_main
from coverlora.generate.stage import run_test


def main(cfg: TestConfig) -> None:
    run, table = run_test(cfg)
    if is_main():  # under accelerate launch, one summary, not one per process
        print(f"eval.csv: {run.layout.eval_csv} ({len(table)} rows)\nnext:     python metrics.py --run {run.layout.root}")


if __name__ == "__main__":
    run_stage("test", main)
