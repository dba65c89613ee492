"""Baselines every model is scored beside, so a number can be read against what no learning at all achieves.

- copy_input: the prompt's fields concatenated, as if they were the letter.
- template: one fixed fill-in letter, written before any test score was seen.
- retrieval: the training letter whose inputs are most like the test row's (TF-IDF cosine over the input
  fields), with that row's company, title and applicant name swapped for the test row's. It scores high ROUGE-L
  wherever the data reuses a template, while carrying another applicant's history.
"""

from __future__ import annotations

import pandas as pd

from coverlora.fields import TARGET_FIELD
from coverlora.metrics.leakage import swap_entities
from coverlora.prompts import JOB_LINES, RESUME_LINES
from coverlora.scoring.sentences import USUAL_CLOSING
from coverlora.text import as_text
from coverlora.train.filters import input_text

BASELINES = ("copy_input", "template", "retrieval")
TEMPLATE = (
    "Dear Hiring Manager,\n\n"
    "I am writing to apply for the {title} position at {company}. I believe my experience and skills make me a "
    "strong candidate for this role, and I am excited about the opportunity to contribute to your team.\n\n"
    "Thank you for considering my application. I look forward to hearing from you.\n\n"
    + USUAL_CLOSING + "\n{name}"
)


def copy_input_letter(row: dict) -> str:
    return "\n".join(f"{label}: {row[key]}" for label, key in (*JOB_LINES, *RESUME_LINES) if as_text(row.get(key)).strip())


def template_letter(row: dict) -> str:
    return TEMPLATE.format(title=as_text(row.get("job_title")), company=as_text(row.get("hiring_company")),
                           name=as_text(row.get("applicant_name")))


class Retrieval:
    """Nearest training row by TF-IDF cosine over the input fields; its letter with the names swapped."""

    def __init__(self, train: pd.DataFrame):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.rows = train.to_dict("records")
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform([input_text(row) for row in self.rows])

    def letters(self, rows: list[dict]) -> list[str]:
        from sklearn.metrics.pairwise import linear_kernel

        if not rows:
            return []
        similarity = linear_kernel(self.vectorizer.transform([input_text(row) for row in rows]), self.matrix)
        nearest = similarity.argmax(axis=1)
        return [swap_entities(as_text(self.rows[j][TARGET_FIELD]), self.rows[j], row) for row, j in zip(rows, nearest)]


def baseline_letters(table: pd.DataFrame, train: pd.DataFrame | None) -> dict[str, list[str]]:
    """Each baseline's letter for every row of `table`, in order; retrieval only when the training rows are known."""
    rows = table.to_dict("records")
    letters = {"copy_input": [copy_input_letter(row) for row in rows], "template": [template_letter(row) for row in rows]}
    if train is not None and len(train):
        letters["retrieval"] = Retrieval(train).letters(rows)
    return letters
