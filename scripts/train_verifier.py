"""Train the learned claim verifier (coverlora/scoring/claims/verifier.py) on the readings, and measure it.

    # both readers: the logistic model (a minute) and the cross-encoder (about 40 min on 2 CPU cores)
    flock /tmp/coverlora-heavy.lock .venv/bin/python scripts/train_verifier.py --data ../shared/data/cover-letter-dataset
    # the logistic model only, re-blended with the committed cross-encoder
    .venv/bin/python scripts/train_verifier.py --data ../shared/data/cover-letter-dataset --cross-encoder reuse
    # nothing fitted: the committed verifier on the held-out part as the readings stand today
    flock /tmp/coverlora-heavy.lock .venv/bin/python scripts/train_verifier.py --data ../shared/data/cover-letter-dataset --measure-only

The readings (data/claims/readings/*.csv, one annotator per file, under data/claims/PROTOCOL.md) are split by
row: a fixed fifth of the training rows and every test row are held out (never trained or tuned on, reported),
a tenth is validation, the rest trains both readers. On validation: the logistic model's regularisation and its
own threshold, then the cross-encoder's weight in the blend and the blend's threshold (F1 of "flagged"). The
weights (weights/verifier.json, weights/cross_encoder/) and report.json (split sizes, validation scores of every
blend tried, held-out scores of the verifier and of the lexical checker) are written beside verifier.py and
committed, so a fresh clone needs neither the data nor this script. second*.csv (the second readings) are left
out of training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import _bootstrap
from readings import READINGS, Letters, first_readings, read, specific

from coverlora.errors import UserError
from coverlora.scoring.claims import cross_encoder
from coverlora.scoring.claims.features import verifier_features
from coverlora.scoring.claims.labels import sentence_sha
from coverlora.scoring.claims.verdicts import FLAGGED_LABELS
from coverlora.scoring.claims.verifier import CLASSES, WEIGHTS, label_of
from coverlora.scoring.sentences import split_sentences

THRESHOLDS = [t / 100 for t in range(10, 91, 2)]  # flag thresholds tried on validation
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the cross-encoder's share of the blend, tried on validation


def part_of(split: str, row: int) -> str:
    """heldout / validation / train, fixed per row by a hash of it (never by its labels); every test row is
    held out, so the model letters of test rows are only ever measured on."""
    if split == "test":
        return "heldout"
    bucket = int(hashlib.sha1(f"{split}:{row}".encode()).hexdigest(), 16) % 10
    return "heldout" if bucket < 2 else "validation" if bucket == 2 else "train"


def examples(data: str) -> list[dict]:
    records = {}
    for path in first_readings():
        records |= read(path)
    source_of, split_letters, out, stale = Letters(data), {}, [], 0
    for (source, split, row, index), record in sorted(records.items()):
        if (source, split, row) not in split_letters:
            letter, fields = source_of.get(source, split, row)
            split_letters[source, split, row] = letter, fields, {s.index: s.text for s in split_sentences(letter)}
        letter, fields, sentences = split_letters[source, split, row]
        if index not in sentences or sentence_sha(sentences[index]) != record["sha"]:
            stale += 1
            continue
        out.append({"key": (source, split, row), "index": index, "sentence": sentences[index], "row": fields,
                    "letter": letter, "label": record["label"], "specific": specific(record),
                    "part": part_of(split, row)})
    if stale:
        raise UserError(f"{stale} labelled sentences no longer match the letters (sha)", where=str(READINGS),
                        fix="re-label them: the splitter or the data changed")
    return out


def featurize(items: list[dict]) -> list[dict[str, float]]:
    from coverlora.scoring.claims.evidence import RowSources

    return [verifier_features(i["sentence"], RowSources.of(i["row"])) for i in items]


def fit(items: list[dict], strength: float):
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = DictVectorizer()
    x = vectorizer.fit_transform(featurize(items))
    model = LogisticRegression(C=strength, max_iter=3000)
    model.fit(x, [CLASSES.index(i["label"]) for i in items])
    return vectorizer, model


def fit_severity(items: list[dict], vectorizer, strength: float):
    """Specific vs generic, on the flagged sentences only (the readings give no severity to the others)."""
    from sklearn.linear_model import LogisticRegression

    flagged = [i for i in items if i["label"] in FLAGGED_LABELS]
    model = LogisticRegression(C=strength, max_iter=3000)
    model.fit(vectorizer.transform(featurize(flagged)), [i["specific"] for i in flagged])
    return model


def export_severity(vectorizer, model) -> dict:
    names = {column: name for name, column in vectorizer.vocabulary_.items()}
    weights = {names[c]: round(float(w), 5) for c, w in enumerate(model.coef_[0]) if round(float(w), 5)}
    return {"bias": round(float(model.intercept_[0]), 5), "weights": weights}


def predict(vectorizer, model, items: list[dict]) -> list[list[float]]:
    probs = model.predict_proba(vectorizer.transform(featurize(items)))
    order = list(model.classes_)
    return [[row[order.index(k)] if k in order else 0.0 for k in range(len(CLASSES))] for row in probs]


def export(vectorizer, model, threshold: float) -> dict:
    """The fitted model as plain JSON: feature -> one weight per class (CLASSES order), the biases, the threshold."""
    order = list(model.classes_)
    coef = model.coef_
    weights = {}
    for name, column in vectorizer.vocabulary_.items():
        row = [round(float(coef[order.index(k), column]), 5) if k in order else 0.0 for k in range(len(CLASSES))]
        if any(row):
            weights[name] = row
    bias = [round(float(model.intercept_[order.index(k)]), 5) if k in order else -30.0 for k in range(len(CLASSES))]
    return {"flag_threshold": threshold, "classes": list(CLASSES), "bias": bias, "weights": weights}


def scores(items: list[dict], labels: list[str], specific: list[bool] | None = None) -> dict:
    """Sentence precision / recall of "flagged" against the readings; with `specific` (the checker's severity),
    also the letters with a specific unbacked claim, by the reading and by the checker, and their agreement."""
    truth = [i["label"] in FLAGGED_LABELS for i in items]
    said = [label in FLAGGED_LABELS for label in labels]
    tp = sum(t and s for t, s in zip(truth, said))
    fp = sum(s and not t for t, s in zip(truth, said))
    fn = sum(t and not s for t, s in zip(truth, said))
    spec = [s for i, s in zip(items, said) if i["specific"]]
    letters = {}
    for item, flagged in zip(items, said):
        read_flag, checker_flag = letters.get(item["key"], (False, False))
        letters[item["key"]] = (read_flag or item["specific"], checker_flag or flagged)
    out = {"sentences": len(items), "letters": len(letters), "precision": round(tp / max(1, tp + fp), 3),
           "recall": round(tp / max(1, tp + fn), 3), "recall_specific": round(sum(spec) / max(1, len(spec)), 3),
           "letter_agreement_any_flag": round(sum(a == b for a, b in letters.values()) / max(1, len(letters)), 3),
           "letters_specific_reading": round(sum(a for a, _ in letters.values()) / max(1, len(letters)), 3),
           "letters_flagged_checker": round(sum(b for _, b in letters.values()) / max(1, len(letters)), 3)}
    if specific is not None:
        spec_letters = {}
        for item, flagged, is_specific in zip(items, said, specific):
            spec_letters[item["key"]] = spec_letters.get(item["key"], False) or (flagged and is_specific)
        out["letters_specific_checker"] = round(sum(spec_letters.values()) / max(1, len(letters)), 3)
        out["letter_agreement"] = round(sum(letters[k][0] == spec_letters[k] for k in letters) / max(1, len(letters)), 3)
    return out


def letter_verdicts(items: list[dict], method: str) -> list:
    """Each item's SentenceVerdict (None if the checker's split has no such sentence) when its whole letter is
    checked by `method` (check_letters), every letter checked once."""
    from coverlora.scoring.claims.verdicts import check_letters

    first = {}
    for item in items:
        first.setdefault(item["key"], item)
    keys = sorted(first)
    verdicts = check_letters([first[k]["letter"] for k in keys], [first[k]["row"] for k in keys], method=method)
    by_key = {key: {v.index: v for v in vs} for key, vs in zip(keys, verdicts)}
    return [by_key[i["key"]].get(i["index"]) for i in items]


def letter_labels(items: list[dict], method: str) -> tuple[list[str], list[bool]]:
    """Each item's label, and whether it is called specific, when its whole letter is checked by `method`
    (the lexical checker gives no severity, so its flags all count as specific)."""
    found = letter_verdicts(items, method)
    return ([v.label if v else "not_a_claim" for v in found],
            [bool(v) and v.flagged and v.severity != "generic" for v in found])


def fit_logistic(parts: dict) -> tuple[dict, dict]:
    """The logistic reader: C and its own flag threshold for F1 on validation, then the severity model."""
    started = time.perf_counter()
    best = None  # (F1 on validation, C, threshold, model)
    for strength in (0.1, 0.3, 1.0, 3.0, 10.0):
        vectorizer, model = fit(parts["train"], strength)
        val = predict(vectorizer, model, parts["validation"])
        for threshold in THRESHOLDS:
            f1 = _f1(scores(parts["validation"], [label_of(p, threshold) for p in val]))
            if best is None or f1 > best[0]:
                best = (f1, strength, threshold, vectorizer, model)
    _, strength, threshold, vectorizer, model = best
    severity_best = None  # (accuracy on the flagged validation sentences, model)
    flagged_val = [i for i in parts["validation"] if i["label"] in FLAGGED_LABELS]
    for severity_strength in (0.1, 0.3, 1.0, 3.0):
        candidate = fit_severity(parts["train"], vectorizer, severity_strength)
        said = candidate.predict(vectorizer.transform(featurize(flagged_val)))
        accuracy = sum(bool(s) == i["specific"] for s, i in zip(said, flagged_val)) / max(1, len(flagged_val))
        if severity_best is None or accuracy > severity_best[0]:
            severity_best = (accuracy, severity_strength, candidate)
    exported = export(vectorizer, model, threshold) | {"severity": export_severity(vectorizer, severity_best[2])}
    report = {"C": strength, "flag_threshold": threshold, "severity_C": severity_best[1],
              "severity_accuracy_validation": round(severity_best[0], 3), "parts": {k: len(v) for k, v in parts.items()},
              "features": len(exported["weights"]), "fit_seconds": round(time.perf_counter() - started, 1),
              "validation_logistic": scores(parts["validation"], [label_of(p, threshold) for p in
                                                                  predict(vectorizer, model, parts["validation"])])}
    return exported, report


def fit_cross_encoder(parts: dict, mode: str, settings: cross_encoder.Settings) -> list | None:
    """The cross-encoder's reading of the validation sentences: trained now (`train`, about half an hour on two
    CPU cores), the committed one (`reuse`), or none (`off`)."""
    if mode == "off" or (mode == "reuse" and not cross_encoder.available()):
        return None
    if mode == "train":
        train = parts["train"]
        model, _ = cross_encoder.fit([i["sentence"] for i in train], [i["row"] for i in train],
                                     [CLASSES.index(i["label"]) for i in train], [i["specific"] for i in train],
                                     settings, log=lambda line: print(line, flush=True))
        cross_encoder.save(model, settings)
    return cross_encoder.read_sentences([i["sentence"] for i in parts["validation"]],
                                        [i["row"] for i in parts["validation"]])


def choose_blend(parts: dict, cross: list | None) -> tuple[float, float, dict]:
    """The cross-encoder's weight in the blend and the blend's flag threshold, for F1 on the validation readings."""
    from coverlora.scoring.claims import verifier

    val = parts["validation"]
    logistic = verifier.logistic_sentences([i["sentence"] for i in val], [i["row"] for i in val])
    if cross is None:
        return 0.0, verifier.flag_threshold(), {}
    return best_blend(val, logistic, cross)


def best_blend(val: list[dict], logistic: list, cross: list) -> tuple[float, float, dict]:
    """Of the blends of two readings of `val` (BLEND_WEIGHTS), the weight and flag threshold with the best F1, and
    every weight's scores at its own best threshold (keyed by str(weight))."""
    from coverlora.scoring.claims import verifier

    tried, best = {}, None
    for weight in BLEND_WEIGHTS:
        probs = [p for p, _ in verifier.blend(logistic, cross, weight)]
        f1, threshold = max((_f1(scores(val, [label_of(p, t) for p in probs])), t) for t in THRESHOLDS)
        tried[str(weight)] = scores(val, [label_of(p, threshold) for p in probs]) | {"threshold": threshold}
        if best is None or f1 > best[0]:
            best = (f1, weight, threshold)
    return best[1], best[2], tried


