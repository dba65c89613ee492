"""The claim checker: a letter's sentences labelled supported / borrowed / unsupported / not a claim against its row
(verdicts), from claim detection (detection), evidence in the row (evidence, words, roles); the labelled set (labels)."""
