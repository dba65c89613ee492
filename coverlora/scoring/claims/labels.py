"""The claim checker's labelled set: sentences labelled by reading, and the precision and recall it measures.

labels.csv holds one row per labelled sentence: source, split, row, sentence (its index in
sentences.split_sentences), sha (of the sentence's text, so a changed splitter cannot silently shift labels),
label and part ("tune" or "heldout", fixed per letter). Texts are never stored for the dataset's own letters:
"reference" sentences are read from the data folder's cover_letter column. "smollm2" letters (generated) and
"handmade" letters and rows (written for this set) are JSONL files beside labels.csv.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coverlora.scoring.claims.verdicts import FLAGGED_LABELS, LABELS, SentenceVerdict
from coverlora.scoring.sentences import split_sentences

GENERATED = {"smollm2": "generated_smollm2.jsonl"}  # generated letters over dataset rows
HANDMADE = "handmade.jsonl"  # rows and letters written for the set


def sentence_sha(text: str) -> str:
    return hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:8]


@dataclass
class LabelledLetter:
    key: tuple[str, str, int]  # (source, split, row)
    letter: str
    row: Mapping[str, str]
    part: str
    labels: dict[int, str] = field(default_factory=dict)  # sentence index -> label


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _letters_and_rows(source: str, split: str, directory: Path, data: str | None, cache: dict):
    """(letter, row) for each row index of one source and split."""
    if (source, split) not in cache:
        if source == "handmade":
            records = _read_jsonl(directory / HANDMADE)
            cache[source, split] = {r["id"]: (r["letter"], r["row"]) for r in records}
        else:
            from coverlora.data import load_split

            frame = load_split(data, split)
            rows = [frame.iloc[i].to_dict() for i in range(len(frame))]
            if source == "reference":
                cache[source, split] = {i: (row["cover_letter"], row) for i, row in enumerate(rows)}
            else:
                records = _read_jsonl(directory / GENERATED[source])
                cache[source, split] = {r["row"]: (r["letter"], rows[r["row"]]) for r in records if r["split"] == split}
    return cache[source, split]


def load_labelled(directory: Path, data: str | None, sources: Sequence[str] | None = None) -> list[LabelledLetter]:
    """The labelled letters in `directory` (data/claims), with their texts and rows. `data` is the dataset folder
    (None: handmade letters only).

    Raises ValueError when a stored sha does not match the sentence the splitter now gives."""
    with open(directory / "labels.csv", newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    letters: dict[tuple, LabelledLetter] = {}
    cache: dict = {}
    for record in records:
        source, split, row = record["source"], record["split"], int(record["row"])
        if (sources is not None and source not in sources) or (data is None and source != "handmade"):
            continue
        key = (source, split, row)
        if key not in letters:
            letter, row_fields = _letters_and_rows(source, split, directory, data, cache)[row]
            letters[key] = LabelledLetter(key, letter, row_fields, record["part"])
        item = letters[key]
        sentences = split_sentences(item.letter)
        index = int(record["sentence"])
        if index >= len(sentences) or sentence_sha(sentences[index].text) != record["sha"]:
            raise ValueError(f"labelled sentence {key} #{index} no longer matches the letter's sentences")
        if record["label"] not in LABELS:
            raise ValueError(f"unknown label {record['label']!r} at {key} #{index}")
        item.labels[index] = record["label"]
    return list(letters.values())


def precision_recall(letters: Sequence[LabelledLetter], verdicts: Sequence[Sequence[SentenceVerdict]]) -> dict:
    """Precision and recall of "flagged" (borrowed or unsupported) over the labelled sentences, plus the
    confusion of the four labels as (gold, predicted) -> count."""
    confusion: dict[tuple[str, str], int] = {}
    for item, predicted in zip(letters, verdicts):
        for index, gold in item.labels.items():
            pair = (gold, predicted[index].label)
            confusion[pair] = confusion.get(pair, 0) + 1
    tp = sum(n for (g, p), n in confusion.items() if g in FLAGGED_LABELS and p in FLAGGED_LABELS)
    fp = sum(n for (g, p), n in confusion.items() if g not in FLAGGED_LABELS and p in FLAGGED_LABELS)
    fn = sum(n for (g, p), n in confusion.items() if g in FLAGGED_LABELS and p not in FLAGGED_LABELS)
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "tp": tp, "fp": fp, "fn": fn,
        "n_sentences": sum(confusion.values()),
        "n_claims": sum(n for (g, _), n in confusion.items() if g != "not_a_claim"),
        "confusion": confusion,
    }
