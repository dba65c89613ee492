"""The metrics stage's outputs a person reads: plots and report.md."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from coverlora.runs.layout import RunLayout, atomic_path, write_text_atomic

HEADLINE = ("rouge_l", "bertscore_f1", "repetition", "seq_rep_4", "distinct_2", "company_named", "title_named",
            "name_named", "unsupported_years", "entity_precision", "has_placeholder", "claim_support",
            "supported_claims", "has_flagged_claim", "has_specific_claim", "has_borrowed_claim",
            "has_unsupported_claim", "self_bleu_4", "letter_words")
SYSTEM_ORDER = ("base", "finetuned", "reference", "copy_input", "template", "retrieval")
SYSTEM_COLORS = {"base": "#9aa5b1", "finetuned": "#2f6fb0", "reference": "#4caf50", "copy_input": "#d9a441",
                 "template": "#c97b63", "retrieval": "#8e6bb0"}


def plot_summary(summary: pd.DataFrame, scores: pd.DataFrame, table: pd.DataFrame, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    overall = summary[summary.subset == "all"]
    metrics = [m for m in HEADLINE if m in set(overall.metric)]
    fig, axes = plt.subplots(2, (len(metrics) + 1) // 2, figsize=(3.2 * ((len(metrics) + 1) // 2), 6.5))
    for ax, metric in zip(axes.flat, metrics):
        rows = overall[overall.metric == metric].set_index("system").reindex([s for s in SYSTEM_ORDER])
        rows = rows.dropna(subset=["mean"])
        ax.bar(rows.index, rows["mean"], yerr=rows["std"].fillna(0), capsize=3,
               color=[SYSTEM_COLORS[system] for system in rows.index])
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", rotation=35, labelsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("base vs fine-tuned (mean ± std, all test rows)")
    fig.tight_layout()
    paths.append(_save(fig, folder / "metrics_bar.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    lengths = dict(zip(table["row_id"], table["reference"].str.len()))
    for system in ("base", "finetuned"):
        part = scores[scores.system == system]
        if len(part):
            ax.scatter(part["row_id"].map(lengths), part["rouge_l"], s=12, alpha=0.7, label=system,
                       color=SYSTEM_COLORS[system])
    ax.set_xlabel("reference length (characters)")
    ax.set_ylabel("ROUGE-L F1")
    ax.legend()
    ax.set_title("ROUGE-L against reference length")
    fig.tight_layout()
    paths.append(_save(fig, folder / "rouge_vs_length.png"))
    plt.close("all")
    return paths


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def _markdown_table(frame: pd.DataFrame) -> str:
    frame = frame.fillna("")
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "\n".join("| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False))


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def headline_table(summary: pd.DataFrame, subset: str) -> pd.DataFrame:
    """Metrics as rows, systems as columns, plus the fine-tuned − base difference and its 95% CI."""
    part = summary[(summary.subset == subset) & summary.metric.isin(HEADLINE)]
    wide = part.pivot_table(index="metric", columns="system", values="mean", aggfunc="first")
    wide = wide.reindex(index=[m for m in HEADLINE if m in wide.index], columns=[s for s in SYSTEM_ORDER if s in wide.columns])
    diffs = part[part.system == "finetuned"].set_index("metric")
    if "diff_vs_base" in diffs and diffs["diff_vs_base"].notna().any():
        wide["finetuned − base [95% CI]"] = [
            f"{d['diff_vs_base']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if m in diffs.index and pd.notna(d["diff_vs_base"]) else ""
            for m in wide.index for d in [diffs.loc[m] if m in diffs.index else {}]]
    return wide.reset_index()


def flagged_of(scores: pd.DataFrame, row_id: int, system: str) -> list[dict]:
    hit = scores[(scores.row_id == row_id) & (scores.system == system)]
    if hit.empty or "flagged_sentences" not in hit or not isinstance(hit["flagged_sentences"].iloc[0], str):
        return []
    return json.loads(hit["flagged_sentences"].iloc[0] or "[]")


def marked_letter(letter: str, flagged: list[dict]) -> str:
    """The letter as a quote with each flagged sentence in bold and its label, and the evidence listed below."""
    for number, flag in enumerate(flagged, 1):
        letter = letter.replace(flag["sentence"], f"**{flag['sentence']}** [{number}: {flag['label']}]", 1)
    notes = [f"> [{n}] {flag['label']}: {flag['evidence']}" for n, flag in enumerate(flagged, 1)]
    return "\n".join(["> " + letter.replace("\n", "\n> "), *([">"] if notes else []), *notes])


def write_report(layout: RunLayout, table: pd.DataFrame, scores: pd.DataFrame, summary: pd.DataFrame,
                 plots: list[Path], label: str) -> None:
    lines = [f"# Evaluation report: {layout.root.name}", "",
             f"{len(table)} test rows. BERTScore: {label}. Rates (company_named, ...) are shares of letters; "
             "unsupported_years counts only letters whose resume states years. Baselines: copy_input pastes the prompt's "
             "fields as the letter; template is one fixed fill-in letter; retrieval is the training letter with the "
             "most similar inputs, names swapped. ROUGE-L on all rows mostly rewards memorised templates (retrieval "
             "scores high there while carrying another applicant's history): read the novel rows, whose letter has no "
             "exact or near-duplicate training letter (seen_in_training.csv lists each row's nearest training letter).", ""]
    for subset in summary.subset.unique():
        n = int(summary[(summary.subset == subset) & (summary.system == "reference")]["n"].max())
        lines += [f"## {subset} ({n} rows)", "", _markdown_table(headline_table(summary, subset)), ""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(layout.results).as_posix()})" for p in plots] + [""]
    if "finetuned" in set(scores.system):
        tuned = scores[scores.system == "finetuned"].sort_values("rouge_l").reset_index(drop=True)
        picks = {"worst": tuned.iloc[0], "median": tuned.iloc[len(tuned) // 2], "best": tuned.iloc[-1]}
        lines += ["## Examples (fine-tuned ROUGE-L: best, median, worst)", ""]
        by_row = table.set_index("row_id")
        for name, pick in picks.items():
            row = by_row.loc[pick["row_id"]]
            lines += [f"### {name}: row {pick['row_id']}, ROUGE-L {pick['rouge_l']:.3f} — {row['job_title']} at {row['hiring_company']}", ""]
            for column, title, system in (("base_output", "base", "base"), ("finetuned_output", "fine-tuned", "finetuned"),
                                          ("reference", "reference", "reference")):
                if column in row:
                    lines += [f"**{title}**", "", marked_letter(str(row[column]), flagged_of(scores, pick["row_id"], system)), ""]
    write_text_atomic(layout.report, "\n".join(lines))


