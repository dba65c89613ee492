"""Tests for the rule-based grounding checks, one rule at a time, on hand-made letters."""

import pytest

from coverlora.scoring import YearsClaim, check_rules, grounding_rates
from coverlora.scoring.rules import (
    company_named,
    find_placeholders,
    mentioned_entities,
    name_named,
    resume_years,
    title_named,
    years_claims,
)

ROW = {
    "job_title": "Senior Data Scientist",
    "preferred_qualifications": "10+ years of experience with Spark",
    "hiring_company": "Acme Analytics Inc.",
    "applicant_name": "Jane Q. Doe",
    "past_experience": "Data Analyst at Beta Corp for 3 years",
    "current_experience": "Data Scientist at Gamma LLC (4 years)",
    "skillsets": "Python, SQL, TensorFlow",
    "qualifications": "BSc in Statistics",
    "cover_letter": "",
}


def row_with(**fields: str) -> dict:
    return {**ROW, **fields}


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "letter, expected",
    [
        ("I would love to join Acme Analytics.", True),
        ("ACME ANALYTICS, INC. is a leader.", True),
        ("I admire Acme Analytics' mission.", True),
        ("I admire Acme's mission.", False),  # a different, shorter name
        ("I would love to join your company.", False),
    ],
)
def test_company_named_ignores_case_punctuation_and_legal_suffix(letter, expected):
    assert company_named(letter, "Acme Analytics Inc.") is expected


def test_company_named_keeps_the_name_when_it_is_only_a_suffix_word():
    assert company_named("I want to join The Company.", "The Company") is True
    assert company_named("I want to join you.", "") is None


@pytest.mark.parametrize(
    "letter, title, expected",
    [
        ("the senior data scientist position", "Senior Data Scientist", True),
        ("the Senior Data-Scientist role", "Sr. Data Scientist", True),
        ("as one of your Data Scientists", "Data Scientist", True),
        ("the Data Scientist opening", "Data Scientists", True),
        ("the Software Engineer job", "Software Engineer Position", True),
        ("the Data Engineer role", "Data Engineer (Remote)", True),
        ("the Data Scientist role", "Data Scientist in the R&D group", True),
        ("the Data Scientist role", "Senior Data Scientist", False),  # seniority matters
        ("the Data Analyst role", "Data Scientist", False),
    ],
)
def test_title_named(letter, title, expected):
    assert title_named(letter, title) is expected


@pytest.mark.parametrize(
    "letter, expected",
    [
        ("Sincerely,\nJane Q. Doe", True),
        ("Sincerely,\nJane Doe", True),  # middle initial dropped
        ("Best,\nJANE DOE", True),
        ("Best,\nJane", False),
        ("Best,\nJohn Doe", False),
    ],
)
def test_name_named_accepts_full_or_first_and_last(letter, expected):
    assert name_named(letter, "Dr. Jane Q. Doe") is expected


# ---------------------------------------------------------------------------- years of experience


@pytest.mark.parametrize(
    "letter, claims",
    [
        ("With over 5 years of experience in analytics", [YearsClaim(5, "at_least")]),
        ("I have five years of experience.", [YearsClaim(5, "exact")]),
        ("I bring twenty-five years in the industry.", [YearsClaim(25, "exact")]),
        ("I have 5+ years of experience.", [YearsClaim(5, "at_least")]),
        ("I have 5 plus years of experience.", [YearsClaim(5, "at_least")]),
        ("I have 5-7 years of experience.", [YearsClaim(5, "range")]),
        ("I have five to seven years as an analyst.", [YearsClaim(5, "range")]),
        ("I have more than a decade of experience.", [YearsClaim(10, "at_least")]),
        ("I bring a decade of hands-on work.", [YearsClaim(10, "exact")]),
        ("I spent half a decade at Beta.", [YearsClaim(5, "exact")]),
        ("I have worked at Beta for a year.", [YearsClaim(1, "exact")]),
        ("I have 3 years' experience.", [YearsClaim(3, "exact")]),
        ("I have 3 years relevant industry experience.", [YearsClaim(3, "exact")]),
        ("Over the past two years, I led a team.", [YearsClaim(2, "exact")]),
        ("one and a half years working with SQL", [YearsClaim(1.5, "exact")]),
        ("In two years I want to lead a team.", []),
        ("I hope to grow within the next 3 years of my career.", []),
        ("Acme's 20 years of innovation inspire me.", []),
        ("Two years ago I moved to Boston.", []),
        ("Over the past few years I learned a lot.", []),
        ("I interned for 6 months.", []),
    ],
)
def test_years_claims(letter, claims):
    assert years_claims(letter) == claims


