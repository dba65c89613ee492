"""Write the generated letters of the claim checker's labelled set (run once; its output is committed).

The embedded SmolLM2-135M-Instruct (base, the pipeline's own prompt), greedy, batch 8, on a fixed sample of
test rows. Its letters are what the checker must judge in practice: they claim the hiring company as an
employer and restate the posting as experience. Heavy: run under the shared lock.

    flock /tmp/coverlora-heavy.lock .venv/bin/python scripts/make_claim_letters.py \
        --data ../shared/data/cover-letter-dataset --out data/claims/generated_smollm2.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from coverlora.data import load_split  # noqa: E402
from coverlora.generate.batched import generate_batch  # noqa: E402
from coverlora.models import embedded_model_path, load_model, load_tokenizer  # noqa: E402
from coverlora.prompts import PromptFormat  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max_new_tokens", type=int, default=400)
    args = parser.parse_args()

    torch.set_num_threads(2)
    test = load_split(args.data, "test")
    rows = sorted(random.Random(args.seed).sample(range(len(test)), args.n))
    path = str(embedded_model_path())
    tokenizer, model = load_tokenizer(path), load_model(path, torch.float32).eval()
    fmt = PromptFormat.for_tokenizer(tokenizer)
    started, records = time.perf_counter(), []
    for start in range(0, len(rows), 8):
        batch = rows[start:start + 8]
        prompts = [fmt.prompt_ids(test.iloc[i].to_dict()) for i in batch]
        texts, _ = generate_batch(model, tokenizer, prompts, args.max_new_tokens, kv_cache="dynamic")
        records += [{"split": "test", "row": i, "model": "smollm2-135m-base", "letter": text}
                    for i, text in zip(batch, texts)]
        print(f"{len(records)}/{len(rows)} letters, {time.perf_counter() - started:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


if __name__ == "__main__":
    main()
