"""The preference stage (prefer.py, coverlora/prefer/): the pair rule, the DPO reference being the SFT model (not
the base) while the trained adapter moves, and the stage end to end with resume, on a tiny model."""

import json

import pytest
import torch

from coverlora.config import PreferConfig
from coverlora.prefer import pairs as pairs_mod
from coverlora.prefer.pairs import Judged, choose_pair
from coverlora.runs.layout import RunLayout


def test_the_chosen_letter_is_clean_and_says_something_and_the_rejected_one_matches_its_length():
    judged = [Judged(False, 1, 100), Judged(False, 3, 95), Judged(True, 4, 40), Judged(True, 2, 90),
              Judged(False, 5, 20)]  # the last says little: below 80% of the median words
    assert choose_pair(judged, 0.2) == (1, 3)
    assert choose_pair([Judged(True, 2, 90), Judged(True, 1, 80)], 0.2) == "no_clean_letter"
    assert choose_pair([Judged(False, 2, 90), Judged(False, 0, 80)], 0.2) == "no_flagged_letter"
    assert choose_pair([Judged(False, 0, 90), Judged(True, 1, 80)], 0.2) == "no_clean_letter"  # no supported claim


@pytest.fixture()
def sft_run(tiny_model_path, data_dir, tmp_path):
    from coverlora.config import TrainConfig
    from coverlora.train.stage import train

    return train(TrainConfig(model=tiny_model_path, data=str(data_dir), output_dir=str(tmp_path / "sft"), max_steps=2,
                             eval_strategy="no", batch_size=4, learning_rate=1e-2))


@pytest.fixture()
def alternate_judge(monkeypatch):
    """The tiny random model writes no claims: judge its candidates by position instead (even: clean)."""
    def judge(candidate_lists, rows):
        return [[Judged(k % 2 == 1, 1, len(letter.split()) or 1) for k, letter in enumerate(letters)]
                for letters in candidate_lists]

    monkeypatch.setattr(pairs_mod, "judge", judge)


def test_the_reference_is_the_sft_model_and_only_the_policy_adapter_moves(sft_run, tmp_path):
    from peft import PeftModel

    from coverlora.models import load_model, resolve_dtype
    from coverlora.prefer.stage import dpo_trainer, pair_rows
    from coverlora.runs.trained import TrainedRun

    run = TrainedRun.open(str(sft_run.root))
    cfg = PreferConfig(run=str(sft_run.root), output_dir=str(tmp_path / "dpo"), batch_size=2, learning_rate=5e-2,
                       save_steps=100)
    rows, _ = pair_rows(cfg, run)
    pairs = [{"row_id": str(row["row_id"]), "chosen": "I write SQL reports.", "rejected": "I led NASA."}
             for row in rows[:2]]
    trainer, _ = dpo_trainer(cfg, run, RunLayout(tmp_path / "dpo"), rows, pairs, resolve_dtype("fp32"))
    model = trainer.model
    assert set(model.peft_config) == {"default", "ref"}
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8, 9]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    sft = PeftModel.from_pretrained(load_model(run.base_model_path(), torch.float32), str(sft_run.adapter)).eval()
    base = load_model(run.base_model_path(), torch.float32).eval()
    with torch.no_grad():
        model.set_adapter("ref")
        ref_logits = model(**batch).logits
        model.set_adapter("default")
        assert torch.allclose(ref_logits, sft(**batch).logits, atol=1e-5)
        assert not torch.allclose(ref_logits, base(**batch).logits, atol=1e-3)  # the SFT adapter is not a no-op
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    trainer.train()
    after = dict(model.named_parameters())
    moved = [n for n in before if ".default." in n and not torch.equal(before[n], after[n])]
    assert moved, "the policy adapter trained"
    assert all(torch.equal(before[n], after[n]) for n in before if ".ref." in n), "the reference stayed frozen"


def test_the_stage_writes_a_run_that_later_stages_take_and_resumes(sft_run, tmp_path, alternate_judge, monkeypatch):
    from coverlora.prefer import stage

    cfg = PreferConfig(run=str(sft_run.root), output_dir=str(tmp_path / "dpo"), samples=2, max_rows=4,
                       max_new_tokens=8, batch_size=2, save_steps=1)
    out = stage.prefer(cfg)
    records = [json.loads(line) for line in (out.root / "pairs.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all("chosen" in r for r in records)
    assert (out.adapter / "adapter_config.json").is_file() and not (out.adapter / "ref").exists()
    manifest = json.loads(out.versions.read_text())["prefer"]
    assert manifest["pairs"]["pairs"] == 4 and manifest["steps"] >= 1
    assert (out.root / "train_config.yaml").is_file()
    from coverlora.config import MergeConfig
    from coverlora.merge.stage import merge

    merged, max_diff = merge(MergeConfig(run=str(out.root)))  # a later stage takes the preferred run as any run
    assert (merged.layout.merged / "config.json").is_file() and max_diff < 1e-3
    with pytest.raises(Exception, match="already holds"):
        stage.prefer(cfg)
    # resume: the judged rows are kept, nothing is sampled again
    monkeypatch.setattr("coverlora.generate.letters.generate_all", lambda *a, **k: pytest.fail("sampled again"))
    again = stage.prefer(PreferConfig(**{**cfg.__dict__, "resume": True}))
    assert (again.root / "pairs.jsonl").read_text() == (out.root / "pairs.jsonl").read_text()
