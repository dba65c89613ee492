"""What a base encoder would cost the verifier's cross-encoder on this CPU, per letter, before it is trained.

    .venv/bin/python bench/encoder_cpu_speed.py --data ../shared/data/cover-letter-dataset \
        --encoder ENCODERS/all-mpnet-base-v2 --out bench/results/encoder_cpu_speed.md

The cross-encoder's adapter is merged into its base when it loads, so reading costs the base's own forward pass:
this times it on the test split's reference letters, every body sentence paired with its row exactly as the
verifier reads it (cross_encoder.encoded_pairs, batched per letter, the reader's max_length), in full precision and with
torch's dynamic int8 quantization of the linear layers. The verifier's target is 0.5 s a letter of about ten
sentences on two CPU cores. MiniLM is timed alongside as the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import _bootstrap  # noqa: E402

from coverlora.data import load_split  # noqa: E402
from coverlora.runs.layout import write_text_atomic  # noqa: E402
from coverlora.scoring.claims import cross_encoder  # noqa: E402
from coverlora.scoring.sentences import BODY, split_sentences  # noqa: E402


def seconds_per_letter(model, tokenizer, letters: list[tuple[list[str], dict]]) -> tuple[float, float]:
    """(mean, median) seconds to read one letter's body sentences, one batch a letter."""
    import torch

    times = []
    with torch.inference_mode():
        for sentences, row in letters:
            pairs = cross_encoder.encoded_pairs(sentences, [row] * len(sentences))
            _, batch = next(cross_encoder.batches(tokenizer, pairs, len(pairs), cross_encoder.Settings().max_length))
            started = time.perf_counter()
            model(**batch)
            times.append(time.perf_counter() - started)
    return statistics.mean(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--encoder", required=True, help="the base encoder's folder")
    parser.add_argument("--letters", type=int, default=40, help="test rows timed (after two warm-up letters)")
    parser.add_argument("--out", help="the table's file (markdown)")
    args = parser.parse_args()
    import torch
    from transformers import AutoModel, AutoTokenizer

    from coverlora.scoring.embeddings import minilm_path

    frame = load_split(args.data, "test")
    letters = []
    for row in frame.head(args.letters + 2).to_dict("records"):
        body = [s.text for s in split_sentences(row["cover_letter"]) if s.kind == BODY]
        if body:
            letters.append((body, row))
    lines = ["| encoder | precision | s a letter (mean) | median | sentences a letter | s per 10 sentences |",
             "|---|---|---:|---:|---:|---:|"]
    per_letter = statistics.mean(len(s) for s, _ in letters[2:])
    for label, folder in (("all-MiniLM-L6-v2 (shipped)", str(minilm_path())), (Path(args.encoder).name, args.encoder)):
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        full = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
        int8 = torch.ao.quantization.quantize_dynamic(full, {torch.nn.Linear}, dtype=torch.qint8)
        for name, model in (("fp32", full), ("int8 (dynamic)", int8)):
            seconds_per_letter(model, tokenizer, letters[:2])  # warm-up
            mean, median = seconds_per_letter(model, tokenizer, letters[2:])
            lines.append(f"| {label} | {name} | {mean:.3f} | {median:.3f} | {per_letter:.1f} | "
                         f"{10 * mean / per_letter:.3f} |")
    text = (f"{len(letters) - 2} test-row reference letters, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads. Command: `{' '.join(sys.argv)}`\n\n" + "\n".join(lines) + "\n")
    if args.out:
        write_text_atomic(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    _bootstrap.run(main)
