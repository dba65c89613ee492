"""The learned claim verifier: each sentence read against its row by a model trained on the readings.

A multinomial logistic regression (scikit-learn, trained by `scripts/train_verifier.py` on data/claims/readings
under data/claims/PROTOCOL.md) over sparse features of the sentence and its row (features.verifier_features):
its words, the content words the resume lacks, and the exact rules' findings. It labels not_a_claim /
supported / borrowed / unsupported; a second, binary regression on the same features says whether a flagged
sentence is specific (a tool, employer, number, leadership... a recruiter could catch) or generic. Its weights (weights/verifier.json, a few hundred kB) are committed, so a
fresh clone needs neither the data nor the script; it needs no torch and costs milliseconds per letter.
The exact rules stay where they are more precise: a years, number, degree or hiring-company-as-employer finding
flags the sentence whatever the model says (verdicts._verify_letters), and the evidence says which decided.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

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
    return float(_model()["flag_threshold"])


def softmax_rows(scores: list[list[float]]) -> list[list[float]]:
    out = []
    for row in scores:
        top = max(row)
        exps = [math.exp(x - top) for x in row]
        total = sum(exps)
        out.append([e / total for e in exps])
    return out


def read_sentences(sentences: Sequence[str], rows: Sequence[Mapping[str, str]],
                   row_sources: Sequence[RowSources] | None = None) -> list[tuple[list[float], float]]:
    """Per sentence (sentences[i] belongs to rows[i], whose RowSources are row_sources[i] when the caller keeps
    them): its class probabilities (CLASSES order) and the probability that, if flagged, it is specific rather
    than generic."""
    model = _model()
    weights, bias = model["weights"], model["bias"]  # feature -> per-class weights; per-class bias
    severity = model["severity"]  # feature -> weight of "specific"; its bias
    if row_sources is None:  # a letter's sentences share their row: read its fields once
        by_row: dict[int, RowSources] = {}
        for row in rows:
            if id(row) not in by_row:
                by_row[id(row)] = RowSources.of(row)
        row_sources = [by_row[id(row)] for row in rows]
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
