"""The learned claim verifier: each sentence read against its row by two readers trained on the readings.

- A cross-encoder (cross_encoder.py): MiniLM with a LoRA adapter reads the sentence and the row together.
- A multinomial logistic regression (scikit-learn) over sparse features of the sentence and its row
  (features.verifier_features): its words, the content words the resume lacks, the exact rules' findings; a second,
  binary regression says whether a flagged sentence is specific (a tool, employer, number, leadership... a
  recruiter could catch) or generic.

Both label not_a_claim / supported / borrowed / unsupported; their probabilities are blended with the weight
`cross_encoder_weight` (0: the logistic model alone), chosen with the flag threshold on the validation readings
by `scripts/train_verifier.py` (data/claims/readings, under data/claims/PROTOCOL.md). All weights are committed
(weights/), so a fresh clone needs neither the data nor the script; without the cross-encoder's files the
logistic model reads alone, at its own threshold. The exact rules stay where they are more precise: a years,
number, degree or hiring-company-as-employer finding flags the sentence whatever the readers say
(verdicts.verify_sentences), and the evidence says which decided.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from coverlora.scoring.claims import cross_encoder
from coverlora.scoring.claims.evidence import BORROWED, SUPPORTED, UNSUPPORTED, RowSources
from coverlora.scoring.claims.features import verifier_features

NOT_A_CLAIM = "not_a_claim"
CLASSES = (NOT_A_CLAIM, SUPPORTED, BORROWED, UNSUPPORTED)  # the model's output order
WEIGHTS = Path(__file__).resolve().parent / "weights"
MODEL_FILE = WEIGHTS / "verifier.json"


def available() -> bool:
    """Whether the trained weights are here (scripts/train_verifier.py writes them)."""
    return MODEL_FILE.is_file()


@functools.lru_cache(maxsize=1)
def _model() -> dict:
    return json.loads(MODEL_FILE.read_text(encoding="utf-8"))


def flag_threshold() -> float:
    """The blend's threshold, or the logistic model's own when it reads alone."""
    model = _model()
    return float(model["blend_threshold"] if cross_encoder_weight() else model["flag_threshold"])


def softmax_rows(scores: list[list[float]]) -> list[list[float]]:
    out = []
    for row in scores:
        top = max(row)
        exps = [math.exp(x - top) for x in row]
        total = sum(exps)
        out.append([e / total for e in exps])
    return out


def logistic_sentences(sentences: Sequence[str], rows: Sequence[Mapping[str, str]],
                       row_sources: Sequence[RowSources] | None = None) -> list[tuple[list[float], float]]:
    """The logistic model's reading alone: per sentence, its class probabilities (CLASSES order) and P(specific)."""
    model = _model()
    weights, bias = model["weights"], model["bias"]  # feature -> per-class weights; per-class bias
    severity = model["severity"]  # feature -> weight of "specific"; its bias
    row_sources = row_sources or RowSources.per_row(rows)
    scores, specific = [], []
    for sentence, sources in zip(sentences, row_sources):
        logits, severity_logit = list(bias), severity["bias"]
        for name, value in verifier_features(sentence, sources).items():
            for k, w in enumerate(weights.get(name, ())):
                logits[k] += w * value
            severity_logit += severity["weights"].get(name, 0.0) * value
        scores.append(logits)
        specific.append(1 / (1 + math.exp(-severity_logit)))
    return list(zip(softmax_rows(scores), specific))


def blend(logistic: Sequence[tuple[list[float], float]], cross: Sequence[tuple[list[float], float]],
          weight: float) -> list[tuple[list[float], float]]:
    """(1 - weight) * the logistic model's probabilities + weight * the cross-encoder's, class by class."""
    return [([(1 - weight) * a + weight * b for a, b in zip(p_log, p_cross)], (1 - weight) * s_log + weight * s_cross)
            for (p_log, s_log), (p_cross, s_cross) in zip(logistic, cross)]


def cross_encoder_weight() -> float:
    """The cross-encoder's share of the blend: 0 without its files or torch, else the chosen weight."""
    weight = float(_model().get("cross_encoder_weight", 0.0))
    return weight if weight > 0 and cross_encoder.available() else 0.0


def read_sentences(sentences: Sequence[str], rows: Sequence[Mapping[str, str]],
                   row_sources: Sequence[RowSources] | None = None) -> list[tuple[list[float], float]]:
    """Per sentence (sentences[i] belongs to rows[i], whose RowSources are row_sources[i] when the caller keeps
    them): its class probabilities (CLASSES order) and the probability that, if flagged, it is specific rather
    than generic: the blend of both readers."""
    row_sources = row_sources or RowSources.per_row(rows)  # both readers read the row's fields once
    logistic = logistic_sentences(sentences, rows, row_sources)
    weight = cross_encoder_weight()
    return blend(logistic, cross_encoder.read_sentences(sentences, rows, row_sources), weight) if weight else logistic


def probabilities(sentences: Sequence[str], rows: Sequence[Mapping[str, str]]) -> list[list[float]]:
    """One row of class probabilities (CLASSES order) per sentence; sentences[i] belongs to rows[i]."""
    return [probs for probs, _ in read_sentences(sentences, rows)]


def label_of(probs: Sequence[float], flag_threshold: float) -> str:
    """Flagged (the likelier of borrowed and unsupported) when their summed probability reaches `flag_threshold`
    (chosen on the validation part of the readings), else the likelier of supported and not a claim."""
    p = dict(zip(CLASSES, probs))
    if p[BORROWED] + p[UNSUPPORTED] >= flag_threshold:
        return BORROWED if p[BORROWED] >= p[UNSUPPORTED] else UNSUPPORTED
    return SUPPORTED if p[SUPPORTED] >= p[NOT_A_CLAIM] else NOT_A_CLAIM
