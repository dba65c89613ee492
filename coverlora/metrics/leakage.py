"""Which test rows a model may have seen: exact leaks, near-duplicate letters, and the novel rows left.

The dataset reuses letter templates: a third of the test letters that do not occur verbatim in train are a
training letter with other names filled in. ROUGE on such a row rewards memorising the template, so every summary
also reports the **novel** rows: no exact leak, and no training letter within `NEAR_DUPLICATE_ROUGE` of the test
letter once each letter's own company, title and applicant name are masked.
"""

from __future__ import annotations

import re

import pandas as pd

from coverlora.fields import INPUT_FIELDS, TARGET_FIELD
from coverlora.text import as_text
from coverlora.train.filters import canonical_column

# ROUGE-L F1 between name-masked letters at or above which two letters are one template. On the 292 test rows that
# do not leak exactly, the nearest training letter scores: < 0.6: 147 rows, 0.6-0.7: 14, 0.7-0.8: 7, 0.8-0.9: 10,
# >= 0.9: 114. The cut sits in that valley: 124 near-duplicates, 168 novel rows.
NEAR_DUPLICATE_ROUGE = 0.8
CANDIDATES = 10  # training letters per test row compared by ROUGE-L, the closest by TF-IDF cosine
ENTITY_SLOTS = (("applicant_name", "<name>"), ("hiring_company", "<company>"), ("job_title", "<title>"))


def find_leakage(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Which test rows also occur in train (text.canonical on every field), indexed like ``test``:

      letter_in_train               the test letter equals some train letter
      letter_in_train_same_company  ... one whose row has the same hiring_company
      inputs_in_train               all INPUT_FIELDS equal some train row's
      leaked                        letter_in_train or inputs_in_train
    Empty letters never count as leaked letters.
    """
    train_letters = canonical_column(train, TARGET_FIELD)
    letters = set(train_letters) - {""}
    letter_company = {(letter, company) for letter, company in zip(train_letters, canonical_column(train, "hiring_company"))
                      if letter}
    train_inputs = set(zip(*(canonical_column(train, f) for f in INPUT_FIELDS)))
    test_letters = canonical_column(test, TARGET_FIELD)
    out = pd.DataFrame(index=test.index)
    out["letter_in_train"] = [bool(letter) and letter in letters for letter in test_letters]
    out["letter_in_train_same_company"] = [bool(letter) and (letter, company) in letter_company for letter, company
                                           in zip(test_letters, canonical_column(test, "hiring_company"))]
    out["inputs_in_train"] = [key in train_inputs for key in zip(*(canonical_column(test, f) for f in INPUT_FIELDS))]
    out["leaked"] = out["letter_in_train"] | out["inputs_in_train"]
    return out


def swap_entities(letter: str, source: dict, target: dict) -> str:
    """`letter`, written for row `source`, with that row's applicant name, company and title replaced by
    `target`'s values (whole words, any case). The name's first word alone is swapped too ("Thanks, John")."""
    replacements = []
    for field, _ in ENTITY_SLOTS:
        old, new = as_text(source.get(field)).strip(), as_text(target.get(field)).strip()
        if old:
            replacements.append((old, new))
            if field == "applicant_name" and len(old.split()) > 1:
                replacements.append((old.split()[0], new.split()[0] if new else new))
    for old, new in sorted(replacements, key=lambda pair: -len(pair[0])):  # "John Smith" before "John"
        letter = re.sub(rf"(?<!\w){re.escape(old)}(?!\w)", lambda _, new=new: new, letter, flags=re.IGNORECASE)
    return letter


def masked_letter(row: dict) -> str:
    return swap_entities(as_text(row.get(TARGET_FIELD)), row, {field: slot for field, slot in ENTITY_SLOTS})


def nearest_train_letters(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """For each test row, the training row whose name-masked letter is closest by ROUGE-L (among the
    `CANDIDATES` nearest by TF-IDF cosine), indexed like ``test``: nearest_train_row_id, nearest_rouge_l."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel

    from coverlora.scoring.rouge import scorer

    train_masked = [masked_letter(row) for row in train.to_dict("records")]
    test_masked = [masked_letter(row) for row in test.to_dict("records")]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(train_masked + test_masked)
    similarity = linear_kernel(vectorizer.transform(test_masked), vectorizer.transform(train_masked))
    best_ids, best_scores = [], []
    for i, letter in enumerate(test_masked):
        candidates = similarity[i].argsort()[::-1][:CANDIDATES]
        scores = [(scorer().score(train_masked[j], letter)["rougeL"].fmeasure, j) for j in candidates]
        score, j = max(scores)
        best_ids.append(int(train["row_id"].iloc[j]) if "row_id" in train else int(j))
        best_scores.append(score)
    return pd.DataFrame({"nearest_train_row_id": best_ids, "nearest_rouge_l": best_scores}, index=test.index)


def seen_in_training(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """find_leakage's columns plus near_duplicate (ROUGE-L of the name-masked letters ≥ NEAR_DUPLICATE_ROUGE) and
    novel (neither leaked nor a near-duplicate), with the nearest training letter as evidence."""
    out = find_leakage(train, test).join(nearest_train_letters(train, test))
    out["near_duplicate"] = out["nearest_rouge_l"] >= NEAR_DUPLICATE_ROUGE
    out["novel"] = ~(out["leaked"] | out["near_duplicate"])
    return out