def measure(parts: dict, report: dict) -> None:
    """Both checkers on the held-out letters, whole (the verifier with its exact rules, as every caller gets it),
    and by kind of letter: the dataset's own (reference) and the models' (greedy, grounded, sample, base...)."""
    kinds = {"reference letters": [i for i in parts["heldout"] if i["key"][0] == "reference"],
             "model letters": [i for i in parts["heldout"] if i["key"][0] != "reference"]}
    for method in ("verifier", "lexical"):
        started = time.perf_counter()
        labels, specific_flags = letter_labels(parts["heldout"], method)
        report[f"heldout_{method}"] = scores(parts["heldout"], labels, specific_flags)
        report[f"heldout_{method}"]["seconds"] = round(time.perf_counter() - started, 2)
        said = {(i["key"], i["index"]): (label, flag) for i, label, flag in zip(parts["heldout"], labels, specific_flags)}
        for kind, items in kinds.items():
            if items:
                report[f"heldout_{method}"][kind] = scores(
                    items, [said[i["key"], i["index"]][0] for i in items], [said[i["key"], i["index"]][1] for i in items])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the dataset folder (the readings' letters are its own)")
    parser.add_argument("--cross-encoder", choices=("train", "reuse", "off"), default="train",
                        help="train the cross-encoder (about 30 min on 2 CPU cores), reuse the committed one, or "
                             "leave it out (the logistic model alone)")
    parser.add_argument("--measure-only", action="store_true",
                        help="fit nothing: the committed verifier (and the lexical checker) on today's held-out part, "
                             "printed; the weights and report.json stay as they are")
    parser.add_argument("--no-heldout", dest="heldout", action="store_false",
                        help="fit and choose only, the held-out readings unread (before a sweep's choice)")
    args = parser.parse_args()
    from coverlora.runs.layout import write_text_atomic
    from coverlora.scoring.claims import verifier

    items = examples(args.data)
    parts = {name: [i for i in items if i["part"] == name] for name in ("train", "validation", "heldout")}
    print({name: len(v) for name, v in parts.items()}, flush=True)
    if args.measure_only:
        measured: dict = {}
        measure(parts, measured)
        print(json.dumps(measured, indent=2))
        return
    exported, report = fit_logistic(parts)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(verifier.MODEL_FILE, json.dumps(exported, separators=(",", ":")) + "\n")
    verifier._model.cache_clear()
    settings = cross_encoder.Settings()
    started = time.perf_counter()
    weight, threshold, tried = choose_blend(parts, fit_cross_encoder(parts, args.cross_encoder, settings))
    exported |= {"cross_encoder_weight": weight, "blend_threshold": threshold}
    write_text_atomic(verifier.MODEL_FILE, json.dumps(exported, separators=(",", ":")) + "\n")
    verifier._model.cache_clear()
    report |= {"cross_encoder": args.cross_encoder, "cross_encoder_settings": settings.__dict__,
               "cross_encoder_seconds": round(time.perf_counter() - started, 1), "cross_encoder_weight": weight,
               "blend_threshold": threshold, "validation_blends": tried}
    if args.heldout:
        measure(parts, report)
    write_text_atomic(WEIGHTS / "report.json", json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _f1(s: dict) -> float:
    return 2 * s["precision"] * s["recall"] / max(1e-9, s["precision"] + s["recall"])


if __name__ == "__main__":
    _bootstrap.run(main)