def test_resume_years_adds_roles_and_takes_stated_totals():
    assert resume_years(ROW) == 7  # 3 + 4
    totals_only = row_with(
        past_experience="Analyst at Beta",
        current_experience="Scientist at Gamma",
        qualifications="BSc, 8 years of experience in analytics, 2+ years managing people",
    )
    assert resume_years(totals_only) == 8  # a total, not 8 + 2
    dated = row_with(past_experience="Analyst (2012-2015)", current_experience="Lead (2015 to 2019)")
    assert resume_years(dated) == 7
    months = row_with(past_experience="Intern for 6 months", current_experience="Analyst for 2-3 years")
    assert resume_years(months) == 3.5  # a range counts at its upper bound


def test_resume_years_is_unknown_without_amounts():
    assert resume_years(row_with(past_experience="Analyst at Beta", current_experience="Lead at Gamma")) is None
    # The job's requirement is not the applicant's experience.
    assert resume_years(row_with(past_experience="", current_experience="")) is None


@pytest.mark.parametrize(
    "letter, n_unsupported",
    [
        ("With over 5 years of experience, I am ready.", 0),
        ("I have 7 years of experience.", 0),
        ("I have five to seven years of experience.", 0),
        ("With over 10 years of experience, I am ready.", 1),
        ("With a decade of experience and 8 years as a lead.", 2),
        ("In ten years I want to lead Acme.", 0),
    ],
)
def test_years_claims_are_checked_against_resume_total(letter, n_unsupported):
    check = check_rules(letter, ROW)  # resume: 3 + 4 = 7 years
    assert check["years_checkable"] is True and check["resume_years"] == 7
    assert check["n_unsupported_years"] == n_unsupported
    assert check["unsupported_years"] is (n_unsupported > 0)


def test_preferred_qualifications_do_not_support_a_claim():
    # ROW's job asks for "10+ years"; the resume only has 7.
    assert check_rules("I bring 10+ years of experience.", ROW)["unsupported_years"] is True


def test_claims_are_not_counted_when_resume_has_no_years():
    row = row_with(past_experience="Analyst at Beta", current_experience="Scientist at Gamma")
    check = check_rules("I have twenty years of experience.", row)
    assert check["years_claims"] == [YearsClaim(20, "exact")]
    assert check["years_checkable"] is False
    assert (check["unsupported_years"], check["n_unsupported_years"]) == (False, 0)


# ---------------------------------------------------------------------------- skills and degrees


def test_hallucinated_skill_lowers_entity_precision_and_degree_synonym_is_supported():
    letter = "I hold a Bachelor's degree and use Python, TensorFlow and Kubernetes daily."
    check = check_rules(letter, ROW)  # resume: BSc; Python, SQL, TensorFlow
    assert check["entities_mentioned"] == ["Kubernetes", "Python", "TensorFlow", "bachelor's degree"]
    assert check["unsupported_entities"] == ["Kubernetes"]
    assert check["entity_precision"] == pytest.approx(3 / 4)


@pytest.mark.parametrize(
    "resume_degree, letter_degree",
    [
        ("B.S. in Physics", "my bachelor degree"),
        ("MSc in Data Science", "my Master's degree"),
        ("M.S. in Statistics", "a masters in statistics"),
        ("Doctorate in Economics", "my PhD"),
        ("Ph.D. in AI", "my doctoral research"),
    ],
)
def test_degree_synonyms_support_each_other(resume_degree, letter_degree):
    check = check_rules(f"I hold {letter_degree}.", row_with(qualifications=resume_degree))
    assert len(check["entities_mentioned"]) == 1
    assert check["unsupported_entities"] == []


def test_a_masters_is_not_supported_by_a_bachelors():
    check = check_rules("I hold a Master's degree.", ROW)
    assert check["unsupported_entities"] == ["master's degree"]
    assert check["entity_precision"] == 0.0


def test_entities_match_whole_tokens_only():
    assert mentioned_entities("JavaScript and MySQL") == {"JavaScript", "MySQL"}  # no Java, no SQL
    assert mentioned_entities("Node.js and R&D budgets") == {"Node.js"}  # no JS, no R
    assert mentioned_entities("R/Python, C++ and C#") == {"R", "Python", "C++", "C#"}
    # Ordinary words that are also tool names only count when written as the tool.
    assert mentioned_entities("I react quickly and excel in agile teams") == set()
    assert mentioned_entities("I use React, Excel and Agile") == {"React", "Excel", "Agile"}
    # ... but an acronym that is no English word counts however a resume writes it ("skills: etl, dns, vpn")
    assert mentioned_entities("hard skills: etl development, dns, vpn setup") == {"ETL", "DNS", "VPN"}


def test_entity_in_job_fields_counts_as_supported_and_no_mentions_gives_none():
    assert check_rules("I know Spark well.", ROW)["unsupported_entities"] == []  # in the job ad
    assert check_rules("I am a hard worker.", ROW)["entity_precision"] is None


# ---------------------------------------------------------------------------- placeholders


