"""Baselines, the leak-free and novel subsets, and ROUGE in any script."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import make_row

from coverlora.fields import COLUMNS
from coverlora.metrics.baselines import Retrieval, baseline_letters, template_letter
from coverlora.metrics.leakage import seen_in_training, swap_entities
from coverlora.scoring.rouge import rouge_l
from coverlora.scoring.rules import check_rules


def frame_of(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([{COLUMNS[k]: v for k, v in row.items()} for row in rows])
    frame.insert(0, "row_id", range(len(frame)))
    return frame


def test_template_letter_names_company_title_and_applicant():
    row = frame_of([make_row(3)]).to_dict("records")[0]
    checks = check_rules(template_letter(row), row)
    assert checks["company_named"] and checks["title_named"] and checks["name_named"]
    assert not checks["has_placeholder"]


def test_swap_entities_replaces_whole_words_in_any_case_longest_first():
    source = {"applicant_name": "John Smith", "hiring_company": "Acme", "job_title": "Data Analyst"}
    target = {"applicant_name": "Ana Silva", "hiring_company": "Globex", "job_title": "Nurse"}
    letter = "Dear ACME, I apply as Data Analyst. Acmeville is far. Thanks, John\nJohn Smith"
    assert swap_entities(letter, source, target) == "Dear Globex, I apply as Nurse. Acmeville is far. Thanks, Ana\nAna Silva"


def test_retrieval_takes_the_nearest_inputs_letter_with_the_test_rows_names():
    train = frame_of([make_row(i) for i in range(6)])
    query = dict(train.to_dict("records")[4])
    query.update(applicant_name="Zoe Quinn", hiring_company="Hooli")  # same job and resume as train row 4
    letter = Retrieval(train).letters([query])[0]
    original = train.loc[4]
    assert letter == swap_entities(original["cover_letter"], original.to_dict(), query)
    assert "Zoe Quinn" in letter and "Hooli" in letter and original["applicant_name"] not in letter


def test_baselines_are_every_row_in_order_and_retrieval_needs_training_rows():
    table = frame_of([make_row(100 + i) for i in range(3)])
    assert set(baseline_letters(table, None)) == {"copy_input", "template"}
    letters = baseline_letters(table, frame_of([make_row(i) for i in range(6)]))
    assert set(letters) == {"copy_input", "template", "retrieval"} and all(len(v) == 3 for v in letters.values())


def test_a_template_letter_with_other_names_is_a_near_duplicate_and_not_novel():
    train_rows = [make_row(i) for i in range(6)]
    train = frame_of(train_rows)
    reused = dict(make_row(50), **{"Applicant Name": "Zoe Quinn", "Hiring Company": "Hooli"})
    source = train.to_dict("records")[2]
    target = {COLUMNS[k]: v for k, v in reused.items()}
    reused["Cover Letter"] = swap_entities(source["cover_letter"], source, target)
    distinct = dict(make_row(51))
    distinct["Cover Letter"] = ("To the hiring team: my decade of hospital night shifts taught me calm triage, "
                                "and I would bring that steadiness to your ward. Regards, " + distinct["Applicant Name"])
    leaked = dict(make_row(52))
    leaked["Cover Letter"] = train_rows[3]["Cover Letter"]
    seen = seen_in_training(train, frame_of([reused, distinct, leaked]))
    assert seen["near_duplicate"].tolist()[:2] == [True, False]
    assert seen["leaked"].tolist() == [False, False, True]
    assert seen["novel"].tolist() == [False, True, False]
    assert seen["nearest_train_row_id"].iloc[0] == 2 and seen["nearest_rouge_l"].iloc[0] == pytest.approx(1.0)


@pytest.mark.parametrize("letter", ["我很高兴申请腾讯的数据分析师职位。", "أنا متحمس للتقدم لوظيفة محلل البيانات", "Привет, команда!"])
def test_an_identical_letter_in_any_script_scores_one(letter):
    assert rouge_l([letter], [letter]) == [1.0]
    assert rouge_l([letter], ["Dear team, hello."]) == [0.0]


def test_english_rouge_equals_rouge_scores_own_tokenizer():
    from rouge_score import rouge_scorer

    pairs = [("I am applying for the Data Analysts role, having analysed data.", "I'm applying to the data analyst role."),
             ("Experience: 5 years; skills - SQL & Python!", "Five years of SQL and python experience.")]
    default = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert rouge_l(*zip(*pairs)) == [default.score(ref, pred)["rougeL"].fmeasure for pred, ref in pairs]
