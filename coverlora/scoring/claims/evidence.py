"""Lexical evidence for one claim sentence: where its words, numbers, named entities and employers come from.

Everything here is exact and rule-based; the paraphrase part (MiniLM) and the decision live in claims.py.
A row's side is read once per row (RowSources); a sentence is then compared with it by `sentence_evidence`.
Resume fields back a claim; the job's fields (title, company, preferred qualifications) only make it borrowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from nltk.stem.snowball import SnowballStemmer

from coverlora.scoring.claims.words import ACRONYMS, COMPOUNDS, GENERIC_WORDS, STOP_WORDS
from coverlora.scoring.rules import find_placeholders, mentioned_entities, resume_years, years_claims
from coverlora.scoring.vocabulary import ENTITY_ALIASES
from coverlora.text import field_text, padded_words
from coverlora.years import NUMBER_WORDS

RESUME_FIELDS = ("current_experience", "past_experience", "skillsets", "qualifications")
JOB_FIELDS = ("job_title", "hiring_company", "preferred_qualifications")
SUPPORTED, BORROWED, UNSUPPORTED = "supported", "borrowed", "unsupported"

_STEMMER = SnowballStemmer("english")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_CALENDAR_YEAR = re.compile(r"\b(?:19|20)\d\d\b")


# Word families Snowball leaves apart that letters and resumes use for one another ("data analysis" in the
# resume, "analytical skills" in the letter).
_FAMILIES = ("analy", "scien", "intern")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    stemmed = _STEMMER.stem(word)
    return next((family for family in _FAMILIES if stemmed.startswith(family)), stemmed)


_GENERIC_STEMS = frozenset(stem(word) for word in GENERIC_WORDS) | STOP_WORDS


_COMPOUNDS = [(re.compile(rf"\b{pattern}\b"), word) for pattern, word in COMPOUNDS.items()]


def _join_compounds(normalized: str) -> str:
    for pattern, word in _COMPOUNDS:
        normalized = pattern.sub(word, normalized)
    return normalized


def content_stems(text: str) -> list[str]:
    """Stems of the words that carry a claim's content: no stop words, no letter boilerplate, no bare digits.
    An acronym stands for its expansion ("AI": "artifici", "intellig"), so either form backs the other."""
    stems = []
    for word in _join_compounds(padded_words(text)).split():
        if word in ACRONYMS and word != "it":  # "it" the pronoun is far likelier than IT
            stems += content_stems(ACRONYMS[word])
            continue
        if word in STOP_WORDS or word in NUMBER_WORDS or word.isdigit() or len(word) < 2:
            continue
        stemmed = stem(word)
        if stemmed not in _GENERIC_STEMS:
            stems.append(stemmed)
    return list(dict.fromkeys(stems))


def written_words(text: str) -> dict[str, str]:
    """Each content stem of `text` -> the word as the text writes it ("inventori" -> "inventory"), for evidence a
    person reads; an acronym's expansion stems map to the acronym."""
    written: dict[str, str] = {}
    for word in re.findall(r"[A-Za-z][\w+#&.-]*[\w+#]|[A-Za-z]", text):
        for stemmed in content_stems(word):
            written.setdefault(stemmed, word)
    return written


def numbers_in(text: str) -> set[str]:
    """Digit numbers as written, without thousands separators ("40,000" and "40000" are one number)."""
    return {match.group(0).replace(",", "").rstrip(".") for match in _NUMBER.finditer(text)}


@dataclass(frozen=True)
class Evidence:
    """One reason for a sentence's label: what matched (or did not), and where."""

    kind: str  # "employer", "years", "number", "entity", "words", "similarity"
    source: str  # SUPPORTED (found in the resume), BORROWED (only in the job's fields) or UNSUPPORTED (neither)
    items: tuple[str, ...] = ()  # the words, numbers or names concerned
    field: str | None = None  # the row field it was found in
    score: float | None = None  # a similarity, for kind "similarity"


@dataclass
class RowSources:
    """One row's resume and job fields, read once for all sentences of its letter."""

    row: Mapping[str, str]
    resume_text: str = ""
    stems: dict[str, dict[str, str]] = field(default_factory=dict)  # "resume"/"job" -> stem -> first field
    numbers: dict[str, set[str]] = field(default_factory=dict)
    entities: dict[str, set[str]] = field(default_factory=dict)
    years: float | None = None
    years_known: bool = True
    job_years: set[float] = field(default_factory=set)
    job_names: tuple[re.Pattern, ...] = ()  # the hiring company's name, then the job's title, as whole words

    @classmethod
    def per_row(cls, rows: Sequence[Mapping[str, str]]) -> list[RowSources]:
        """rows[i]'s RowSources for each i; a row given many times (a letter's sentences) is read once."""
        by_row: dict[int, RowSources] = {}
        for row in rows:
            if id(row) not in by_row:
                by_row[id(row)] = cls.of(row)
        return [by_row[id(row)] for row in rows]

    @classmethod
    def of(cls, row: Mapping[str, str]) -> RowSources:
        sources = cls(row)
        sources.resume_text = "\n".join(field_text(row, name) for name in RESUME_FIELDS)
        job_text = "\n".join(field_text(row, name) for name in JOB_FIELDS)
        for side, names in (("resume", RESUME_FIELDS), ("job", JOB_FIELDS)):
            sources.stems[side] = {}
            for name in names:
                for word in content_stems(field_text(row, name)):
                    sources.stems[side].setdefault(word, name)
        sources.numbers = {"resume": numbers_in(sources.resume_text), "job": numbers_in(job_text)}
        sources.entities = {"resume": mentioned_entities(sources.resume_text), "job": mentioned_entities(job_text)}
        sources.years = resume_years(row)
        # resume_years is None both when the resume states no amount (a claim is then unsupported) and when a
        # role runs "to present" from a calendar year (its length is unknown: no claim can be judged).
        sources.years_known = sources.years is not None or not _CALENDAR_YEAR.search(sources.resume_text)
        sources.job_years = {claim.claimed_years for claim in years_claims(job_text)}
        sources.job_years |= {float(n) for n in numbers_in(field_text(row, "preferred_qualifications")) if n.isdigit()}
        names = (field_text(row, name).strip() for name in ("hiring_company", "job_title"))
        sources.job_names = tuple(re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.I) for name in names if name)
        return sources