@pytest.mark.parametrize(
    "letter, placeholders",
    [
        ("Sincerely,\n[Your Name]", ["[Your Name]"]),
        ("Dear [Hiring Manager's Name],", ["[Hiring Manager's Name]"]),
        ("I want to join [Company Name] at <Company>.", ["[Company Name]", "<Company>"]),
        ("I admire {company_name}. [Date]", ["{company_name}", "[Date]"]),
        ("Sincerely,\nYour Name\nCompany Name", ["Your Name", "Company Name"]),
        ("Reference number XXX, signed ____", ["XXX", "____"]),
        ("[Company] and [Company] again", ["[Company]"]),
    ],
)
def test_placeholders_found(letter, placeholders):
    assert find_placeholders(letter) == placeholders
    assert check_rules(letter, ROW)["has_placeholder"] is True


@pytest.mark.parametrize(
    "letter",
    [
        "Dear Hiring Manager, I am excited to join XYZ Corporation.",
        "I look forward to hearing about your name-brand products.",
        "See reference [1]. Done.</s><|eot_id|>",
        "A sentence [that has far too many words inside the brackets to be a slot].",
    ],
)
def test_no_placeholders(letter):
    assert find_placeholders(letter) == []
    assert check_rules(letter, ROW)["has_placeholder"] is False


# ---------------------------------------------------------------------------- whole letters and rates

GOOD_LETTER = """Dear Hiring Manager,

I am writing to apply for the Senior Data Scientist position at Acme Analytics. With over
five years of experience, most recently as a Data Scientist at Gamma, I build models in Python
and TensorFlow. I hold a BSc in Statistics.

Sincerely,
Jane Doe"""


def test_check_letter_on_a_well_grounded_letter():
    check = check_rules(GOOD_LETTER, ROW)
    assert check["company_named"] and check["title_named"] and check["name_named"]
    assert check["years_claims"] == [YearsClaim(5, "at_least")]
    assert check["unsupported_years"] is False
    assert check["entity_precision"] == 1.0
    assert check["has_placeholder"] is False


def test_grounding_rates_aggregate_by_hand():
    unparseable = row_with(past_experience="Analyst at Beta", current_experience="Lead at Gamma")
    checks = [
        check_rules(GOOD_LETTER, ROW),  # 3 entities, all supported
        check_rules("Dear [Hiring Manager], I know Kubernetes and 12 years of SQL.", ROW),
        check_rules("Acme Analytics. 30 years of experience.", unparseable),  # years not checkable
        check_rules("Hello.", row_with(hiring_company="")),  # company unknown: skipped
    ]
    rates = grounding_rates(checks)
    assert rates["n_letters"] == 4
    assert rates["company_named_rate"] == pytest.approx(2 / 3)
    assert rates["title_named_rate"] == pytest.approx(1 / 4)
    assert rates["name_named_rate"] == pytest.approx(1 / 4)
    assert rates["n_years_checkable"] == 3
    assert rates["unsupported_years_rate"] == pytest.approx(1 / 3)
    # micro-average: 3 of 3 supported + 1 (SQL) of 2 supported -> 4 of 5
    assert rates["entity_precision"] == pytest.approx(4 / 5)
    assert rates["placeholder_rate"] == pytest.approx(1 / 4)


def test_grounding_rates_of_nothing_are_none():
    rates = grounding_rates([])
    assert rates["company_named_rate"] is None and rates["entity_precision"] is None


@pytest.mark.parametrize(("past", "current", "total"), [
    ("Analyst at Beta (2019\u20132021)", "Lead at Gamma (2021\u2013present)", 2 + 5),  # the resume
    ("Analyst at Beta (2015-2018)", "Lead at Gamma (2018-2021)", 6),                      # closed ranges only
    ("", "Lead at Gamma (2019-Present)", 7),
    ("", "Lead at Gamma (2020 to current)", 6),
    ("", "Lead at Gamma (2022 - now)", 4),
    ("Analyst at Beta for 3 years", "Lead at Gamma (2024-today)", 3 + 2),
    ("", "Lead at Gamma (2027-present)", 0),  # a start after this year counts nothing, not a negative
])
def test_open_ranges_count_up_to_this_year(past, current, total):
    assert resume_years(row_with(past_experience=past, current_experience=current), this_year=2026) == total


def test_open_ranges_default_to_todays_year():
    import datetime

    row = row_with(past_experience="", current_experience="Lead at Gamma (2019-present)")
    assert resume_years(row) == datetime.date.today().year - 2019


def test_a_claim_above_an_open_ranged_resume_is_no_longer_waved_through():
    """Before: 2019–2021 + 2021–present made the total unknown, and '12 years' was labelled supported."""
    from coverlora.scoring.claims.verdicts import BORROWED, UNSUPPORTED, check_claims

    row = row_with(past_experience="Data Analyst at Beta (2019\u20132021)",
                   current_experience="Data Scientist at Gamma (2021\u2013present)")
    verdicts = check_claims("I have been with the company for 12 years.", row, embeddings=False)
    assert [v.label for v in verdicts] in ([UNSUPPORTED], [BORROWED])
    assert check_rules("I have 12 years of experience in data science.", row)["unsupported_years"]
