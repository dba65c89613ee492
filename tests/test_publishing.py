"""Sharing a run: the model card (Hub YAML metadata, training config, data hash, eval table), push_to_hub against a
stand-in for the Hub API (no network), report_to's checks and the loss curve PNG."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coverlora.config import TrainConfig
from coverlora.errors import ConfigError, UserError
from coverlora.options import parse_cli, to_yaml_section
from coverlora.runs.card import license_for, refresh_cards, write_model_card
from coverlora.runs.layout import RunLayout
from coverlora.runs.publish import push_run
from coverlora.train.tracking import check_report_to, plot_loss, read_losses

REPO = Path(__file__).resolve().parent.parent
SUMMARY = """subset,system,metric,n,mean,std,median,diff_vs_base,ci_low,ci_high,note
all,base,rouge_l,6,0.25,0.1,0.25,,,,
all,finetuned,rouge_l,6,0.31,0.1,0.3,0.06,0.01,0.1,
all,base,bertscore_f1,6,0.55,0.1,0.5,,,,all-MiniLM-L6-v2 L6 (raw)
all,finetuned,bertscore_f1,6,0.60,0.1,0.6,0.05,0.0,0.1,all-MiniLM-L6-v2 L6 (raw)
long_form,finetuned,rouge_l,2,0.9,0.1,0.9,,,,
"""


def make_run(tmp_path: Path, data: str = "ShashiVish/cover-letter-dataset", model: str = "embedded") -> RunLayout:
    layout = RunLayout(tmp_path / "my-run")
    layout.adapter.mkdir(parents=True)
    (layout.adapter / "adapter_config.json").write_text("{}")
    (layout.adapter / "adapter_model.safetensors").write_bytes(b"weights")
    layout.stage_config("train").write_text(to_yaml_section("train", TrainConfig(model=model, data=data, lora_r=16)))
    layout.versions.write_text(json.dumps({"train": {"data_hash": "0123456789abcdef", "train_rows": 29, "val_rows": 3}}))
    return layout


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_the_card_has_the_hub_metadata_config_and_data_hash(tmp_path):
    layout = make_run(tmp_path)
    card = write_model_card(layout, layout.adapter).read_text()
    meta = front_matter(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["library_name"] == "peft"
    assert meta["datasets"] == ["ShashiVish/cover-letter-dataset"] and meta["license"] == "apache-2.0"
    assert {"lora", "peft", "trl"} <= set(meta["tags"]) and "metrics" not in meta
    assert "0123456789abcdef" in card and "lora_r: 16" in card and "Not evaluated yet" in card
    # A local data folder is not a Hub dataset: no `datasets` key.
    assert "datasets" not in front_matter(write_model_card(make_run(tmp_path / "b", data="data/sample"),
                                                           tmp_path / "b" / "my-run" / "adapter").read_text())


def test_the_card_gets_the_eval_table_once_metrics_ran(tmp_path):
    layout = make_run(tmp_path)
    layout.merged.mkdir()
    layout.summary_csv.write_text(SUMMARY)
    cards = refresh_cards(layout)
    assert [card.parent.name for card in cards] == ["adapter", "merged"]
    card = cards[1].read_text()
    assert front_matter(card)["metrics"] == ["bertscore", "rouge"]
    assert "| metric | base | finetuned |" in card and "| rouge_l | 0.2500 | 0.3100 |" in card
    assert "0.9000" not in card  # the long-form subset stays in eval_summary.csv
    assert "plain transformers checkpoint" in card and "Not evaluated" not in card


def test_license_follows_the_base_model():
    assert license_for("meta-llama/Llama-2-7b-chat-hf") == "llama2"
    assert license_for("some/unknown-model") == "other"


class FakeHub:
    """A stand-in for huggingface_hub.HfApi: records the calls, uploads nothing."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        return type("CommitInfo", (), {"commit_url": f"https://hub.example/{kwargs['repo_id']}/commit/1"})()


def test_push_uploads_the_adapter_with_a_fresh_card(tmp_path):
    layout = make_run(tmp_path)
    layout.summary_csv.write_text(SUMMARY)
    hub = FakeHub()
    url = push_run(layout, "ana/coverlora-smollm2", api=hub)
    assert url == "https://hub.example/ana/coverlora-smollm2/commit/1"
    (create, repo, options), (upload, _, sent) = hub.calls
    assert (create, repo, options["private"], options["exist_ok"]) == ("create_repo", "ana/coverlora-smollm2", True, True)
    assert upload == "upload_folder" and sent["folder_path"] == str(layout.adapter)
    assert "README.md" in sent["files"] and ".coverlora.lock" in sent["ignore_patterns"]
    assert "| rouge_l |" in (layout.adapter / "README.md").read_text()


def test_push_refuses_a_missing_folder_or_a_bad_repo_id(tmp_path):
    layout = make_run(tmp_path)
    with pytest.raises(UserError, match="no merged/"):
        push_run(layout, "ana/x", merged=True, api=FakeHub())
    with pytest.raises(UserError, match="user/name"):
        push_run(layout, "just-a-name", api=FakeHub())


def test_push_script_without_a_repo_id_is_one_line_exit_2(tmp_path):
    layout = make_run(tmp_path)
    done = subprocess.run([sys.executable, str(REPO / "scripts/push_to_hub.py"), "--run", str(layout.root)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().startswith("error:") and "--repo_id" in done.stderr
    done = subprocess.run([sys.executable, str(REPO / "scripts/push_to_hub.py"), "--run", str(layout.root),
                           "--card-only"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and (layout.adapter / "README.md").is_file()


# ---------------------------------------------------------------------------- tracking


def test_report_to_is_off_by_default_and_checked(monkeypatch):
    assert parse_cli("train", []).report_to == "none"
    assert parse_cli("train", ["--report_to", "tensorboard"]).report_to == "tensorboard"
    with pytest.raises(ConfigError, match="report_to"):
        parse_cli("train", ["--report_to", "mlflow"])
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match="needs the wandb package"):
        check_report_to("wandb")
    check_report_to("none")


def test_report_to_reaches_trl(tmp_path):
    from coverlora.train.stage import sft_config

    layout = RunLayout(tmp_path / "run")
    args = sft_config(TrainConfig(report_to="none"), layout, __import__("torch").float32, has_val=False)
    assert args.report_to in ("none", [], ["none"]) and args.run_name == "run"


def test_the_loss_curve_is_a_png_in_the_run_folder(tmp_path):
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    records = [{"step": 2, "loss": 2.0}, {"step": 4, "loss": 1.5}, {"step": 4, "eval_loss": 1.7},
               {"step": 4, "loss": 1.4}, {"step": 6, "train_loss": 1.6}]
    layout.train_log.write_text("\n".join(json.dumps(r) for r in records) + "\n{\"step\": 8, \"lo")  # a cut last line
    assert read_losses(layout.train_log) == ([(2, 2.0), (4, 1.4)], [(4, 1.7)])
    png = plot_loss(layout)
    assert png == layout.root / "plots" / "loss.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_loss(RunLayout(tmp_path / "empty")) is None
