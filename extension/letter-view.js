// The letter as the popup, the side panel and the web page show it: paragraphs of sentence spans, each with a
// data-label for the highlight layer, and the grounding banner. Built with DOM nodes and textContent only.
//
// Highlighting: when a response carries `claims` ([{sentence, label, evidence}], label one of supported,
// borrowed, unsupported, not_a_claim), each sentence span gets data-label and, when flagged, the evidence: as a
// title (mouse), and in data-evidence and aria-description on a span that takes keyboard focus (popup.css shows
// it under a focused sentence); popup.css colours [data-label="unsupported"] and [data-label="borrowed"].
// Without claims every sentence is data-label="unchecked" and nothing is highlighted.
"use strict";

const CoverloraLetter = (() => {
  const FLAGGED = new Set(["unsupported", "borrowed"]);
  const LABEL_TEXT = {unsupported: "Not supported by the job or the resume",
                      borrowed: "Taken from the job posting as if it were yours; your resume does not back it"};
  // Warnings that restate the highlighted sentences (one per kind): the banner counts the sentences instead.
  const CLAIM_WARNINGS = new Set(["borrowed_claims", "unsupported_claims"]);

  // Sentences of one line: up to . ! ? (with closing quotes/brackets) and the spaces after them. Joined, they
  // give the line back character for character.
  function sentences(line) {
    return line.match(/[^.!?]*[.!?]+["')\]]*\s*|[^.!?]+$/g) || [];
  }

  function normalized(text) {
    return text.replace(/\s+/g, " ").trim();
  }

  // claims → Map(normalized sentence → claim); the first claim for a sentence wins.
  function claimIndex(claims) {
    const index = new Map();
    for (const claim of claims || []) {
      const key = normalized(String(claim.sentence || ""));
      if (key && !index.has(key)) index.set(key, claim);
    }
    return index;
  }

  function sentenceSpan(text, claim) {
    const span = document.createElement("span");
    span.className = "sentence";
    span.textContent = text;
    span.dataset.label = claim ? String(claim.label) : "unchecked";
    if (claim && FLAGGED.has(claim.label)) {
      span.classList.add("flagged");
      span.title = [LABEL_TEXT[claim.label], claim.evidence].filter(Boolean).join(": ");
      span.tabIndex = 0;  // reachable with Tab: the evidence shows under the focused sentence
      span.dataset.evidence = span.title;
      span.setAttribute("aria-description", span.title);
    }
    return span;
  }

  // Replace `container`'s content with `letter`, one <p> per paragraph, one span per sentence.
  function render(container, letter, claims) {
    const index = claimIndex(claims);
    const paragraphs = String(letter || "").split(/\n\s*\n/);
    container.replaceChildren(...paragraphs.map((paragraph) => {
      const p = document.createElement("p");
      const lines = paragraph.split("\n");
      lines.forEach((line, i) => {
        for (const sentence of sentences(line)) p.append(sentenceSpan(sentence, index.get(normalized(sentence))));
        if (i < lines.length - 1) p.append(document.createElement("br"));
      });
      return p;
    }));
    return container.querySelectorAll(".sentence.flagged").length;
  }

  // While streaming: plain text, appended.
  function append(container, text) {
    container.append(document.createTextNode(text));
  }

  // The letter as the user left it (edits included), paragraphs separated by blank lines.
  function text(container) {
    const paragraphs = container.querySelectorAll("p");
    if (!paragraphs.length) return container.innerText.trim();
    return Array.from(paragraphs, (p) => p.innerText.trim()).join("\n\n");
  }

  // The banner over the letter: what the checks found, never a verdict that the letter is right.
  // Each problem counts once: a highlighted sentence, or a warning that is not about the highlighted sentences.
  function banner(el, result, flagged) {
    const others = result.warnings.filter((w) => !CLAIM_WARNINGS.has(w.code)).length;
    const problems = others + flagged;
    const parts = [flagged && `${flagged} highlighted sentence${flagged === 1 ? "" : "s"}`,
                   others && `${others} warning${others === 1 ? "" : "s"} below`].filter(Boolean);
    el.className = `banner ${problems ? "warn" : "clear"}`;
    el.textContent = problems
      ? `${problems} thing${problems === 1 ? "" : "s"} to check before sending: ${parts.join(" and ")}.`
      : "No problems found by these checks (company, title and name present; no unsupported years, skills or placeholders). Read it before sending.";
  }

  return {sentences, render, append, text, banner, FLAGGED};
})();