def _years_evidence(sentence: str, sources: RowSources) -> tuple[list[Evidence], set[str]]:
    """Years-of-experience claims against the resume's total; also the digits they account for."""
    found, used = [], set()
    for claim in years_claims(sentence):
        text = f"{claim.claimed_years:g} years"
        used.add(f"{claim.claimed_years:g}")
        if not sources.years_known or (sources.years is not None and claim.claimed_years <= sources.years + 1e-9):
            found.append(Evidence("years", SUPPORTED, (text,), "resume"))
        elif claim.claimed_years in sources.job_years:
            found.append(Evidence("years", BORROWED, (text,), "preferred_qualifications"))
        else:
            found.append(Evidence("years", UNSUPPORTED, (text,)))
    return found, used


def _attribute(kind: str, items, resume: set, job: set, job_field: str) -> list[Evidence]:
    """Each item as supported (in the resume), borrowed (only in the job's fields) or unsupported (in neither)."""
    return [Evidence(kind, SUPPORTED, (item,), "resume") if item in resume
            else Evidence(kind, BORROWED, (item,), job_field) if item in job
            else Evidence(kind, UNSUPPORTED, (item,)) for item in items]


def _without_job_names(sentence: str, sources: RowSources) -> str:
    """The sentence with the hiring company's name and the job's title blanked out: a number or a tool inside them
    ("the Data Engineer position at 123 Company", "Tier 2 Support Analyst", "the position at Salesforce") names the
    job; it claims nothing. Working at the hiring company is the employer rule's (roles.py)."""
    for pattern in sources.job_names:
        sentence = pattern.sub(" ", sentence)
    return sentence


def _number_evidence(sentence: str, sources: RowSources, accounted: set[str]) -> list[Evidence]:
    return _attribute("number", sorted(numbers_in(sentence) - accounted), sources.numbers["resume"],
                      sources.numbers["job"], "preferred_qualifications")


def _entity_evidence(sentence: str, sources: RowSources, ignore: set[str]) -> list[Evidence]:
    """Skills, tools, degrees and certifications from grounding's vocabulary."""
    return _attribute("entity", sorted(mentioned_entities(sentence) - ignore), sources.entities["resume"],
                      sources.entities["job"], "job")


# Entities of grounding's vocabulary that are certifications (its keys run degrees, certifications, languages...).
_KEYS = list(ENTITY_ALIASES)
CERTIFICATIONS = frozenset(_KEYS[_KEYS.index("PMP"):_KEYS.index("Python")])
_CERTIFIED = re.compile(r"\b(?:certifi\w*|certificates?|licensed|licen[cs]es?)\b", re.I)


def _certification_evidence(sentence: str, sources: RowSources) -> list[Evidence]:
    """"certified", "certification", "licensed": the resume must say so, or list the named certification."""
    if not _CERTIFIED.search(sentence) or _CERTIFIED.search(sources.resume_text):
        return []
    if mentioned_entities(sentence) & CERTIFICATIONS & sources.entities["resume"]:
        return []
    job = "\n".join(field_text(sources.row, name) for name in JOB_FIELDS)
    source = BORROWED if _CERTIFIED.search(job) else UNSUPPORTED
    return [Evidence("certification", source, (_CERTIFIED.search(sentence).group(0),),
                     "preferred_qualifications" if source == BORROWED else None)]


def _placeholder_evidence(sentence: str) -> list[Evidence]:
    """A claim about "[Company Name]" cannot be backed by anything."""
    return [Evidence("placeholder", UNSUPPORTED, tuple(found))] if (found := find_placeholders(sentence)) else []


def hard_evidence(sentence: str, sources: RowSources) -> list[Evidence]:
    """Years, numbers, vocabulary entities, certifications and placeholders: the checks an exact match decides."""
    title_entities = mentioned_entities(field_text(sources.row, "job_title"))
    if padded_words(field_text(sources.row, "job_title")).strip() in padded_words(sentence):
        ignore = title_entities  # naming the job's title is not claiming its skills
    else:
        ignore = set()
    years, accounted = _years_evidence(sentence, sources)
    unnamed = _without_job_names(sentence, sources)
    return (years + _number_evidence(unnamed, sources, accounted) + _entity_evidence(unnamed, sources, ignore)
            + _certification_evidence(sentence, sources) + _placeholder_evidence(sentence))


def word_evidence(stems: list[str], sources: RowSources) -> list[Evidence]:
    """Content stems grouped by where they are found: the resume (by field), only the job, or nowhere."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for word in stems:
        if word in sources.stems["resume"]:
            key = (SUPPORTED, sources.stems["resume"][word])
        elif word in sources.stems["job"]:
            key = (BORROWED, sources.stems["job"][word])
        else:
            key = (UNSUPPORTED, None)
        groups.setdefault(key, []).append(word)
    return [Evidence("words", source, tuple(words), name) for (source, name), words in groups.items()]



def missing_words(sentence: str, sources: RowSources) -> tuple[Evidence, ...]:
    """What a reader checks first: the sentence's content words the resume lacks (only in the job, or nowhere)."""
    return tuple(item for item in word_evidence(content_stems(sentence), sources) if item.source != SUPPORTED)
