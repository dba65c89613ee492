"""What the claim checkers read in a sentence: the lexical checker's evidence for a claim candidate, and the
learned verifier's features (the sentence's words, the content words the resume lacks, the exact rules' findings)."""

from __future__ import annotations

from coverlora.scoring.claims import detection
from coverlora.scoring.claims.evidence import (
    SUPPORTED,
    Evidence,
    RowSources,
    content_stems,
    hard_evidence,
    word_evidence,
)
from coverlora.scoring.claims.roles import role_evidence
from coverlora.text import padded_words


def candidate_evidence(text: str, sources: RowSources) -> tuple[Evidence, ...] | None:
    """The evidence of a claim sentence, or None when it is not a claim: not in the first person, intent only,
    or nothing checkable in it."""
    normalized = padded_words(text)
    if not detection.is_first_person(normalized) or detection.is_intent(normalized):
        return None
    hard = hard_evidence(text, sources) + role_evidence(text, sources)
    frame = [phrase for item in hard if item.kind == "name" and item.source == SUPPORTED for phrase in item.items]
    stems = content_stems(detection.mask_row_names(normalized, sources.row, frame))
    if not stems and all(item.kind == "placeholder" for item in hard):
        return None  # nothing but "[Skills]": a slot left empty, not a claim
    return tuple(hard + word_evidence(stems, sources))


def verifier_features(text: str, sources: RowSources) -> dict[str, float]:
    """A sentence read against its row, as sparse features: its words and word pairs (what a claim sounds like),
    each content stem by where it is found (resume, job only, nowhere: "u:agil" is the posting's agile restated
    as experience), the exact rules' findings and the counts and shares the lexical checker thresholds."""
    normalized = padded_words(text)
    words = normalized.split()
    features = {f"s:{w}": 1.0 for w in words}
    features |= {f"s2:{a}_{b}": 1.0 for a, b in zip(words, words[1:])}
    features["first_person"] = float(detection.is_first_person(normalized))
    features["intent"] = float(detection.is_intent(normalized))
    hard = hard_evidence(text, sources) + role_evidence(text, sources)
    for item in hard:
        features[f"rule:{item.kind}:{item.source}"] = 1.0
    frame = [phrase for item in hard if item.kind == "name" and item.source == SUPPORTED for phrase in item.items]
    stems = content_stems(detection.mask_row_names(normalized, sources.row, frame))
    counts = {"supported": 0, "borrowed": 0, "unsupported": 0}
    for item in word_evidence(stems, sources):
        counts[item.source] += len(item.items)
        for stem in item.items:
            features[f"{item.source[0]}:{stem}"] = 1.0
    uncovered = counts["borrowed"] + counts["unsupported"]
    features["n_uncovered"] = min(uncovered, 10) / 10
    features["share_uncovered"] = uncovered / max(1, uncovered + counts["supported"])
    features["n_borrowed"] = min(counts["borrowed"], 10) / 10
    features["no_content"] = float(not stems)
    return features
