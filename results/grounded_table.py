"""The grounded-letters table of results/README.md from the runs of results/run_grounded.sh and one metrics-scored
run of results/run_smollm2.sh (folders full-42, filtered-greedy, grounded-t0.7, claims-42 under RUNS).

Usage: python results/grounded_table.py RUNS > results/smollm2/grounded.md
"""
import sys

import pandas as pd

RUNS = sys.argv[1]
runs = [("base SmolLM2-135M-Instruct", "full-42", "base"), ("fine-tuned, all rows, greedy", "full-42", "finetuned"),
        ("fine-tuned, quality-filtered, greedy", "filtered-greedy", "finetuned"),
        ("fine-tuned, quality-filtered, grounded decoding (T 0.7, greedy + 8 samples)", "grounded-t0.7", "finetuned"),
        ("fine-tuned on claim-filtered data (224 rows), greedy", "claims-42", "finetuned"),
        ("reference letters", "full-42", "reference"), ("copy-the-input baseline", "full-42", "copy_input"),
        ("fixed template baseline", "full-42", "template"), ("retrieval baseline", "full-42", "retrieval")]
subs = {"all": "all", "novel": "novel (no exact or near-duplicate training letter)"}
cols = [("all","has_flagged_claim","flagged (all)"), ("novel","has_flagged_claim","flagged (novel)"),
        ("all","has_borrowed_claim","borrowed"), ("all","has_unsupported_claim","unsupported"),
        ("all","claim_support","claim support"), ("all","rouge_l","ROUGE-L"), ("novel","rouge_l","ROUGE-L novel"),
        ("all","company_named","company"), ("all","title_named","title"), ("all","name_named","applicant"),
        ("all","unsupported_years","unsupported years")]
print("| system | " + " | ".join(c[2] for c in cols) + " |")
print("|---|" + "---:|"*len(cols))
for label, run, system in runs:
    s = pd.read_csv(f"{RUNS}/{run}/eval_summary.csv")
    cells = []
    for sub, metric, _ in cols:
        hit = s[(s.subset==subs[sub])&(s.system==system)&(s.metric==metric)]["mean"]
        cells.append("–" if hit.empty or pd.isna(hit.iloc[0]) else f"{hit.iloc[0]:.3f}")
    print(f"| {label} | " + " | ".join(cells) + " |")
