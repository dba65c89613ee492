"""What later stages need from a training run: its config, base model, data and prompt format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from coverlora import data as data_mod
from coverlora.config import TrainConfig
from coverlora.errors import UserError
from coverlora.models import resolve_model
from coverlora.options import build_config
from coverlora.prompts import PromptFormat
from coverlora.runs.layout import RunLayout, read_stage_config


@dataclass
class TrainedRun:
    layout: RunLayout
    train: TrainConfig

    @classmethod
    def open(cls, folder: str) -> TrainedRun:
        layout = RunLayout(Path(folder))
        if not layout.root.is_dir():
            raise UserError("run folder not found", where=folder, fix="pass the output_dir that train.py wrote")
        saved = read_stage_config(layout, "train")
        where = str(layout.stage_config("train"))
        return cls(layout, build_config(TrainConfig, {k: (v, where) for k, v in saved.items()}))

    def require_adapter(self) -> Path:
        if not (self.layout.adapter / "adapter_config.json").is_file():
            raise UserError("no adapter/ in this run: training did not finish", where=str(self.layout.root),
                            fix="finish it with: python train.py --config " + str(self.layout.stage_config("train")) + " --resume")
        return self.layout.adapter

    def base_model_path(self) -> str:
        return resolve_model(self.train.model)

    def prompt_format(self, tokenizer) -> PromptFormat:
        return PromptFormat.for_tokenizer(tokenizer, self.train.chat_template, self.train.system_prompt)

    def test_frame(self, data: str | None) -> tuple[pd.DataFrame, str]:
        """The test split: `data` if given, else the test.csv beside the training data."""
        source = data or self.train.data
        if data is None and Path(source).is_file():
            raise UserError("training used a single CSV, so there is no test split to default to",
                            where=source, fix="pass --data path/to/test.csv")
        frame = data_mod.load_split(source, "test")
        train_source = self.train.data
        if not (Path(train_source).is_file() and Path(source) == Path(train_source)):
            try:
                train_frame = data_mod.load_split(train_source, "train")
            except UserError:
                train_frame = None  # training data moved away: nothing to compare against
            if train_frame is not None and data_mod.frame_hash(train_frame) == data_mod.frame_hash(frame):
                raise UserError("this is the training split, not the test split", where=source,
                                fix="pass the test CSV (or the folder holding test.csv)")
        return frame, source

    def validation_frame(self) -> tuple[pd.DataFrame, str]:
        """The rows train.py held out, rebuilt from the saved seed and fraction (never the test split)."""
        _, _, val = data_mod.training_rows(self.train)
        if val.empty:
            raise UserError("this run held out no validation rows (val_fraction 0)", where=str(self.layout.root))
        return val, f"{self.train.data} (validation rows)"

    def first_train_rows(self, n: int) -> pd.DataFrame:
        return data_mod.load_split(self.train.data, "train").head(n)
