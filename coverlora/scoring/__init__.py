"""Scores for generated cover letters: pure functions over texts and rows, no file access."""

from coverlora.scoring.bertscore import BertScoreModel, bert_score, default_model, roberta_large
from coverlora.scoring.repetition import distinct_n, repetition_ratio, self_bleu, seq_rep_n
from coverlora.scoring.rouge import rouge_l
from coverlora.scoring.rules import YearsClaim, check_rules, grounding_rates
from coverlora.scoring.stats import bootstrap_diff_ci, describe

__all__ = [
    "BertScoreModel",
    "YearsClaim",
    "bert_score",
    "bootstrap_diff_ci",
    "check_rules",
    "default_model",
    "describe",
    "distinct_n",
    "grounding_rates",
    "repetition_ratio",
    "roberta_large",
    "rouge_l",
    "self_bleu",
    "seq_rep_n",
]
