"""Score eval.csv: per-letter scores for every system, and the summary table. Pure DataFrame → DataFrame."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from coverlora.fields import INPUT_FIELDS
from coverlora.metrics.baselines import baseline_letters
from coverlora.scoring import (
    BertScoreModel,
    bert_score,
    bootstrap_diff_ci,
    check_rules,
    describe,
    distinct_n,
    repetition_ratio,
    rouge_l,
    self_bleu,
    seq_rep_n,
)
from coverlora.scoring.claims.verdicts import BORROWED, NOT_A_CLAIM, SUPPORTED, UNSUPPORTED, check_letters
from coverlora.scoring.claims.verdicts import explain as describe_claim

GENERATED = ("base", "finetuned")
# The references score themselves only on metrics that don't compare with a reference.
REFERENCE_FREE = ("repetition", "seq_rep_4", "distinct_2", "company_named", "title_named", "name_named",
                  "unsupported_years", "entity_precision", "has_placeholder", "letter_words",
                  "claim_support", "supported_claims", "has_flagged_claim", "has_specific_claim", "has_borrowed_claim",
                  "has_unsupported_claim")
METRICS = ("rouge_l", "bertscore_f1", "bertscore_precision", "bertscore_recall", *REFERENCE_FREE)


def systems_in(table: pd.DataFrame, train: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """Every system's letters in table order: the generated ones present, the references, and the baselines
    (retrieval only when the training rows are given)."""
    letters = {tag: table[f"{tag}_output"].fillna("").tolist() for tag in GENERATED if f"{tag}_output" in table}
    letters["reference"] = table["reference"].tolist()
    return letters | baseline_letters(table, train)


def letters_by_row(table: pd.DataFrame, systems: dict[str, list[str]]) -> dict[str, dict[int, str]]:
    return {system: dict(zip(table["row_id"], texts)) for system, texts in systems.items()}


def claim_columns(letters: list[str], rows: list[dict], evidence: str) -> dict[str, list]:
    """Per letter: the share of its claims the resume backs and how many it backs (a letter that says nothing
    flags nothing), whether it has a borrowed / unsupported / specific unbacked claim (specific: the verifier's
    severity; the lexical checker cannot tell, so there it is every flag), and every flagged sentence with its
    label and evidence (the evidence behind each flag, for the report)."""
    nothing = [None] * len(letters)
    if evidence == "off":
        return {"claim_support": nothing, "supported_claims": nothing, "has_flagged_claim": nothing,
                "has_specific_claim": nothing, "has_borrowed_claim": nothing, "has_unsupported_claim": nothing,
                "flagged_sentences": [""] * len(letters)}
    method = "verifier" if evidence == "verifier" else "lexical"
    verdicts = check_letters(letters, rows, embeddings=evidence == "minilm", method=method)
    claims = [[v for v in letter if v.label != NOT_A_CLAIM] for letter in verdicts]
    return {
        "claim_support": [sum(v.label == SUPPORTED for v in c) / len(c) if c else None for c in claims],
        "supported_claims": [sum(v.label == SUPPORTED for v in c) for c in claims],
        "has_flagged_claim": [any(v.flagged for v in c) for c in claims],
        "has_specific_claim": [any(v.flagged and v.severity != "generic" for v in c) for c in claims],
        "has_borrowed_claim": [any(v.label == BORROWED for v in c) for c in claims],
        "has_unsupported_claim": [any(v.label == UNSUPPORTED for v in c) for c in claims],
        "flagged_sentences": [json.dumps([{"sentence": v.text, "label": v.label, "severity": v.severity,
                                            "evidence": describe_claim(v)}
                                          for v in c if v.flagged]) for c in claims],
    }


def score_letters(table: pd.DataFrame, systems: dict[str, list[str]], bertscore_model: BertScoreModel | None,
                  batch_size: int = 32, claims: str = "verifier") -> tuple[pd.DataFrame, str]:
    """One row per (test row, system) with every metric; returns it and the BERTScore label."""
    rows = table.rename(columns={"reference": "cover_letter"}).to_dict("records")
    references = table["reference"].tolist()
    frames, label = [], ""
    for system, letters in systems.items():
        checks = [check_rules(letter, row) for letter, row in zip(letters, rows)]
        frame = pd.DataFrame({
            "row_id": table["row_id"].values,
            "system": system,
            "repetition": [repetition_ratio(t) for t in letters],
            "seq_rep_4": [seq_rep_n(t, 4) for t in letters],
            "distinct_2": [distinct_n(t, 2) for t in letters],
            "letter_words": [len(t.split()) for t in letters],
            **{key: [c[key] for c in checks] for key in ("company_named", "title_named", "name_named",
                                                          "unsupported_years", "entity_precision", "has_placeholder")},
            "unsupported_entities": ["; ".join(c["unsupported_entities"]) for c in checks],
            "placeholders": ["; ".join(c["placeholders"]) for c in checks],
            **claim_columns(letters, rows, claims),
        })
        # Unsupported years only count where the resume states years at all.
        frame["unsupported_years"] = [c["unsupported_years"] if c["years_checkable"] else None for c in checks]
        if system == "reference":
            frame["rouge_l"] = np.nan
            for key in ("bertscore_f1", "bertscore_precision", "bertscore_recall"):
                frame[key] = np.nan
        else:
            frame["rouge_l"] = rouge_l(letters, references)
            scores = bert_score(letters, references, bertscore_model, batch_size=batch_size) if bertscore_model else {}
            label = scores.get("label", "off")
            for key in ("f1", "precision", "recall"):
                frame[f"bertscore_{key}"] = scores.get(key, np.nan)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), label


def _as_float(values: pd.Series) -> list[float | None]:
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v) for v in values]


def summarize(scores: pd.DataFrame, letters: dict[str, dict[int, str]], subsets: dict[str, list[int]],
              *, resamples: int, label: str) -> pd.DataFrame:
    """Mean / std / median per subset × system × metric, plus fine-tuned − base with a bootstrap 95% CI."""
    out = []
    for subset, row_ids in subsets.items():
        chosen = scores[scores["row_id"].isin(set(row_ids))]
        for system, group in chosen.groupby("system", sort=False):
            group = group.sort_values("row_id")
            for metric in METRICS:
                stats = describe(_as_float(group[metric]))
                if stats["n"] == 0:
                    continue
                record = {"subset": subset, "system": system, "metric": metric, **stats}
                if system == "finetuned" and "base" in letters:
                    base = chosen[chosen.system == "base"].sort_values("row_id")[metric]
                    if describe(_as_float(base))["n"]:
                        ci = bootstrap_diff_ci(_as_float(base), _as_float(group[metric]), n_resamples=resamples)
                        record.update(diff_vs_base=ci["diff"], ci_low=ci["low"], ci_high=ci["high"])
                if metric.startswith("bertscore"):
                    record["note"] = label
                out.append(record)
            # Self-BLEU is one number per set of letters: high means templated, near-identical outputs.
            texts = [letters[system][row_id] for row_id in group["row_id"]]
            if len(texts) > 1:
                out.append({"subset": subset, "system": system, "metric": "self_bleu_4",
                            "mean": self_bleu(texts), "n": len(texts)})
    columns = ["subset", "system", "metric", "n", "mean", "std", "median", "diff_vs_base", "ci_low", "ci_high", "note"]
    return pd.DataFrame(out).reindex(columns=columns)


LEAK_FREE, NOVEL = "leak_free (not in train)", "novel (no exact or near-duplicate training letter)"


def subsets_for(table: pd.DataFrame, long_form_chars: int, seen: pd.DataFrame | None) -> dict[str, list[int]]:
    """Row ids per subset: all, long-form references and, when `seen` (leakage.seen_in_training, indexed like
    `table`) is known, leak-free and novel rows."""
    subsets = {"all": table["row_id"].tolist(),
               f"long_form (reference >= {long_form_chars} chars)":
                   table.loc[table["reference"].str.len() >= long_form_chars, "row_id"].tolist()}
    if seen is not None:
        subsets[LEAK_FREE] = table.loc[~seen["leaked"].values, "row_id"].tolist()
        subsets[NOVEL] = table.loc[seen["novel"].values, "row_id"].tolist()
    return {name: ids for name, ids in subsets.items() if ids}


def eval_columns_present(table: pd.DataFrame) -> list[str]:
    """The columns test.py writes that scoring needs, for a clear error when one is missing."""
    needed = ["row_id", *INPUT_FIELDS, "reference"]
    return [c for c in needed if c not in table.columns]
