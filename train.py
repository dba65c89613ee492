"""QLoRA supervised fine-tuning: job description + resume → cover letter.

Usage:
    # the offline CPU demo (embedded SmolLM2-135M-Instruct, the sample data shipped in data/)
    python train.py --config configs/demo-cpu.yaml

    # the reference recipe on a T4 (Llama-2-7B-chat, 4-bit NF4) on the real dataset
    python train.py --config configs/t4-llama2-7b.yaml --data path/to/cover-letter-dataset

    # any key can be overridden; continue a killed run with --resume
    python train.py --config configs/demo-cpu.yaml --epochs 2 --lora_r 16 --output_dir runs/r16
    python train.py --config configs/demo-cpu.yaml --resume

Writes to <output_dir>/: adapter/ (+ tokenizer), checkpoints/, train_log.jsonl, train_config.yaml, versions.json.
Next: python merge.py --run <output_dir>
"""

from coverlora.cli import run_stage
from coverlora.config import TrainConfig
from coverlora.distributed import is_main
from coverlora.train.stage import train


def main(cfg: TrainConfig) -> None:
    layout = train(cfg)
    if is_main():  # under accelerate launch, one summary, not one per process
        print(f"adapter: {layout.adapter}\nnext:    python merge.py --run {layout.root}")


if __name__ == "__main__":
    run_stage("train", main)
