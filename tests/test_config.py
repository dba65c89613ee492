"""Config layering (defaults → YAML section → CLI), strictness, and every shipped preset."""

from pathlib import Path

import pytest

from coverlora.config import STAGE_CONFIGS, TrainConfig
from coverlora.errors import ConfigError
from coverlora.options import markdown_reference, parse_cli

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(ROOT.joinpath("configs").glob("*.yaml"))


def test_defaults_then_yaml_then_cli(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("train:\n  lora_r: 16\n  epochs: 2\n  output_dir: runs/x\n")
    cfg = parse_cli("train", ["--config", str(preset), "--epochs", "3", "--learning_rate=1e-4", "--resume"])
    assert (cfg.lora_r, cfg.epochs, cfg.learning_rate, cfg.resume) == (16, 3.0, 1e-4, True)
    assert cfg.batch_size == TrainConfig().batch_size


def test_later_stages_find_the_run_folder_in_the_preset(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("train:\n  output_dir: runs/abc\ntest:\n  limit: 3\n")
    cfg = parse_cli("test", ["--config", str(preset)])
    assert (cfg.run, cfg.limit) == ("runs/abc", 3)


@pytest.mark.parametrize(
    ("argv", "yaml_text", "message"),
    [
        (["--lora_rank", "8"], None, "unknown key 'lora_rank' (did you mean 'lora_r'?)"),
        ([], "train:\n  learning_rat: 0.1\n", "did you mean 'learning_rate'"),
        ([], "trian:\n  epochs: 1\n", "unknown section 'trian'"),
        (["--epochs", "many"], None, "'epochs': expected float, got 'many'"),
        (["--batch_size", "2.5"], None, "'batch_size': expected int"),
        (["--batch_size", "0"], None, "'batch_size'"),
        (["--lora_r", "-4"], None, "'lora_r'"),
        (["--learning_rate", "5"], None, "'learning_rate': must be in (0, 0.01]"),
        (["--val_fraction", "1.5"], None, "'val_fraction'"),
        (["--quantization", "int3"], None, "'quantization': must be one of auto, nf4, none, got 'int3'"),
        (["--precision", "bf61"], None, "did you mean 'bf16'?"),
        ([], "train:\n  eval_strategy: epochs\n", "did you mean 'epoch'?"),
        (["--resume", "maybe"], None, "expected bool"),
        (["positional"], None, "unexpected argument"),
        ([], "train: [1, 2]\n", "must be a mapping"),
        ([], "train:\n  epochs: [1\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, argv, yaml_text, message):
    if yaml_text is not None:
        preset = tmp_path / "bad.yaml"
        preset.write_text(yaml_text)
        argv = ["--config", str(preset), *argv]
    with pytest.raises(ConfigError) as caught:
        parse_cli("train", argv)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        parse_cli("train", ["--config", str(tmp_path / "nope.yaml")])


def test_stage_without_run_folder_says_so():
    with pytest.raises(ConfigError, match="'run'.*is required"):
        parse_cli("merge", [])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_for_every_stage(path):
    for stage in STAGE_CONFIGS:
        cfg = parse_cli(stage, ["--config", str(path)])
        assert isinstance(cfg, STAGE_CONFIGS[stage])
    header = path.read_text().splitlines()[0]
    assert header.startswith("#") and "python" in path.read_text().split("train:")[0]


def test_choices_are_checked_however_the_config_is_built():
    with pytest.raises(ConfigError, match="'quantization': must be one of auto, nf4, none"):
        TrainConfig(quantization="int3")


def test_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_cli("test", ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--kv_cache {auto,slots,static,preallocated,dynamic} [auto]" in out and "--split {test,validation} [test]" in out
    assert "--limit [0]" in out  # no choices for a free value


def test_docs_config_reference_is_the_generated_one():
    """docs/configuration.md is `python -m coverlora.options`'s output: regenerate it when a config changes."""
    page = ROOT.joinpath("docs", "configuration.md").read_text(encoding="utf-8")
    tables = page[page.index("\n**") + 1:]  # after the page's opening paragraph
    assert tables.strip() == markdown_reference().strip()
