"""Preference training on top of a fine-tuned run: DPO on pairs of the model's own letters for the training rows.

Usage:
    python prefer.py --run runs/filtered-42                               # pairs, then DPO, into runs/filtered-42-dpo
    python prefer.py --run runs/filtered-42 --samples 8 --beta 0.2 --output_dir runs/dpo-b0.2
    python prefer.py --run runs/filtered-42 --resume                      # after a kill: pairs kept, DPO continues

For each training row (never a validation or test row) the SFT model writes its greedy letter and --samples
samples; the claim verifier judges them; chosen = no flagged claim and the most supported claims, rejected = a
flagged claim, length-matched where possible (coverlora/prefer/pairs.py). DPO then trains the SFT adapter, the
reference being a frozen copy of it. The output is a run folder like train.py's.
Next: python merge.py --run <output_dir>, then test.py and metrics.py as for any run.
"""

from coverlora.cli import run_stage
from coverlora.config import PreferConfig
from coverlora.prefer.stage import prefer


def main(cfg: PreferConfig) -> None:
    out = prefer(cfg)
    print(f"adapter: {out.adapter}\npairs:   {out.root / 'pairs.jsonl'}\nnext:    python merge.py --run {out.root}")


if __name__ == "__main__":
    run_stage("prefer", main)
