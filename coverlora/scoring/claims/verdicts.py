"""The claim checker: every sentence of a letter labelled supported, borrowed, unsupported or not a claim.

    verdicts = check_claims(letter, row)                    # one letter
    per_letter = check_letters(letters, rows)               # many, embeddings batched in one pass
    letter_flagged(verdicts); claim_rates(per_letter)       # a filter rule; per-model rates

A claim is **supported** when the resume fields back it, **borrowed** when its content is found only in the
job's fields (title, company, preferred qualifications) and **unsupported** when it is in neither. Exact rules
decide first (claim_evidence.hard_evidence, claim_roles.role_evidence): working at the hiring company, the
job's title as one's role, years, numbers, degrees, certifications, skills and placeholders. Then the content
words: a claim most of whose words the resume lacks is flagged, unless MiniLM finds a resume line that says
the same thing in other words (a paraphrase); one whose words come from the posting and whose MiniLM cosine
is clearly nearer the posting than the resume is borrowed.

Modules: sentences (splitting), claim_detection (what is a claim), claim_words (word lists), claim_evidence
and claim_roles (the evidence), claim_labels (the labelled set and its precision/recall).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from coverlora.scoring.claims import detection
from coverlora.scoring.claims.evidence import (
    BORROWED,
    JOB_FIELDS,
    RESUME_FIELDS,
    SUPPORTED,
    UNSUPPORTED,
    Evidence,
    RowSources,
    hard_evidence,
    missing_words,
    written_words,
)
from coverlora.scoring.claims.features import candidate_evidence
from coverlora.scoring.claims.roles import role_evidence
from coverlora.scoring.sentences import BODY, Sentence, split_sentences
from coverlora.text import field_text, padded_words

NOT_A_CLAIM = "not_a_claim"
LABELS = (SUPPORTED, BORROWED, UNSUPPORTED, NOT_A_CLAIM)
FLAGGED_LABELS = frozenset({BORROWED, UNSUPPORTED})


@dataclass(frozen=True)
class Thresholds:
    """When a claim's content words flag it. The defaults were chosen by `scripts/calibrate_claims.py
    calibrate` (best F1 of "flagged" on the tuning part of data/claims; 249 labelled claims there) and are
    measured on the held-out part by tests/test_claims.py. Change them only by rerunning that script."""

    max_uncovered_share: float = 0.6  # flag when more than this share of content words is not in the resume
    min_uncovered: int = 3  # ... and at least this many of them
    min_similarity: float = 0.8  # ... unless a resume line's MiniLM cosine reaches this (a paraphrase)
    job_margin: float = 0.2  # borrowed when a job line's cosine beats the best resume line's by this much


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class SentenceVerdict:
    index: int
    text: str
    start: int
    end: int
    label: str  # one of LABELS
    evidence: tuple[Evidence, ...] = ()
    resume_similarity: float | None = None  # best MiniLM cosine with a resume line (None: not computed)
    job_similarity: float | None = None  # ... with a line of the job's fields
    # Of a flagged sentence: 'specific' (a recruiter could catch it) or 'generic' (boilerplate), as PROTOCOL.md
    # defines them; None when not flagged, or when the lexical checker (which cannot tell) decided.
    severity: str | None = None

    @property
    def specific(self) -> bool:
        return self.flagged and self.severity == "specific"

    @property
    def flagged(self) -> bool:
        return self.label in FLAGGED_LABELS


def decide(evidence: Sequence[Evidence], resume_similarity: float | None, job_similarity: float | None = None,
           thresholds: Thresholds = THRESHOLDS) -> str:
    """The label of a claim from its evidence. Exact evidence decides first; then the thresholds weigh the
    content words ("words" evidence) and the best resume and job similarities."""
    exact = {item.source for item in evidence if item.kind not in ("words", "similarity")}
    if BORROWED in exact:
        return BORROWED
    if UNSUPPORTED in exact:
        return UNSUPPORTED
    counts = {source: sum(len(item.items) for item in evidence if item.kind == "words" and item.source == source)
              for source in (SUPPORTED, BORROWED, UNSUPPORTED)}
    uncovered = counts[BORROWED] + counts[UNSUPPORTED]
    total = uncovered + counts[SUPPORTED]
    paraphrase = resume_similarity is not None and resume_similarity >= thresholds.min_similarity
    if uncovered >= thresholds.min_uncovered and uncovered / total > thresholds.max_uncovered_share and not paraphrase:
        return BORROWED if counts[BORROWED] >= counts[UNSUPPORTED] else UNSUPPORTED
    # MiniLM's sentence cosine barely separates supported from invented claims (tuning half, medians 0.57 and
    # 0.55), but a claim lifted from the posting is nearer the posting than the resume (0.10 ahead at the median).
    if counts[BORROWED] and None not in (job_similarity, resume_similarity) and (
            job_similarity - resume_similarity >= thresholds.job_margin):
        return BORROWED
    return SUPPORTED


def relabel(verdict: SentenceVerdict, thresholds: Thresholds) -> SentenceVerdict:
    """The same sentence judged with other thresholds (whether it is a claim does not depend on them)."""
    if verdict.label == NOT_A_CLAIM:
        return verdict
    return replace(verdict, label=decide(verdict.evidence, verdict.resume_similarity, verdict.job_similarity,
                                         thresholds))


def explain(verdict: SentenceVerdict) -> str:
    """The evidence in one line, e.g. 'employer borrowed: Northwind Logistics (hiring_company); ...'."""
    parts, written = [], written_words(verdict.text)
    for item in verdict.evidence:
        where = f" ({item.field})" if item.field else ""
        words = [written.get(word, word) for word in item.items] if item.kind == "words" else item.items
        what = f"{item.score:.2f}" if item.score is not None else ", ".join(dict.fromkeys(words))
        parts.append(f"{item.kind} {item.source}: {what}{where}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- MiniLM paraphrase evidence


def _lines(row: Mapping[str, str], names: Sequence[str]) -> list[str]:
    """Each field whole, and its lines and sentences: a claim usually restates one of them."""
    units = []
    for name in names:
        value = field_text(row, name).strip()
        if value:
            units.append(value)
            units += [part.strip() for part in value.replace(";", "\n").replace(". ", "\n").split("\n")
                      if len(part.split()) >= 2 and part.strip() != value]
    return units


def _similarities(texts: list[str], rows: list[Mapping[str, str]]) -> list[tuple[float | None, float | None]]:
    """(best resume cosine, best job cosine) per sentence; texts[i] belongs to rows[i]. One MiniLM pass."""
    from coverlora.scoring.embeddings import embed

    units = [(_lines(row, RESUME_FIELDS), _lines(row, JOB_FIELDS)) for row in rows]
    vocabulary = list(dict.fromkeys([*texts, *(u for pair in units for side in pair for u in side)]))
    vectors = embed(vocabulary)
    position = {text: i for i, text in enumerate(vocabulary)}
    out = []
    for text, (resume, job) in zip(texts, units):
        vector = vectors[position[text]]
        best = [float((vectors[[position[u] for u in side]] @ vector).max()) if side else None
                for side in (resume, job)]
        out.append((best[0], best[1]))
    return out


# ---------------------------------------------------------------------------- public API


def check_letters(letters: Sequence[str], rows: Sequence[Mapping[str, str]], *, embeddings: bool = True,
                  thresholds: Thresholds = THRESHOLDS, method: str = "auto") -> list[list[SentenceVerdict]]:
    """check_claims for many letters; letters[i] was written from rows[i].

    `method`: 'verifier' (the learned verifier reads every body sentence against its row, the exact rules
    overriding it: verifier.py), 'lexical' (the rules and content words, with MiniLM paraphrase evidence when
    `embeddings`), or 'auto': the verifier when its weights are here (a fresh clone has them), else lexical.
    The verifier needs no MiniLM, so `embeddings` only matters to the lexical checker."""
    if len(letters) != len(rows):
        raise ValueError(f"{len(letters)} letters for {len(rows)} rows")
    if method not in ("auto", "verifier", "lexical"):
        raise ValueError(f"method must be auto, verifier or lexical, got {method!r}")
    from coverlora.scoring.claims import verifier

    if method == "verifier" or (method == "auto" and verifier.available()):
        return _verify_letters(letters, rows)
    drafts, pending = [], []  # pending: (letter, draft position) of claims that want a similarity
    for i, (letter, row) in enumerate(zip(letters, rows)):
        sources, draft = RowSources.of(row), []
        for sentence in split_sentences(letter or ""):
            candidate = candidate_evidence(sentence.text, sources) if sentence.kind == BODY else None
            draft.append((SentenceVerdict(sentence.index, sentence.text, sentence.start, sentence.end,
                                          NOT_A_CLAIM, candidate or ()), candidate))
            if candidate is not None:
                pending.append((i, len(draft) - 1))
        drafts.append(draft)
    similarity = {}
    if embeddings and pending:
        scores = _similarities([drafts[i][j][0].text for i, j in pending], [rows[i] for i, _ in pending])
        similarity = dict(zip(pending, scores))
    return [[_finish(verdict, candidate, similarity.get((i, j)), thresholds)
             for j, (verdict, candidate) in enumerate(draft)] for i, draft in enumerate(drafts)]


def _verify_letters(letters: Sequence[str], rows: Sequence[Mapping[str, str]]) -> list[list[SentenceVerdict]]:
    """The learned verifier's verdicts: every body sentence of every letter in one batched pass."""
    return verify_sentences([split_sentences(letter or "") for letter in letters], rows)


def exact_findings(text: str, sources: RowSources) -> tuple[Evidence, ...]:
    """The exact rules' flags on a body sentence: they decide it whatever the readers say. A tool named in a wish
    ("I am excited to work with NLP and computer vision") claims nothing, so the entity rule is silent on intent
    sentences; a years or degree claim inside one ("With over 7 years of experience, I am confident...") still counts."""
    intent = detection.is_intent(padded_words(text))
    return tuple(item for item in hard_evidence(text, sources) + role_evidence(text, sources)
                 if item.source in (BORROWED, UNSUPPORTED) and item.kind != "placeholder"
                 and not (intent and item.kind == "entity"))


def verify_sentences(sentences: Sequence[Sequence[Sentence]], rows: Sequence[Mapping[str, str]],
                     sources: Sequence[RowSources] | None = None,
                     flag_threshold: float | None = None) -> list[list[SentenceVerdict]]:
    """The verifier's verdicts for some sentences of each letter (split_sentences' output, or the part of it a
    decoder just wrote: generate/repair.py), one batched pass; body sentences only are judged. An exact rule's
    finding (years, a number, a degree, the hiring company as employer...) flags a sentence whatever the model
    says. `sources`: each row's RowSources, when the caller keeps them. `flag_threshold`: the verifier's flag
    threshold (None: its own, chosen for F1; sentence repair may flag more, scripts/repair_threshold.py)."""
    from coverlora.scoring.claims import verifier

    threshold = verifier.flag_threshold() if flag_threshold is None else flag_threshold
    sources = sources or [RowSources.of(row) for row in rows]
    drafts, body = [], []
    for i, letter_sentences in enumerate(sentences):
        draft = []
        for sentence in letter_sentences:
            exact = ()
            if sentence.kind == BODY:
                body.append((i, len(draft)))
                exact = exact_findings(sentence.text, sources[i])
            draft.append((SentenceVerdict(sentence.index, sentence.text, sentence.start, sentence.end, NOT_A_CLAIM), exact))
        drafts.append(draft)
    read = verifier.read_sentences([drafts[i][j][0].text for i, j in body], [rows[i] for i, _ in body],
                                   [sources[i] for i, _ in body])
    for (i, j), (probs, p_specific) in zip(body, read):
        verdict, exact = drafts[i][j]
        flagged = round(probs[verifier.CLASSES.index(BORROWED)] + probs[verifier.CLASSES.index(UNSUPPORTED)], 3)
        said = Evidence("verifier", verifier.label_of(probs, threshold), score=flagged)
        if exact:  # the rule is more precise than the model on these: it decides, and says so
            label = BORROWED if any(item.source == BORROWED for item in exact) else UNSUPPORTED
            # years, numbers, degrees and employers are specific by the protocol's definition
            drafts[i][j] = (replace(verdict, label=label, evidence=exact + (said,), severity="specific"), exact)
        else:
            severity = ("specific" if p_specific >= 0.5 else "generic") if said.source in FLAGGED_LABELS else None
            words = missing_words(verdict.text, sources[i]) if said.source in FLAGGED_LABELS else ()
            drafts[i][j] = (replace(verdict, label=said.source, evidence=(*words, said), severity=severity), exact)
    return [[verdict for verdict, _ in draft] for draft in drafts]


def _finish(verdict: SentenceVerdict, candidate: tuple[Evidence, ...] | None, scores: tuple | None,
            thresholds: Thresholds) -> SentenceVerdict:
    if candidate is None:
        return verdict
    resume_sim, job_sim = scores if scores is not None else (None, None)
    evidence = verdict.evidence
    if resume_sim is not None:
        evidence += (Evidence("similarity", SUPPORTED, field="resume", score=round(resume_sim, 3)),)
    if job_sim is not None:
        evidence += (Evidence("similarity", BORROWED, field="job", score=round(job_sim, 3)),)
    return replace(verdict, label=decide(evidence, resume_sim, job_sim, thresholds), evidence=evidence,
                   resume_similarity=resume_sim, job_similarity=job_sim)


def check_claims(letter: str, row: Mapping[str, str], *, embeddings: bool = True,
                 thresholds: Thresholds = THRESHOLDS, method: str = "auto") -> list[SentenceVerdict]:
    """Every sentence and frame line of `letter` with its label and evidence, judged against `row`."""
    return check_letters([letter], [row], embeddings=embeddings, thresholds=thresholds, method=method)[0]


def letter_flagged(verdicts: Sequence[SentenceVerdict]) -> bool:
    """At least one borrowed or unsupported claim: the rule for filtering training letters."""
    return any(verdict.flagged for verdict in verdicts)


def claim_rates(verdicts_per_letter: Sequence[Sequence[SentenceVerdict]]) -> dict:
    """Per-model aggregation. claim_support_rate is over all claims (micro); the shares are over letters."""
    labels = [[verdict.label for verdict in verdicts] for verdicts in verdicts_per_letter]
    counts = {label: sum(letter.count(label) for letter in labels) for label in LABELS}
    n_claims = counts[SUPPORTED] + counts[BORROWED] + counts[UNSUPPORTED]
    n_letters = len(labels)

    def share(test) -> float | None:
        return sum(map(test, labels)) / n_letters if n_letters else None

    return {
        "n_letters": n_letters,
        "n_claims": n_claims,
        "n_supported": counts[SUPPORTED],
        "n_borrowed": counts[BORROWED],
        "n_unsupported": counts[UNSUPPORTED],
        "claim_support_rate": counts[SUPPORTED] / n_claims if n_claims else None,
        "share_with_borrowed": share(lambda letter: BORROWED in letter),
        "share_with_unsupported": share(lambda letter: UNSUPPORTED in letter),
        "share_flagged": share(lambda letter: bool(FLAGGED_LABELS & set(letter))),
        "claims_per_letter": n_claims / n_letters if n_letters else None,
    }
