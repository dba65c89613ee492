"""Merge a trained LoRA adapter into its base model, producing a normal Hugging Face checkpoint.

Usage:
    python merge.py --run runs/demo
    python merge.py --config configs/demo-cpu.yaml          # the run folder from the preset's train section
    python merge.py --run runs/llama2 --precision fp16      # 7B on a T4: 16-bit, never into the 4-bit base

The base model is read from <run>/train_config.yaml. Merged and adapter logits are compared on a few prompts
and the max difference printed. Safe to re-run: merged/ is replaced only once the new one is complete.
Next: python test.py --run <run>
"""

from coverlora.cli import run_stage
from coverlora.config import MergeConfig
from coverlora.merge.stage import merge


def main(cfg: MergeConfig) -> None:
    run, max_diff = merge(cfg)
    print(f"merged: {run.layout.merged} (max |logit diff| vs adapter {max_diff:.3g})\nnext:   python test.py --run {run.layout.root}")


if __name__ == "__main__":
    run_stage("merge", main)
