"""ROUGE-L between generated and reference letters."""

from collections.abc import Sequence


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each prediction against its reference (Porter-stemmed tokens).

    An empty (or whitespace-only) prediction scores 0.0.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    from rouge_score import rouge_scorer  # here, so the prompt builder can use grounding without it

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [
        scorer.score(reference, prediction)["rougeL"].fmeasure if prediction.strip() else 0.0
        for prediction, reference in zip(predictions, references)
    ]
