"""The untuned model's repetition guard, measured: the service's own prompts and greedy decoding, with and without
no_repeat_ngram_size / repetition_penalty, on the embedded SmolLM2-135M-Instruct (never fine-tuned for letters).

Prompts: README's curl example (the one that looped "Dear [Recipient's Name]") and bench/serve_load.py's four jobs.
Per setting: mean repetition (1 - unique/total words) and seq-rep-4 (scoring.repetition), letters that ran to the
cap, mean new tokens, and how many letters name the company or hold placeholders (scoring.grounding).

  python bench/repetition_guard.py --max_new_tokens 256 --out bench/results/repetition_guard_smollm2_cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serve_load import JOBS  # noqa: E402
from coverlora.config import ServeConfig  # noqa: E402
from coverlora.scoring.repetition import repetition_ratio, seq_rep_n  # noqa: E402
from coverlora.scoring.rules import check_rules  # noqa: E402
from coverlora.service.letters import body_to_row  # noqa: E402
from coverlora.service.writer import LetterWriter  # noqa: E402

README_EXAMPLE = ({"title": "Data Analyst", "company": "Acme Corp"}, {"name": "Ana Silva", "skills": "SQL, Tableau"})
SETTINGS = [("off", 1.0, 0), ("no_repeat_ngram_size 3", 1.0, 3), ("no_repeat_ngram_size 4", 1.0, 4),
            ("repetition_penalty 1.2", 1.2, 0), ("no_repeat 4 + penalty 1.1", 1.1, 4)]


def rows() -> list[dict[str, str]]:
    return [body_to_row({"job": dict(job), "resume": dict(resume)}) for job, resume in [README_EXAMPLE, *JOBS]]


def measure(writer: LetterWriter, name: str, penalty: float, ngram: int, max_new: int) -> dict:
    writer.decoding = {"repetition_penalty": penalty, "no_repeat_ngram_size": ngram}
    inputs = rows()
    started = time.perf_counter()
    texts, counts = writer.generate([writer.format.prompt_ids(row) for row in inputs], max_new, max_seconds=3600)
    checks = [check_rules(text, row) for text, row in zip(texts, inputs)]
    return {"setting": name, "repetition_penalty": penalty, "no_repeat_ngram_size": ngram,
            "repetition": round(statistics.mean(map(repetition_ratio, texts)), 3),
            "seq_rep_4": round(statistics.mean(seq_rep_n(text, 4) for text in texts), 3),
            "at_cap": sum(count >= max_new for count in counts), "letters": len(texts),
            "mean_new_tokens": round(statistics.mean(counts), 1),
            "company_named": sum(bool(check["company_named"]) for check in checks),
            "with_placeholders": sum(bool(check["has_placeholder"]) for check in checks),
            "seconds": round(time.perf_counter() - started, 1), "first_letter": texts[0]}


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Repetition guard for an untuned model: SmolLM2-135M-Instruct (embedded), 2-core CPU", "",
             f"Command: `{command}`", "",
             "| setting | repetition | seq-rep-4 | at cap | mean new tokens | names company | placeholders |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['setting']} | {r['repetition']:.3f} | {r['seq_rep_4']:.3f} | {r['at_cap']}/{r['letters']} | "
                     f"{r['mean_new_tokens']:.0f} | {r['company_named']}/{r['letters']} | "
                     f"{r['with_placeholders']}/{r['letters']} |")
    lines += ["", "Repetition: 1 - unique/total words; seq-rep-4: share of 4-grams that repeat an earlier one (both "
              "means over the letters). The first letter of each setting (README's curl example):", ""]
    for r in results:
        lines += [f"**{r['setting']}**", "", "> " + r["first_letter"][:600].replace("\n", "\n> "), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--out", default="bench/results/repetition_guard_smollm2_cpu", help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    writer = LetterWriter.from_config(ServeConfig(model="embedded"))
    results = []
    for name, penalty, ngram in SETTINGS:
        results.append(measure(writer, name, penalty, ngram, args.max_new_tokens))
        r = results[-1]
        print(f"{name:28} repetition {r['repetition']:.3f}  seq-rep-4 {r['seq_rep_4']:.3f}  at cap {r['at_cap']}/"
              f"{r['letters']}  {r['seconds']:.0f} s", flush=True)
    command = "python bench/repetition_guard.py " + " ".join(sys.argv[1:])
    Path(args.out + ".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    Path(args.out + ".md").write_text(markdown(results, command) + "\n", encoding="utf-8")
    print(f"results: {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
